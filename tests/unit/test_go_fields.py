"""check_keys: a key Ollama's Go decoder would read as a field, spelled otherwise, is a 400 naming
it; exact keys, keys Go ignores and the client's own keys inside maps and schemas pass. The fold
agrees, over all of Unicode, with the Go-like test worker's independent one."""

import sys

import pytest

from gateway.errors import BadRequest
from gateway.handlers.go_fields import FIELDS, check_keys, go_fold
from tests import golike_worker


def test_only_the_kelvin_sign_and_the_long_s_fold_onto_ascii_letters_as_go_folds_them():
    gateway, worker = set(), set()
    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        if 0xD800 <= code <= 0xDFFF:
            continue
        if not ch.isascii() and go_fold(ch) is not None:
            gateway.add(ch)
        # fold_rune is slow: only runes whose case mappings touch ASCII can fold onto it
        if not ch.isascii() and (ch.lower().isascii() or ch.upper().isascii()) and \
                golike_worker.fold_rune(ch).isascii():
            worker.add(ch)
    assert gateway == worker == {"\u212a", "\u017f"}
    assert go_fold("\u212aeep_alive") == "keep_alive" and go_fold("\u017ftream") == "stream"
    assert go_fold("opt\u0131ons") is None and go_fold("\u0130mages") is None  # Go pins both i forms


@pytest.mark.parametrize(("path", "body", "named"), [
    ("/api/chat", {"Model": "x"}, "'Model'"),
    ("/api/chat", {"messages": [{"role": "user"}, {"CONTENT": "x"}]}, "messages[1]"),
    ("/api/chat", {"messages": [{"tool_calls": [{"function": {"Name": "f"}}]}]}, "messages[0].tool_calls[0].function"),
    ("/api/chat", {"tools": [{"Function": {}}]}, "tools[0]"),
    ("/api/generate", {"\u212aeep_alive": 1}, "\\u212aeep_alive"),
    ("/api/generate", {"Options": {}}, "'options'"),
    ("/api/show", {"NAME": "x"}, "'name'"),
    ("/api/create", {"From": "x"}, "'from'"),
    ("/api/copy", {"Source": "x"}, "'source'"),
    ("/api/delete", {"nAme": "x"}, "'name'"),
    ("/api/pull", {"Stream": False}, "'stream'"),
    ("/v1/chat/completions", {"response_format": {"json_schema": {"Schema": {}}}}, "response_format.json_schema"),
    ("/v1/chat/completions", {"Max_Tokens": 9}, "'max_tokens'"),
    ("/v1/completions", {"\u017ftream": True}, "\\u017ftream"),
    ("/v1/embeddings", {"Input": "x"}, "'input'"),
])
def test_a_key_go_reads_as_a_field_but_spelled_otherwise_is_refused_naming_it(path, body, named):
    with pytest.raises(BadRequest) as refused:
        check_keys(body, path)
    assert named in refused.value.message


def test_exact_keys_keys_go_ignores_and_the_clients_own_keys_pass():
    schema = {"type": "object", "properties": {"Model": {"type": "string"}}, "Required": ["Model"]}
    check_keys({"model": "x", "options": {"NUM_PREDICT": 1}, "format": schema, "opt\u0131ons": 1, "Unknown": 1,
                "messages": [{"role": "tool", "tool_calls": [{"function": {"arguments": {"Name": 1}}}]}],
                "tools": [{"function": {"name": "f", "parameters": schema}}]}, "/api/chat")
    check_keys({"model": "x", "response_format": {"json_schema": {"schema": schema}}}, "/v1/chat/completions")
    check_keys({"Model": "x"}, "/admin/explain")  # not forwarded as sent: no Go decoder reads it
    check_keys({"model": "x", "m" * 10_000_000: 1}, "/api/generate")  # long keys fold onto nothing, at once


def test_every_endpoint_the_gateway_forwards_has_its_fields():
    assert set(FIELDS) == {"/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/show", "/api/pull",
                           "/api/push", "/api/create", "/api/copy", "/api/delete", "/v1/chat/completions",
                           "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages"}
    for path, fields in FIELDS.items():
        routed = {"source", "destination"} if path == "/api/copy" else {"model"}
        assert routed <= set(fields.fields), path
