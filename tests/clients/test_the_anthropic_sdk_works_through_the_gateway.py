"""The official `anthropic` Python SDK, pointed at the gateway as base_url (what Claude Code's
ANTHROPIC_BASE_URL does), works unchanged against simulated Ollama workers (0.12.6: no /v1/messages
of their own, so every request is translated to their /v1/chat/completions): text, system prompts,
images, streams read both ways, tool use and tool results, stop reasons, usage, count_tokens, errors,
failover before the first byte, and one request.done line per request."""

import base64

import anthropic
import pytest
from structlog.testing import capture_logs

from tests.conftest import WorkerSpec

MODEL = "llama3.2:1b"
ASK = [{"role": "user", "content": "why is the sky blue?"}]
WEATHER = {"name": "get_weather", "description": "weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()


@pytest.fixture
async def fleet(start_fleet):
    return await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), WorkerSpec("cpu0", tier="cpu"))


@pytest.fixture
def client(fleet):
    return anthropic.AsyncAnthropic(base_url=fleet.url, api_key="unused", max_retries=0)


async def test_a_message_with_and_without_a_system_prompt(client):
    plain = await client.messages.create(model=MODEL, max_tokens=4, messages=ASK)
    assert plain.type == "message" and plain.role == "assistant" and plain.model == MODEL
    assert plain.id.startswith("msg_") and [b.type for b in plain.content] == ["text"] and plain.content[0].text
    assert plain.stop_reason == "max_tokens" and plain.stop_sequence is None
    assert plain.usage.output_tokens == 4 and plain.usage.input_tokens == 5, "the sim counts the prompt's words"
    told = await client.messages.create(model=MODEL, max_tokens=4, messages=ASK, system="answer briefly")
    assert told.usage.input_tokens == 7, "the system prompt reached the worker"
    blocks = await client.messages.create(model=MODEL, max_tokens=4, messages=ASK,
                                          system=[{"type": "text", "text": "answer briefly"}])
    assert blocks.usage.input_tokens == 7


async def test_a_stream_read_with_the_helper_and_event_by_event(client):
    whole = await client.messages.create(model=MODEL, max_tokens=4, messages=ASK)
    async with client.messages.stream(model=MODEL, max_tokens=4, messages=ASK) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == final.content[0].text == whole.content[0].text, "same prompt, same tokens"
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 4
    events = [event async for event in await client.messages.create(model=MODEL, max_tokens=4, messages=ASK,
                                                                    stream=True)]
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"] and kinds[-3:] == [
        "content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"} and len(kinds) == 9
    assert events[-2].delta.stop_reason == "max_tokens" and events[-2].usage.output_tokens == 4


async def test_tool_use_then_its_result(client):
    first = await client.messages.create(model=MODEL, max_tokens=50, messages=ASK, tools=[WEATHER])
    call = first.content[-1]
    assert first.stop_reason == "tool_use" and call.type == "tool_use" and call.name == "get_weather"
    assert isinstance(call.input, dict) and call.id
    async with client.messages.stream(model=MODEL, max_tokens=50, messages=ASK, tools=[WEATHER],
                                      tool_choice={"type": "any"}) as stream:
        streamed = await stream.get_final_message()
    assert streamed.stop_reason == "tool_use" and streamed.content[-1].name == "get_weather"
    assert isinstance(streamed.content[-1].input, dict)
    said = [block.model_dump(exclude_none=True) for block in first.content]
    follow_up = [*ASK, {"role": "assistant", "content": said},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                               "content": [{"type": "text", "text": "sunny"}]}]}]
    second = await client.messages.create(model=MODEL, max_tokens=3, messages=follow_up, tools=[WEATHER])
    assert second.stop_reason == "max_tokens" and [b.type for b in second.content] == ["text"]


async def test_images_by_base64_and_by_url(client):
    seen = await client.messages.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
        {"type": "text", "text": "what is this?"}]}])
    assert seen.content[0].text
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}])
    assert "Only base64 images are supported" in info.value.message, "Ollama workers take base64 images only"


async def test_count_tokens_is_estimated_as_ollama_estimates_it(client, fleet):
    with capture_logs() as logs:
        counted = await client.messages.count_tokens(model=MODEL, messages=ASK)
        tools = await client.messages.count_tokens(model=MODEL, messages=ASK, tools=[WEATHER], system="be brief")
    assert counted.input_tokens == (len("user") + len(ASK[0]["content"])) // 4 == 6
    assert tools.input_tokens > counted.input_tokens
    done = [e for e in logs if e["event"] == "request.done"]
    assert [(e["endpoint"], e["outcome"], e["reason"], e["tokens"]) for e in done] == [
        ("/v1/messages/count_tokens", "ok", "estimate", None)] * 2
    assert fleet.gateway.inflight.service_s(MODEL) is None, "counting is no generation: nothing was learnt"
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.count_tokens(model="does-not-exist", messages=ASK)


async def test_errors_come_as_the_sdk_error_classes(client):
    with pytest.raises(anthropic.NotFoundError) as missing:
        await client.messages.create(model="does-not-exist", max_tokens=4, messages=ASK)
    assert missing.value.body["error"]["type"] == "not_found_error" and "not found" in missing.value.message
    for bad in ({"max_tokens": 0, "messages": ASK}, {"max_tokens": 4, "messages": []},
                {"max_tokens": 4, "messages": [{"role": "system", "content": "x"}]},
                {"max_tokens": 4, "messages": ASK, "tool_choice": {"type": "tool"}}):
        with pytest.raises(anthropic.BadRequestError) as info:
            await client.messages.create(model=MODEL, **bad)
        assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "invalid_request_error"


async def test_a_failing_worker_is_skipped_before_the_first_byte(client, fleet):
    fleet.workers["gpu0"].set_mode("error")
    fleet.workers["gpu1"].set_mode("error")
    for stream in (False, True):
        raw = await client.messages.with_raw_response.create(model=MODEL, max_tokens=3, messages=ASK, stream=stream)
        assert raw.headers["X-Beacon-Worker"] == "cpu0"
        if stream:
            assert [event.type async for event in await raw.parse()][-1] == "message_stop"
        else:
            assert (await raw.parse()).content[0].text
    fleet.workers["cpu0"].set_mode("error")
    with pytest.raises(anthropic.InternalServerError) as info:
        await client.messages.create(model=MODEL, max_tokens=3, messages=ASK)
    assert info.value.status_code == 502 and info.value.body["error"]["type"] == "api_error"


async def test_each_request_is_counted_under_v1_messages_with_one_done_line(client, fleet):
    with capture_logs() as logs:
        await client.messages.create(model=MODEL, max_tokens=3, messages=ASK)
        async with client.messages.stream(model=MODEL, max_tokens=3, messages=ASK) as stream:
            await stream.get_final_message()
    done = [e for e in logs if e["event"] == "request.done"]
    assert [(e["endpoint"], e["outcome"], e["status"], e["tokens"]) for e in done] == [
        ("/v1/messages", "ok", 200, 3)] * 2
    async with fleet.get("/metrics") as resp:
        text = await resp.text()
    assert 'beacon_requests_total{endpoint="/v1/messages",model="llama3.2:1b",outcome="ok"' in text
