"""Ollama <-> OpenAI/llama.cpp translation, both ways, as pure functions."""

import orjson
import pytest

from backends.answers import Translator, embed_answer
from backends.translate import Unsupported, chat_body, embed_body, generate_body


def test_chat_maps_options_format_images_and_tool_calls():
    body = chat_body({
        "model": "x", "stream": False, "format": "json",
        "options": {"temperature": 0.2, "top_k": 5, "num_predict": 7, "seed": 3, "stop": ["\n"], "num_ctx": 8192},
        "messages": [{"role": "user", "content": "look", "images": ["aGk="]},
                     {"role": "assistant", "content": "", "tool_calls": [
                         {"function": {"name": "weather", "arguments": {"city": "Oslo"}}}]},
                     {"role": "tool", "content": "sunny", "tool_name": "weather"}],
        "tools": [{"type": "function", "function": {"name": "weather"}}]}, "model-id")
    assert body["model"] == "model-id" and body["stream"] is False
    assert body["temperature"] == 0.2 and body["top_k"] == 5 and body["max_tokens"] == 7 and body["seed"] == 3
    assert "num_ctx" not in body, "a server start setting is accepted and left alone"
    assert body["response_format"] == {"type": "json_object"}
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}}
    assert body["messages"][0]["content"][1] == image
    call = body["messages"][1]["tool_calls"][0]
    assert call["function"] == {"name": "weather", "arguments": '{"city":"Oslo"}'}
    assert body["messages"][2] == {"role": "tool", "content": "sunny", "name": "weather"}
    assert body["tools"][0]["function"]["name"] == "weather"


def test_a_json_schema_format_becomes_a_schema_constraint():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = chat_body({"messages": [], "format": schema}, "m")
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    path, native = generate_body({"prompt": "p", "raw": True, "format": schema}, "m", native_raw=True)
    assert path == "/completion" and native["json_schema"] == schema


def test_generate_applies_the_chat_template_unless_raw():
    path, body = generate_body({"prompt": "why", "system": "be brief", "options": {"num_predict": 3}}, "m", True)
    assert path == "/v1/chat/completions"
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "why"}]
    path, body = generate_body({"prompt": "<s>[INST] why", "raw": True, "options": {"num_predict": 3}}, "m", True)
    assert (path, body["prompt"], body["n_predict"]) == ("/completion", "<s>[INST] why", 3)
    path, body = generate_body({"prompt": "p", "raw": True}, "m", native_raw=False)
    assert path == "/v1/completions"


@pytest.mark.parametrize(("extra", "words"), [({"template": "{{ .Prompt }}"}, "custom template"),
                                              ({"suffix": "end"}, "suffix"), ({"context": [1, 2]}, "context"),
                                              ({"options": {"mirostat_tau": 1}}, "mirostat_tau"),
                                              ({"format": "yaml"}, "format")])
def test_what_cannot_be_honoured_is_refused_clearly(extra, words):
    with pytest.raises(Unsupported, match=words):
        generate_body({"prompt": "p", **extra}, "m", native_raw=True)


def test_embed_inputs_become_a_list():
    assert embed_body({"input": "one"}, "m", legacy=False)["input"] == ["one"]
    assert embed_body({"prompt": "two"}, "m", legacy=True)["input"] == ["two"]
    with pytest.raises(Unsupported):
        embed_body({"input": [1, 2]}, "m", legacy=False)


def sse(*events) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n\n" for e in events)


def chunk(content=None, finish=None, **extra):
    delta = {"content": content} if content is not None else {}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def lines(data: bytes) -> list[dict]:
    return [orjson.loads(x) for x in data.splitlines() if x.strip()]


def test_a_chat_stream_becomes_ndjson_whatever_the_chunk_boundaries():
    stream = sse(chunk("héllo"), chunk(" wörld ☃"), chunk(None, "length"),
                 {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2},
                  "timings": {"prompt_n": 4, "prompt_ms": 1.5, "predicted_n": 2, "predicted_ms": 10.0}}, b"[DONE]")
    for size in (1, 3, 7, len(stream)):
        t = Translator("tiny:latest", "chat")
        out = b"".join(t.feed(stream[i:i + size]) for i in range(0, len(stream), size)) + t.end()
        got = lines(out)
        assert [g["message"]["content"] for g in got[:-1]] == ["héllo", " wörld ☃"]
        final = got[-1]
        assert final["done"] is True and final["done_reason"] == "length" and final["model"] == "tiny:latest"
        assert (final["prompt_eval_count"], final["eval_count"]) == (4, 2)
        assert (final["prompt_eval_duration"], final["eval_duration"]) == (1_500_000, 10_000_000)


def test_invalid_utf8_from_a_worker_does_not_break_the_stream():
    t = Translator("m", "generate")
    out = t.feed(b'data: {"choices":[{"delta":{"content":"ok \xff\xfe"}}]}\n\n') + t.end()
    got = lines(out)
    assert got[0]["response"].startswith("ok ") and got[-1]["done"] is True


def test_streamed_tool_call_fragments_arrive_whole_in_the_final_message():
    stream = sse({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "wea", "arguments": ""}}]}}]},
                 {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "ther",
                                                                                   "arguments": '{"city": '}}]}}]},
                 {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}}]},
                 chunk(None, "tool_calls"), b"[DONE]")
    t = Translator("m", "chat")
    final = lines(t.feed(stream) + t.end())[-1]
    assert final["message"]["tool_calls"] == [{"function": {"name": "weather", "arguments": {"city": "Oslo"}}}]
    assert final["done_reason"] == "stop"


def test_an_error_event_ends_the_stream_with_one_error_line():
    t = Translator("m", "chat")
    out = t.feed(sse(chunk("a"), {"error": {"code": 500, "message": "slot crashed"}})) + t.end()
    got = lines(out)
    assert got[-1] == {"error": "slot crashed"} and len(got) == 2


def test_llama_native_completion_stream_and_whole_answers():
    t = Translator("m", "generate", native=True)
    out = t.feed(sse({"content": "a", "stop": False}, {"content": "b", "stop": True, "stop_type": "limit",
                                                       "timings": {"prompt_n": 1, "predicted_n": 2}})) + t.end()
    got = lines(out)
    assert "".join(g["response"] for g in got) == "ab" and got[-1]["done_reason"] == "length"
    whole = orjson.loads(Translator("m", "generate", native=True).whole(
        orjson.dumps({"content": "xyz", "stop_type": "eos", "timings": {"predicted_n": 3}})))
    assert whole["response"] == "xyz" and whole["done_reason"] == "stop" and whole["eval_count"] == 3


def test_whole_chat_answer_with_tool_calls():
    body = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
        "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}
    got = orjson.loads(Translator("m", "chat").whole(orjson.dumps(body)))
    assert got["message"] == {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "f", "arguments": {"x": 1}}}]}
    assert got["eval_count"] == 5 and got["done"] is True


def test_embeddings_answers_keep_input_order():
    body = orjson.dumps({"data": [{"index": 1, "embedding": [0.2]}, {"index": 0, "embedding": [0.1]}],
                         "usage": {"prompt_tokens": 2}})
    assert orjson.loads(embed_answer(body, "m", legacy=False, started=0.0))["embeddings"] == [[0.1], [0.2]]
    assert orjson.loads(embed_answer(body, "m", legacy=True, started=0.0)) == {"embedding": [0.1]}


def test_think_reaches_an_openai_style_worker_as_its_template_switch_or_effort():
    ask = {"messages": [{"role": "user", "content": "hi"}]}
    assert chat_body({**ask, "think": True}, "m")["chat_template_kwargs"] == {"enable_thinking": True}
    assert chat_body({**ask, "think": False}, "m")["chat_template_kwargs"] == {"enable_thinking": False}
    assert chat_body({**ask, "think": "high"}, "m")["reasoning_effort"] == "high"
    plain = chat_body(ask, "m")
    assert "chat_template_kwargs" not in plain and "reasoning_effort" not in plain
    _, generate = generate_body({"prompt": "hi", "think": True}, "m", native_raw=True)
    assert generate["chat_template_kwargs"] == {"enable_thinking": True}


def test_reasoning_apart_from_the_content_comes_back_as_ollamas_thinking():
    t = Translator("m", "chat")
    stream = b"".join(b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": d}]}) + b"\n\n" for d in (
        {"role": "assistant", "reasoning_content": "let me see"}, {"reasoning_content": " more"},
        {"content": "42"})) + b"data: [DONE]\n\n"
    lines = [orjson.loads(line) for line in (t.feed(stream) + t.end()).splitlines()]
    assert "".join(line["message"].get("thinking", "") for line in lines) == "let me see more"
    assert "".join(line["message"]["content"] for line in lines) == "42" and lines[-1]["done"] is True
    whole = Translator("m", "generate").whole(orjson.dumps({"choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "42", "reasoning": "vLLM's name for it"}}]}))
    answer = orjson.loads(whole)
    assert (answer["response"], answer["thinking"]) == ("42", "vLLM's name for it")
