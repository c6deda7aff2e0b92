"""backends/responses_front.py: which workers are sent /v1/responses itself, and how a worker's own
Responses answer is relayed: whole events, knowing how the stream ended and what it cost."""

import orjson
import pytest

from backends.base import FrontRequest
from backends.responses_front import Passthrough, prepare
from backends.responses_stream import ResponsesStream
from backends.translate import Unsupported

ASKED = {"model": "tiny:latest", "input": "hi", "stream": True}


def front(data: dict = ASKED) -> FrontRequest:
    return FrontRequest("responses", "/v1/responses", orjson.dumps(data), data, "tiny:latest", "responses")


def native_stream(tokens: int = 2) -> bytes:
    """Events as Ollama's ResponsesWriter writes them."""
    def event(kind: str, n: int, **data) -> bytes:
        return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, "sequence_number": n, **data}) + b"\n\n"

    response = {"id": "resp_77", "object": "response", "status": "in_progress", "output": []}
    done = {**response, "status": "completed", "usage": {"input_tokens": 3, "output_tokens": tokens,
                                                         "total_tokens": 3 + tokens}}
    return (event("response.created", 0, response=response) + event("response.in_progress", 1, response=response)
            + event("response.output_text.delta", 2, item_id="msg_1", output_index=0, content_index=0, delta="hi")
            + event("response.completed", 3, response=done))


@pytest.mark.parametrize(("kind", "version", "native"), [
    ("ollama", "0.13.3", True), ("ollama", "0.14.2", True), ("ollama", "0.13.2", False),
    ("ollama", "0.13.3-rc1", False), ("ollama", "0.0.0", False), ("ollama", None, False),
    ("llamacpp", "b1-0c1e570", False), ("openai", None, False)])
def test_only_ollama_from_0_13_3_is_sent_the_responses_api_itself(kind, version, native):
    call = prepare(front(), "models/tiny.gguf" if kind != "ollama" else "tiny:latest", kind, version)
    assert call.front == "responses"
    if native:
        assert call.path == "/v1/responses" and call.body == front().body and isinstance(call.reply, Passthrough)
        return
    assert call.path == "/v1/chat/completions" and isinstance(call.reply, ResponsesStream)
    body = orjson.loads(call.body)
    assert body["model"] == ("tiny:latest" if kind == "ollama" else "models/tiny.gguf")
    assert body["messages"] == [{"role": "user", "content": "hi"}] and body["stream"] is True


def test_another_endpoint_is_unsupported():
    with pytest.raises(Unsupported):
        prepare(FrontRequest("chat", "/v1/chat/completions", b"{}", {}, "tiny", "responses"), "tiny", "ollama")


def test_a_native_stream_passes_in_whole_events_and_ends_with_its_usage():
    raw = native_stream(tokens=5)
    relay = Passthrough()
    out = b""
    for i in range(0, len(raw), 3):
        piece = relay.feed(raw[i:i + 3])
        assert piece == b"" or piece.endswith(b"\n\n"), "never half an event"
        out += piece
    out += relay.end()
    assert out == raw and relay.finished and relay.usage().tokens == 5


def test_a_native_stream_that_stops_early_is_unfinished_and_its_cut_names_the_response():
    raw = native_stream()
    relay = Passthrough()
    relay.feed(raw[:raw.index(b"event: response.completed")])
    assert relay.end() == b"" and not relay.finished and relay.usage() is None
    blocks = relay.cut("worker w1 ended the stream early").rstrip(b"\n").split(b"\n\n")
    events = [orjson.loads(block.split(b"\ndata: ")[1]) for block in blocks]
    assert [(e["type"], e["sequence_number"]) for e in events] == [("error", 3), ("response.failed", 4)]
    assert events[0]["message"] == "worker w1 ended the stream early" and events[0]["code"] == "server_error"
    assert events[1]["response"]["id"] == "resp_77" and events[1]["response"]["status"] == "failed"


def test_a_native_whole_answer_passes_and_an_error_is_openai_shaped():
    relay = Passthrough()
    body = orjson.dumps({"id": "resp_1", "object": "response", "status": "completed", "output": [],
                         "usage": {"input_tokens": 2, "output_tokens": 7, "total_tokens": 9}})
    assert relay.whole(body) == body and relay.usage().tokens == 7
    error = orjson.loads(relay.error(b'{"error": "model \\"x\\" not found"}', 404))
    assert error["error"]["message"] == 'model "x" not found' and error["error"]["type"]
    assert orjson.loads(ResponsesStream("tiny", ASKED).error(b"<html>bad gateway</html>", 500))["error"]["message"]
