"""The pure Anthropic front: which workers serve /v1/messages natively (by kind and version), a Messages
request as a chat-completions request, a chat completion (whole or streamed, tool calls split across
chunks) as an Anthropic message, a native stream relayed in whole events, errors, the token estimate."""

import orjson
import pytest

from backends.anthropic_answers import Translator, as_anthropic_error
from backends.anthropic_front import Passthrough, chat_request, estimate_tokens, prepare, serves_messages
from backends.base import FrontRequest
from backends.translate import Unsupported
from backends.versions import at_least

ASK = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def front(data: dict, endpoint: str = "messages") -> FrontRequest:
    return FrontRequest(endpoint, "/v1/messages", orjson.dumps(data), data, "m:latest", "anthropic")


def events(raw: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in raw.split(b"\n\n")[:-1]:
        name, data = block.split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: ")
        out.append((name[7:].decode(), orjson.loads(data[6:])))
        assert out[-1][0] == out[-1][1]["type"], "the event line names the data's type"
    return out


def sse(*chunks: dict, done: bool = True) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + (b"data: [DONE]\n\n" if done else b"")


@pytest.mark.parametrize(("version", "native"), [
    ("0.14.0", True), ("0.14.2", True), ("v0.15.1", True), ("1.0.0", True), ("0.14.0+build", True),
    ("0.13.9", False), ("0.14.0-rc1", False), ("0.0.0", False), (None, False), ("", False), ("dev", False),
    ("0.14", True), ("0.9.99", False)])
def test_ollama_serves_messages_from_0_14_0_and_unknown_versions_are_translated(version, native):
    assert at_least(version, "0.14.0") is native
    assert serves_messages("ollama", version) is native
    assert serves_messages("llamacpp", None) and not serves_messages("openai", "0.14.2")


def test_native_calls_keep_the_clients_bytes_for_ollama_and_use_the_workers_id_elsewhere():
    ollama = prepare(front(ASK), "m:latest", "ollama", "0.14.1")
    assert (ollama.path, ollama.body, ollama.front) == ("/v1/messages", orjson.dumps(ASK), "anthropic")
    assert isinstance(ollama.reply, Passthrough) and ollama.translator is None
    llama = prepare(front(ASK), "m-q4", "llamacpp")
    assert llama.path == "/v1/messages" and orjson.loads(llama.body)["model"] == "m-q4"
    counted = prepare(front(ASK, "count_tokens"), "m-q4", "llamacpp")
    assert counted.path == "/v1/messages/count_tokens"
    for kind in ("ollama", "openai"):
        with pytest.raises(Unsupported):
            prepare(front(ASK, "count_tokens"), "m", kind, "0.14.2")
    translated = prepare(front(ASK), "m:latest", "ollama", "0.12.6")
    assert translated.path == "/v1/chat/completions" and isinstance(translated.reply, Translator)


def test_a_conversation_becomes_chat_messages():
    data = {**ASK, "system": [{"type": "text", "text": "be "}, {"type": "text", "text": "brief"}], "messages": [
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                                                  "data": "AAAA"}}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                          {"type": "text", "text": "calling"},
                                          {"type": "tool_use", "id": "toolu_1", "name": "calc", "input": {"x": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"},
                                     {"type": "tool_result", "tool_use_id": "toolu_2",
                                      "content": [{"type": "text", "text": "4"}, {"type": "text", "text": "3"}]},
                                     {"type": "text", "text": "and now?"}]}]}
    assert chat_request(data, "id", "ollama")["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}]},
        {"role": "assistant", "content": "calling", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "calc", "arguments": '{"x":1}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "42"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "43"},
        {"role": "user", "content": "and now?"}]


def test_sampling_stops_tools_and_tool_choice_become_chat_fields():
    data = {**ASK, "stream": True, "temperature": 0.2, "top_p": 0.9, "top_k": 40, "stop_sequences": ["END"],
            "thinking": {"type": "enabled", "budget_tokens": 100}, "metadata": {"user_id": "u"},
            "tools": [{"name": "calc", "description": "adds", "input_schema": {"type": "object"}}, {"name": "now"}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True}}
    body = chat_request(data, "id", "llamacpp")
    assert body == {"model": "id", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16,
                    "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.2, "top_p": 0.9,
                    "top_k": 40, "stop": ["END"], "tool_choice": "required", "parallel_tool_calls": False,
                    "tools": [{"type": "function", "function": {"name": "calc", "description": "adds",
                                                                "parameters": {"type": "object"}}},
                              {"type": "function", "function": {"name": "now", "parameters": {
                                  "type": "object", "properties": {}}}}]}
    for choice, wanted in (({"type": "auto"}, "auto"), ({"type": "none"}, "none"),
                           ({"type": "tool", "name": "calc"}, {"type": "function", "function": {"name": "calc"}})):
        assert chat_request({**ASK, "tool_choice": choice}, "id", "openai")["tool_choice"] == wanted


def test_images_by_url_reach_servers_that_fetch_them_but_not_ollama():
    data = {**ASK, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}]}]}
    assert chat_request(data, "id", "openai")["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://x/a.png"}}]
    with pytest.raises(Unsupported, match="Only base64 images"):
        chat_request(data, "id", "ollama")


@pytest.mark.parametrize(("finish", "calls", "reason"), [
    ("stop", False, "end_turn"), ("length", False, "max_tokens"), ("tool_calls", True, "tool_use"),
    ("stop", True, "tool_use"), ("content_filter", False, "refusal"), (None, False, "end_turn"),
    ("eos", False, "end_turn")])
def test_a_whole_chat_answer_becomes_a_message(finish, calls, reason):
    message = {"role": "assistant", "content": "hello", "reasoning_content": "thought"}
    if calls:
        message["tool_calls"] = [{"id": "call_9", "type": "function",
                                  "function": {"name": "calc", "arguments": '{"x": 2}'}},
                                 {"type": "function", "function": {"name": "bad", "arguments": "{not json"}}]
    translator = Translator("m:latest", 3)
    answer = orjson.loads(translator.whole(orjson.dumps({
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 30}, "timings": {"predicted_n": 30, "predicted_ms": 100.0,
                                                                            "prompt_ms": 10.0}})))
    assert answer["id"].startswith("msg_") and answer["model"] == "m:latest" and answer["role"] == "assistant"
    assert answer["stop_reason"] == reason and answer["stop_sequence"] is None
    assert answer["usage"] == {"input_tokens": 12, "output_tokens": 30}
    assert answer["content"][:2] == [{"type": "thinking", "thinking": "thought", "signature": ""},
                                     {"type": "text", "text": "hello"}]
    if calls:
        assert answer["content"][2] == {"type": "tool_use", "id": "call_9", "name": "calc", "input": {"x": 2}}
        assert answer["content"][3]["input"] == {"raw": "{not json"} and answer["content"][3]["id"].startswith("toolu_")
    usage = translator.usage()
    assert usage is not None and usage.tokens == 30 and usage.eval_s == pytest.approx(0.1)


def test_a_200_that_is_an_error_is_a_malformed_answer():
    with pytest.raises(ValueError, match="boom"):
        Translator("m").whole(b'{"error": {"message": "boom"}}')


def test_a_text_stream_becomes_anthropic_events_wherever_the_chunks_split():
    raw = sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
              {"choices": [{"index": 0, "delta": {"content": "Hel"}}]},
              {"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "length"}]},
              {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
    for size in (1, 7, len(raw)):
        translator = Translator("m:latest", 4)
        out = b"".join(translator.feed(raw[i:i + size]) for i in range(0, len(raw), size)) + translator.end()
        got = events(out)
        assert [n for n, _ in got] == ["message_start", "content_block_start", "content_block_delta",
                                       "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
        assert got[0][1]["message"]["usage"] == {"input_tokens": 4, "output_tokens": 0}, "the estimate, at first"
        assert got[1][1]["content_block"] == {"type": "text", "text": ""}
        assert "".join(d["delta"]["text"] for n, d in got if n == "content_block_delta") == "Hello"
        assert got[5][1]["delta"]["stop_reason"] == "max_tokens"
        assert got[5][1]["usage"] == {"input_tokens": 5, "output_tokens": 2}
        assert translator.finished and translator.usage().tokens == 2


def test_thinking_then_text_then_tool_calls_split_across_chunks_each_get_a_block():
    raw = sse({"choices": [{"index": 0, "delta": {"reasoning": "hm"}}]},
              {"choices": [{"index": 0, "delta": {"content": "ok"}}]},
              {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1",
                                                                  "function": {"arguments": '{"a"'}}]}}]},
              {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"name": "f",
                                                                                            "arguments": ":1}"}}]}}]},
              {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "c2", "function": {
                  "name": "g", "arguments": {"b": 2}}}]}}]},
              {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    translator = Translator("m")
    got = events(translator.feed(raw) + translator.end())
    starts = [d["content_block"] for n, d in got if n == "content_block_start"]
    assert starts == [{"type": "thinking", "thinking": "", "signature": ""}, {"type": "text", "text": ""},
                      {"type": "tool_use", "id": "c1", "name": "f", "input": {}},
                      {"type": "tool_use", "id": "c2", "name": "g", "input": {}}]
    pieces = [(d["index"], d["delta"]) for n, d in got if n == "content_block_delta"]
    assert pieces == [(0, {"type": "thinking_delta", "thinking": "hm"}), (1, {"type": "text_delta", "text": "ok"}),
                      (2, {"type": "input_json_delta", "partial_json": '{"a":1}'}),
                      (3, {"type": "input_json_delta", "partial_json": '{"b":2}'})]
    assert [d["index"] for n, d in got if n == "content_block_stop"] == [0, 1, 2, 3]
    assert got[-2][1]["delta"]["stop_reason"] == "tool_use", "a tool was called: tool_use whatever finish_reason says"


def test_how_a_translated_stream_ends():
    said_why = Translator("m")
    out = said_why.feed(sse({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}]},
                            done=False)) + said_why.end()
    assert said_why.finished and events(out)[-1][0] == "message_stop", "a finish_reason without [DONE] completes"
    cut = Translator("m")
    cut.feed(sse({"choices": [{"index": 0, "delta": {"content": "x"}}]}, done=False))
    assert cut.end() == b"" and not cut.finished, "no reason, no [DONE]: the relay adds the cut notice"
    assert events(cut.cut("worker w failed"))[0][1] == {"type": "error", "error": {"type": "api_error",
                                                                                    "message": "worker w failed"}}
    failed = Translator("m")
    got = events(failed.feed(b'data: {"error": {"message": "simulated failure"}}\n\ndata: [DONE]\n\n'))
    assert failed.finished and [n for n, _ in got] == ["error"] and got[0][1]["error"]["message"] == "simulated failure"


def test_a_native_stream_passes_in_whole_events_and_is_known_finished_by_message_stop():
    raw = (b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":3}}}\n\n'
           b'event: message_delta\ndata: {"type":"message_delta","delta":{},"usage":{"output_tokens":7}}\n\n'
           b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    relay = Passthrough()
    out = b""
    for i in range(0, len(raw), 9):
        piece = relay.feed(raw[i:i + 9])
        assert piece == b"" or piece.endswith(b"\n\n"), "never half an event"
        out += piece
    assert out + relay.end() == raw and relay.finished and relay.usage().tokens == 7
    unfinished = Passthrough()
    unfinished.feed(raw[:raw.index(b"event: message_stop")])
    assert not unfinished.finished
    llama = Passthrough()
    rewrapped = llama.feed(b'event: error\ndata: {"error":{"code":500,"message":"slot lost","type":"x"}}\n\n')
    assert llama.finished and rewrapped == (b'event: error\ndata: {"type":"error","error":{"type":"api_error",'
                                            b'"message":"slot lost"}}\n\n')
    whole = Passthrough()
    assert whole.whole(b'{"usage":{"output_tokens":5}}') == b'{"usage":{"output_tokens":5}}'
    assert whole.usage().tokens == 5 and Passthrough(generates=False).usage() is None


def test_a_native_stream_that_starts_without_message_start_gets_one():
    # llama-server sends message_start with the first token's text only: a first token that is part of
    # a character leaves the stream without one, and the SDKs' stream helpers cannot read it.
    raw = (b': keep-alive\n\n'
           b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
           b'"content_block":{"type":"text","text":""}}\n\n')
    relay = Passthrough("m:latest")
    out = relay.feed(raw[:20]) + relay.feed(raw[20:]) + relay.end()
    assert out.startswith(b": keep-alive\n\n"), "a comment is passed on as it came"
    got = events(out.removeprefix(b": keep-alive\n\n"))
    assert [n for n, _ in got] == ["message_start", "content_block_start"]
    message = got[0][1]["message"]
    assert message["model"] == "m:latest" and message["content"] == [] and message["id"].startswith("msg_")
    assert message["usage"] == {"input_tokens": 0, "output_tokens": 0}
    started = Passthrough("m")
    once = b'event: message_start\ndata: {"type":"message_start","message":{}}\n\n'
    assert started.feed(once) == once and started.feed(raw) == raw, "a stream that has one is left alone"


@pytest.mark.parametrize(("body", "status", "kind", "message"), [
    (b'{"error":{"code":400,"message":"too long","type":"exceed_context_size_error"}}', 400, "invalid_request_error",
     "too long"),
    (b'{"error":"model \\"x\\" not found"}', 404, "not_found_error", 'model "x" not found'),
    (b"<html>bad gateway</html>", 502, "api_error", "<html>bad gateway</html>"),
    (b"", 503, "overloaded_error", "worker answered 503"),
])
def test_a_workers_error_becomes_anthropic_shaped(body, status, kind, message):
    assert orjson.loads(as_anthropic_error(body, status)) == {"type": "error", "error": {"type": kind,
                                                                                         "message": message}}


def test_an_anthropic_shaped_error_is_kept_as_it_came():
    body = b'{"type":"error","error":{"type":"not_found_error","message":"model \'x\' not found"},"request_id":"r"}'
    assert as_anthropic_error(body, 404) == body


def test_the_token_estimate_is_ollamas_bytes_over_four():
    assert estimate_tokens(ASK) == 1, "6 bytes: at least one token when there is a message"
    data = {"model": "m", "system": "s" * 40, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "é" * 10}]},  # bytes, as Go's len counts them
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}],
        "tools": [{"name": "calc", "description": "adds", "input_schema": {"type": "object"}}]}
    tool_use = len(orjson.dumps(data["messages"][1]["content"][0]))
    expected = (40 + 4 + 20 + 9 + tool_use + 4 + 4 + len(b'{"type":"object"}')) // 4
    assert estimate_tokens(data) == expected
