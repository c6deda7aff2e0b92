"""backends/openai_front.py: /v1 bodies per worker kind, whole-event SSE relaying."""

import orjson
import pytest

from backends.base import FrontRequest
from backends.openai_front import SseRelay, prepare
from backends.translate import Unsupported


def front(data: dict, endpoint: str = "chat") -> FrontRequest:
    body = orjson.dumps(data)
    return FrontRequest(endpoint, "/v1/chat/completions", body, data, "tiny:latest", "openai")


def test_ollama_workers_get_the_clients_own_bytes():
    request = front({"model": "tiny", "messages": [], "n": 1})
    call = prepare(request, "tiny:latest", "ollama")
    assert call.body is request.body and call.path == "/v1/chat/completions" and call.front == "openai"
    with pytest.raises(Unsupported, match="n = 2"):
        prepare(front({"model": "tiny", "n": 2}), "tiny:latest", "ollama")
    limited = orjson.loads(prepare(front({"model": "tiny", "max_completion_tokens": 5}), "tiny", "ollama").body)
    assert limited["max_tokens"] == 5


def test_other_kinds_get_the_workers_own_model_id():
    for kind in ("llamacpp", "openai"):
        call = prepare(front({"model": "tiny:latest", "n": 2}, "completions"), "models/tiny.gguf", kind)
        assert orjson.loads(call.body) == {"model": "models/tiny.gguf", "n": 2} and call.path == "/v1/completions"


def test_sse_is_relayed_in_whole_events_and_knows_how_it_ended():
    relay = SseRelay()
    assert relay.feed(b'data: {"choices":[]}\n\ndata: {"cho') == b'data: {"choices":[]}\n\n'
    assert relay.feed(b'ices":[],"usage":{"completion_tokens":3}}\r\n\r\n') == (
        b'data: {"choices":[],"usage":{"completion_tokens":3}}\r\n\r\n')
    assert not relay.finished
    assert relay.feed(b"data: [DONE]\n\n") == b"data: [DONE]\n\n" and relay.finished
    assert relay.usage().tokens == 3 and relay.end() == b""


def test_an_error_event_ends_a_stream_and_a_last_event_without_its_blank_line_is_completed():
    relay = SseRelay()
    assert relay.feed(b'data: {"error":{"message":"x"}}') == b""
    assert relay.end() == b'data: {"error":{"message":"x"}}\n\n' and relay.finished


def test_llama_timings_give_tokens_and_decode_time():
    relay = SseRelay()
    relay.feed(b'data: {"choices":[],"timings":{"predicted_n":4,"predicted_ms":20.0,"prompt_ms":5}}\n\n'
               b"data: [DONE]\n\n")
    usage = relay.usage()
    assert (usage.tokens, usage.eval_s, usage.service_s) == (4, 0.02, 0.025)


def test_an_event_that_never_ends_is_refused():
    relay = SseRelay(max_event=10)
    with pytest.raises(ValueError):
        relay.feed(b"data: " + b"x" * 20)
