"""Ollama's unload rule (server/routes.go): a generate with no prompt or a chat with no messages
whose keep_alive decodes (api.Duration) to 0 unloads and runs nothing; keep_alive 0 with something
to run runs it, then unloads. keep_alive is read as Go reads it: numbers are seconds truncated to
whole nanoseconds, negatives mean forever, strings are time.ParseDuration."""

import pytest

from gateway.handlers.unload import AFTER, ONLY, answer, go_duration_ns, unload_of, zero_keep_alive

M = "llama3.2:1b"

ZERO = [0, 0.0, -0.0, 1e-10, "0", "-0", "+0", "0s", "-0s", "0.0s", "0h0m0s", ".0s", "0.s", "0.5ns",
        "0.0000000001s", "00ms", "0\u00b5s", "0\u03bcs"]
NOT_ZERO = [None, 1, -1, -0.5, 1e-9, 300, "-1", "-1s", "1ns", "5m", "1h30m", "", "s", ".s", "5", "0x", " 0s",
            "0 s", "--0", "0s5", True, False, [], {}, [0]]


@pytest.mark.parametrize("value", ZERO)
def test_a_keep_alive_ollama_reads_as_zero(value):
    assert zero_keep_alive(value)


@pytest.mark.parametrize("value", NOT_ZERO)
def test_a_keep_alive_ollama_reads_as_anything_but_zero(value):
    assert not zero_keep_alive(value)


def test_a_duration_too_long_to_be_meant_is_not_read():
    """Go would read it as 0; the gateway does not parse a client's string without bound. The request
    then goes to one worker as any other, which reads it as Ollama does."""
    assert go_duration_ns("0" * 200 + "s") is None and not zero_keep_alive("0s" * 60)


@pytest.mark.parametrize(("text", "ns"), [
    ("1h30m", 5_400_000_000_000), ("1.5h", 5_400_000_000_000), ("-1.5h", -5_400_000_000_000), ("300ms", 300_000_000),
    ("1\u00b5s", 1_000), ("1us", 1_000), (".5s", 500_000_000), ("5.s", 5_000_000_000),
    ("1h1m1s1ms1us1ns", 3_661_001_001_001),
    ("9223372036854775807ns", 2**63 - 1), ("-9223372036854775808ns", -(2**63)), ("0.1ns", 0),
    ("9223372036854775808ns", None), ("3000000h", None), ("1d", None), ("1", None), ("1.", None),
])
def test_durations_parse_as_go_parses_them(text, ns):
    assert go_duration_ns(text) == ns


@pytest.mark.parametrize("body", [
    {"model": M, "keep_alive": 0},
    {"model": M, "keep_alive": "0", "prompt": ""},
    {"model": M, "keep_alive": 0, "prompt": None, "stream": True},
    {"model": M, "keep_alive": "0s", "images": ["aGk="], "system": "be brief"},  # Ollama reads only the prompt
])
def test_a_generate_with_no_prompt_and_keep_alive_zero_only_unloads(body):
    assert unload_of("generate", body) == ONLY


@pytest.mark.parametrize("body", [
    {"model": M, "keep_alive": 0},
    {"model": M, "keep_alive": 0, "messages": []},
    {"model": M, "keep_alive": 0.0, "messages": None},
])
def test_a_chat_with_no_messages_and_keep_alive_zero_only_unloads(body):
    assert unload_of("chat", body) == ONLY


@pytest.mark.parametrize(("endpoint", "body"), [
    ("generate", {"model": M, "keep_alive": 0, "prompt": "hi"}),
    ("chat", {"model": M, "keep_alive": "0s", "messages": [{"role": "user", "content": "hi"}]}),
    ("embed", {"model": M, "keep_alive": 0, "input": "hi"}),
    ("embed", {"model": M, "keep_alive": 0}),  # Ollama loads the model, answers no vectors, then unloads
    ("embeddings", {"model": M, "keep_alive": 0, "prompt": "hi"}),
])
def test_keep_alive_zero_with_something_to_run_runs_then_unloads(endpoint, body):
    assert unload_of(endpoint, body) == AFTER


@pytest.mark.parametrize(("endpoint", "body"), [
    ("generate", {"model": M}),
    ("generate", {"model": M, "keep_alive": -1}),
    ("generate", {"model": M, "keep_alive": "5m", "prompt": ""}),  # a load, not an unload
    ("chat", {"model": M, "keep_alive": None, "messages": []}),
    ("show", {"model": M, "keep_alive": 0}),
])
def test_requests_without_keep_alive_zero_are_no_unload(endpoint, body):
    assert unload_of(endpoint, body) == ""


def test_the_answer_is_ollamas_field_for_field():
    generate, chat = answer("Llama3.2:1B", "generate"), answer(M, "chat")
    assert list(generate) == ["model", "created_at", "response", "done", "done_reason"]
    assert generate["model"] == "Llama3.2:1B", "the model as the client named it"
    assert (generate["response"], generate["done"], generate["done_reason"]) == ("", True, "unload")
    assert list(chat) == ["model", "created_at", "message", "done", "done_reason"]
    assert chat["message"] == {"role": "assistant", "content": ""} and chat["done_reason"] == "unload"
    assert generate["created_at"].endswith("Z")
