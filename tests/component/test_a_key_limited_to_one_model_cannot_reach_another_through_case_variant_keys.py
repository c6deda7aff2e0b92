"""Ollama's Go decoder reads `Model`, `MODEL` and `modeL` as `model` (the last match wins), so a key
limited to one model could name another in a case variant that access control never looked at.
Behind a worker that decodes like Go, every such key is refused with a 400 in the front's own
shape, naming the key; exact spellings, duplicates and keys Go would not match are served as
judged; keys inside map fields and schemas are the client's own and pass untouched."""

import json

import pytest

from gateway.access import hash_key
from tests.conftest import WorkerSpec
from tests.golike_worker import GoLikeWorker

KEY = "app-key-0123456789abcdef"
CLIENTS = f"""
[[clients]]
name = "app"
key_sha256 = "{hash_key(KEY)}"
models = ["llama3.2:*"]
"""
ALLOWED, FORBIDDEN = "llama3.2:1b", "qwen2:0.5b"
MSGS = [{"role": "user", "content": "hi"}]
BODIES = {
    "/api/chat": {"messages": MSGS, "stream": False},
    "/api/generate": {"prompt": "hi", "stream": False},
    "/api/show": {},
    "/api/embed": {"input": "hi"},
    "/api/embeddings": {"prompt": "hi"},
    "/v1/chat/completions": {"messages": MSGS},
    "/v1/completions": {"prompt": "hi"},
    "/v1/embeddings": {"input": "hi"},
}


@pytest.fixture
async def fleet(start_fleet, aiohttp_server):
    worker = GoLikeWorker(models=(ALLOWED, FORBIDDEN))
    server = await aiohttp_server(worker.app())
    fleet = await start_fleet(WorkerSpec("go0", url=str(server.make_url("")).rstrip("/")), config_extra=CLIENTS)
    worker.served.clear()  # the prober's own /api/show, asking each model's shape, is no client's request
    fleet.golike = worker
    return fleet


async def send(fleet, path: str, raw: bytes):
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    async with fleet.http.post(fleet.url + path, data=raw, headers=headers) as resp:
        return resp.status, await resp.json()


def body(path: str, *pairs: tuple[str, object]) -> bytes:
    """A JSON object written pair by pair: duplicate and case-variant keys survive as sent. The
    endpoint's usual fields fill in what `pairs` does not name exactly."""
    named = {k for k, _ in pairs}
    items = [*pairs, *((k, v) for k, v in BODIES[path].items() if k not in named)]
    return ("{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in items) + "}").encode()


def error_text(path: str, answer: dict) -> str:
    return answer["error"]["message"] if path.startswith("/v1/") else answer["error"]


@pytest.mark.parametrize("path", list(BODIES))
async def test_a_case_variant_of_model_is_refused_and_never_reaches_the_forbidden_model(fleet, path):
    for variant in ("Model", "MODEL", "modeL"):
        for pairs in ((("model", ALLOWED), (variant, FORBIDDEN)), ((variant, FORBIDDEN), ("model", ALLOWED))):
            status, answer = await send(fleet, path, body(path, *pairs))
            assert status == 400, (path, pairs, answer)
            assert variant in error_text(path, answer) and "'model'" in error_text(path, answer)
            if path.startswith("/v1/"):
                assert answer["error"]["type"] == "invalid_request_error"
    assert fleet.golike.served == []
    status, answer = await send(fleet, path, body(path, ("model", ALLOWED)))
    assert status == 200 and fleet.golike.served == [(path, ALLOWED)], answer
    status, _ = await send(fleet, path, body(path, ("model", FORBIDDEN)))
    assert status == 403 and fleet.golike.served == [(path, ALLOWED)]


async def test_show_refuses_a_case_variant_of_name_which_ollama_reads_when_model_is_empty(fleet):
    for pairs in ((("name", ALLOWED), ("Name", FORBIDDEN)), (("name", ALLOWED), ("NAME", FORBIDDEN))):
        status, answer = await send(fleet, "/api/show", body("/api/show", *pairs))
        assert status == 400 and "'name'" in answer["error"], answer
    status, answer = await send(fleet, "/api/show", body("/api/show", ("name", ALLOWED)))
    assert status == 200 and answer["modelfile"] == f"FROM {ALLOWED}"
    assert fleet.golike.served == [("/api/show", ALLOWED)]


async def test_go_folds_the_kelvin_sign_and_the_long_s_so_they_are_refused_too(fleet):
    for path, key in (("/api/generate", "\u212aeep_alive"), ("/api/generate", "\u017ftream"),
                      ("/api/chat", "me\u017f\u017fages"), ("/v1/chat/completions", "\u017ftream")):
        status, answer = await send(fleet, path, body(path, ("model", ALLOWED), (key, True)))
        assert status == 400 and ascii(key) in error_text(path, answer), (path, key, answer)
    assert fleet.golike.served == []


async def test_variants_of_stream_and_options_cannot_fool_the_timeouts_or_the_cpu_estimate(fleet):
    for pairs in ((("Stream", True),), (("STREAM", True),), (("Options", {"num_predict": 10**9}),),
                  (("Keep_Alive", -1),)):
        status, answer = await send(fleet, "/api/generate", body("/api/generate", ("model", ALLOWED), *pairs))
        assert status == 400, (pairs, answer)
    status, answer = await send(fleet, "/api/chat", body("/api/chat", ("model", ALLOWED),
                                                         ("messages", [{"Role": "user", "content": "x"}])))
    assert status == 400 and "messages[0]" in answer["error"] and "'role'" in answer["error"]
    assert fleet.golike.served == []


async def test_exact_duplicates_keys_go_ignores_and_client_keys_inside_maps_and_schemas_are_served(fleet):
    duplicate = body("/api/generate", ("model", FORBIDDEN), ("model", ALLOWED))  # both keep the last one
    assert (await send(fleet, "/api/generate", duplicate))[0] == 200
    dotless = body("/api/generate", ("model", ALLOWED), ("opt\u0131ons", 1), ("\u0130mages", 1))  # Go: no match
    assert (await send(fleet, "/api/generate", dotless))[0] == 200
    schema = {"type": "object", "properties": {"Model": {"type": "string"}, "Stream": {"type": "boolean"}}}
    maps = body("/api/chat", ("model", ALLOWED), ("options", {"Num_Predict": 2, "TEMPERATURE": 0}),
                ("format", schema), ("tools", [{"type": "function", "function": {"name": "f", "parameters": schema}}]))
    status, answer = await send(fleet, "/api/chat", maps)
    assert status == 200, answer
    assert fleet.golike.served == [("/api/generate", ALLOWED)] * 2 + [("/api/chat", ALLOWED)]
