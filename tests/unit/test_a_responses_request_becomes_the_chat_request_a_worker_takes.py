"""backends/responses_front.py: an OpenAI Responses request as the /v1/chat/completions body of a
worker that does not serve /v1/responses itself."""

import pytest

from backends.responses_front import chat_request
from backends.translate import Unsupported

WEATHER = {"type": "function", "name": "get_weather", "description": "weather in a city", "strict": False,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def test_a_string_input_and_instructions_become_a_system_and_a_user_message():
    body = chat_request({"model": "tiny", "instructions": "be brief", "input": "hi"}, "models/tiny.gguf")
    assert body == {"model": "models/tiny.gguf",
                    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}


def test_message_items_keep_their_roles_and_their_text_parts_join_as_ollama_joins_them():
    body = chat_request({"input": [
        {"role": "developer", "content": "rules"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "one "},
                                                         {"type": "input_text", "text": "two"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "earlier", "annotations": []}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
        {"role": "user", "content": "again"}]}, "m")
    assert body["messages"] == [{"role": "system", "content": "rules"}, {"role": "user", "content": "one two"},
                                {"role": "assistant", "content": "earlier"}, {"role": "user", "content": "again"}]


def test_an_image_makes_the_content_a_list_of_parts_in_order():
    url = "data:image/png;base64,iVBORw0KGgo="
    body = chat_request({"input": [{"role": "user", "content": [
        {"type": "input_text", "text": "what is this?"}, {"type": "input_image", "image_url": url, "detail": "low"}]}]},
        "m")
    assert body["messages"][0]["content"] == [{"type": "text", "text": "what is this?"},
                                              {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]
    with pytest.raises(Unsupported, match="file_id"):
        chat_request({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}, "m")
    with pytest.raises(Unsupported, match="input_file"):
        chat_request({"input": [{"role": "user", "content": [{"type": "input_file", "file_data": "x"}]}]}, "m")


def test_consecutive_function_calls_become_one_assistant_message_and_their_outputs_tool_messages():
    body = chat_request({"input": [
        {"role": "user", "content": "weather in Paris and Oslo?"},
        {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "call_id": "call_b", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "snow"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "checking more"}]},
        {"type": "function_call", "call_id": "call_c", "name": "get_weather", "arguments": '{"city":"Rome"}'}]},
        "m")
    calls = [{"id": f"call_{x}", "type": "function", "function": {"name": "get_weather",
                                                                   "arguments": f'{{"city":"{city}"}}'}}
             for x, city in (("a", "Paris"), ("b", "Oslo"), ("c", "Rome"))]
    assert body["messages"][1:] == [
        {"role": "assistant", "content": "", "tool_calls": calls[:2]},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": "snow"},
        {"role": "assistant", "content": "checking more", "tool_calls": calls[2:]}]


def test_function_tools_take_the_chat_shape_and_hosted_tools_are_left_out():
    body = chat_request({"input": "hi", "tools": [WEATHER, {"type": "web_search"}],
                         "tool_choice": {"type": "function", "name": "get_weather"}, "parallel_tool_calls": False}, "m")
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "weather in a city", "strict": False,
        "parameters": WEATHER["parameters"]}}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False
    for choice, chat in (("auto", "auto"), ("none", "none"), ("required", "required"),
                         ({"type": "allowed_tools", "mode": "required", "tools": []}, "required")):
        assert chat_request({"input": "hi", "tools": [WEATHER], "tool_choice": choice}, "m")["tool_choice"] == chat
    only_hosted = chat_request({"input": "hi", "tools": [{"type": "web_search"}], "tool_choice": "required"}, "m")
    assert "tools" not in only_hosted and "tool_choice" not in only_hosted


def test_generation_settings_and_formats_map_to_their_chat_names():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    body = chat_request({"input": "hi", "max_output_tokens": 16, "temperature": 0.2, "top_p": 0.9, "stream": True,
                         "text": {"format": {"type": "json_schema", "name": "num", "schema": schema, "strict": True}},
                         "reasoning": {"effort": "low"}, "store": False, "metadata": {"a": "b"}}, "m")
    assert body == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16,
                    "temperature": 0.2, "top_p": 0.9, "stream": True, "stream_options": {"include_usage": True},
                    "response_format": {"type": "json_schema",
                                        "json_schema": {"name": "num", "schema": schema, "strict": True}},
                    "reasoning_effort": "low"}
    assert chat_request({"input": "hi", "text": {"format": {"type": "json_object"}}}, "m")["response_format"] == {
        "type": "json_object"}
    assert "response_format" not in chat_request({"input": "hi", "text": {"format": {"type": "text"}}}, "m")


def test_an_input_item_no_chat_worker_can_take_is_unsupported():
    with pytest.raises(Unsupported, match="item_reference"):
        chat_request({"input": [{"type": "item_reference", "id": "msg_1"}]}, "m")
