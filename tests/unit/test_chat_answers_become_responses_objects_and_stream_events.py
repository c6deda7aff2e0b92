"""backends/responses_front.py and responses_stream.py: a worker's chat completion, whole or streamed,
as an OpenAI Response object or as Responses stream events."""

import orjson
import pytest

from backends.responses_stream import ResponsesStream

ASKED = {"model": "tiny", "input": "hi", "instructions": "be brief", "max_output_tokens": 8}


def sse(*events: dict | str) -> bytes:
    return b"".join(b"data: " + (e.encode() if isinstance(e, str) else orjson.dumps(e)) + b"\n\n" for e in events)


def chunk(delta: dict | None = None, finish: str | None = None, **extra) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}], **extra}


USAGE = {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}
TEXT = sse(chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
           chunk(finish="length"), USAGE, "[DONE]")
FIRST_CALL = {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
CALLS = sse(chunk({"role": "assistant", "tool_calls": [FIRST_CALL]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
            chunk({"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "get_time", "arguments": "{}"}}]}),
            chunk(finish="tool_calls"), USAGE, "[DONE]")


def events(raw: bytes) -> list[dict]:
    """Every event, checked to be whole: an `event:` line naming its data's type, then its data."""
    assert raw.endswith(b"\n\n")
    out = []
    for block in raw[:-2].split(b"\n\n"):
        name, data = block.split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: ")
        event = orjson.loads(data[6:])
        assert event["type"] == name[7:].decode()
        out.append(event)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    return out


def translated(raw: bytes, split: int | None = None) -> tuple[ResponsesStream, list[dict]]:
    stream = ResponsesStream("tiny:latest", ASKED)
    pieces = [raw[i:i + split] for i in range(0, len(raw), split)] if split else [raw]
    out = b"".join(stream.feed(piece) for piece in pieces) + stream.end()
    return stream, events(out)


def test_a_text_stream_becomes_the_responses_lifecycle_with_the_workers_usage():
    stream, got = translated(TEXT)
    assert [e["type"] for e in got] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    ids = {e["response"]["id"] for e in got if "response" in e}
    assert ids == {stream.shape.id} and stream.shape.id.startswith("resp_")
    item_id = got[2]["item"]["id"]
    assert item_id.startswith("msg_") and all(e["item_id"] == item_id for e in got[3:8])
    assert all(e["output_index"] == 0 for e in got[2:9]) and all(e["content_index"] == 0 for e in got[3:8])
    assert [e["delta"] for e in got[4:6]] == ["Hel", "lo"] and got[6]["text"] == "Hello"
    final = got[-1]["response"]
    assert final["status"] == "completed" and final["incomplete_details"] is None, "a length stop, as Ollama says it"
    assert final["output"] == [got[8]["item"]] and final["output"][0]["content"][0]["text"] == "Hello"
    assert final["usage"]["input_tokens"] == 11 and final["usage"]["output_tokens"] == 3
    assert final["usage"]["total_tokens"] == 14 and final["model"] == "tiny:latest"
    assert final["instructions"] == "be brief" and final["max_output_tokens"] == 8
    assert stream.finished and stream.usage().tokens == 3


def test_tool_calls_become_function_call_items_with_their_arguments_as_they_arrive():
    _, got = translated(CALLS)
    added = [e for e in got if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["type"], e["item"]["call_id"], e["item"]["name"]) for e in added] == [
        (0, "function_call", "call_a", "get_weather"), (1, "function_call", "call_b", "get_time")]
    deltas = [(e["output_index"], e["delta"]) for e in got if e["type"] == "response.function_call_arguments.delta"]
    assert deltas == [(0, '{"city":'), (0, '"Paris"}'), (1, "{}")]
    done = {e["output_index"]: e["item"] for e in got if e["type"] == "response.output_item.done"}
    assert done[0]["arguments"] == '{"city":"Paris"}' and done[0]["status"] == "completed"
    assert done[0]["id"].startswith("fc_") and done[0]["id"] != done[1]["id"]
    assert got[-1]["response"]["output"] == [done[0], done[1]]


def test_the_same_events_come_however_the_workers_bytes_are_split():
    def comparable(got: list[dict]) -> bytes:
        return orjson.dumps(got).replace(got[0]["response"]["id"].encode(), b"ID").replace(
            got[0]["response"]["id"][5:].encode(), b"HEX")

    for raw in (TEXT, CALLS, TEXT.replace(b"\n", b"\r\n")):
        _, whole = translated(raw)
        for split in (1, 2, 7):
            _, pieces = translated(raw, split)
            for got in (whole, pieces):
                for event in got:
                    event.get("response", {}).update(created_at=0, completed_at=0)
            assert comparable(pieces) == comparable(whole)


def test_reasoning_comes_first_as_a_reasoning_item_with_its_summary():
    _, got = translated(sse(chunk({"reasoning_content": "think"}), chunk({"content": "ok"}), chunk(finish="stop"),
                            "[DONE]"))
    types = [e["type"] for e in got]
    assert types[2:7] == ["response.output_item.added", "response.reasoning_summary_part.added",
                          "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
                          "response.reasoning_summary_part.done"]
    output = got[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["reasoning", "message"]
    assert output[0]["summary"] == [{"type": "summary_text", "text": "think"}]
    assert got[-1]["response"]["usage"] is None, "the worker said no usage: none is made up"


def test_a_worker_error_event_ends_the_stream_as_a_failed_response():
    stream, got = translated(sse(chunk({"content": "par"}), {"error": {"message": "out of memory", "code": 500}}))
    assert [e["type"] for e in got][-2:] == ["error", "response.failed"] and stream.finished
    assert got[-2]["message"] == "out of memory" and got[-2]["code"] == "server_error"
    failed = got[-1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {"code": "server_error", "message": "out of memory"}
    assert failed["output"][0]["status"] == "incomplete" and failed["output"][0]["content"][0]["text"] == "par"


def test_a_stream_cut_before_its_finish_stays_unfinished_until_failed():
    stream = ResponsesStream("tiny", ASKED)
    out = stream.feed(sse(chunk({"content": "par"}))) + stream.end()
    assert not stream.finished and "response.completed" not in {e["type"] for e in events(out)}
    tail = events(out + stream.cut("worker w1 ended the stream early"))[-2:]
    assert [e["type"] for e in tail] == ["error", "response.failed"] and stream.cut("again") == b""


def test_a_finished_answer_without_done_still_completes():
    stream = ResponsesStream("tiny", ASKED)
    out = stream.feed(sse(chunk({"content": "ok"}), chunk(finish="stop", timings={"prompt_n": 4, "predicted_n": 1,
                                                                                  "predicted_ms": 2, "prompt_ms": 1})))
    got = events(out + stream.end())
    assert got[-1]["type"] == "response.completed" and stream.finished
    assert got[-1]["response"]["usage"]["input_tokens"] == 4 and stream.usage().tokens == 1


def test_a_whole_chat_completion_becomes_a_response_object():
    answer = {"id": "chatcmpl-1", "object": "chat.completion", "model": "x", "choices": [{
        "index": 0, "finish_reason": "tool_calls",
        "message": {"role": "assistant", "content": None, "reasoning_content": "hmm", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
            {"id": "", "type": "function", "function": {"name": "get_time", "arguments": {}}}]}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14,
                  "prompt_tokens_details": {"cached_tokens": 4}}}
    stream = ResponsesStream("tiny:latest", ASKED)
    response = orjson.loads(stream.whole(orjson.dumps(answer)))
    assert response["id"].startswith("resp_") and response["object"] == "response"
    assert response["status"] == "completed" and isinstance(response["created_at"], int)
    assert [item["type"] for item in response["output"]] == ["reasoning", "function_call", "function_call"]
    first, second = response["output"][1:]
    assert (first["call_id"], first["name"], first["arguments"]) == ("call_a", "get_weather", '{"city":"Oslo"}')
    assert second["call_id"].startswith("call_") and second["arguments"] == "{}" and first["id"].startswith("fc_")
    assert response["usage"] == {"input_tokens": 9, "output_tokens": 5, "total_tokens": 14,
                                 "input_tokens_details": {"cached_tokens": 4},
                                 "output_tokens_details": {"reasoning_tokens": 0}}
    assert stream.usage().tokens == 5
    text = orjson.loads(stream.whole(orjson.dumps({"choices": [{"message": {"content": "Hi"},
                                                                "finish_reason": "stop"}]})))
    assert text["output"][0]["type"] == "message" and text["output"][0]["content"][0]["text"] == "Hi"


def test_a_whole_answer_that_is_an_error_is_malformed():
    with pytest.raises(ValueError):
        ResponsesStream("tiny", ASKED).whole(b'{"error": {"message": "boom"}}')


def test_a_malformed_first_chunk_is_the_workers_fault_and_its_cut_still_starts_the_response():
    stream = ResponsesStream("tiny", ASKED)
    with pytest.raises(ValueError):
        stream.feed(sse(chunk({"content": "ok"})) + b"data: {not json\n\n")
    got = events(stream.cut("worker w1 failed mid-stream: malformed event"))
    assert [e["type"] for e in got] == ["response.created", "response.in_progress", "error", "response.failed"]
    assert got[-1]["response"]["output"] == []
