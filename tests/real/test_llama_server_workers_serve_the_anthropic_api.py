"""Real llama-server workers behind the gateway's /v1/messages, driven with the official anthropic SDK:
llama-server serves the Messages API itself, so requests pass through under the worker's own model id
(never translated), streams relay event by event, count_tokens is the worker's own tokenizer's count,
and the worker's OpenAI-shaped refusals come back Anthropic-shaped."""

import anthropic
import pytest
from structlog.testing import capture_logs

from tests.conftest import WorkerSpec

ASK = [{"role": "user", "content": "why is the sky blue?"}]


@pytest.fixture
async def single(llama_server, tiny_models, start_fleet):
    server = await llama_server(model=tiny_models["tiny-a"], alias="tiny-a", parallel=2)
    fleet = await start_fleet(WorkerSpec("llama0", kind="llamacpp", url=server.url))
    fleet.client = anthropic.AsyncAnthropic(base_url=fleet.url, api_key="unused", max_retries=0)
    return fleet


async def test_messages_whole_and_streamed_pass_through_to_llama_server(single):
    client = single.client
    with capture_logs() as logs:
        whole = await client.messages.create(model="tiny-a", max_tokens=5, messages=ASK, system="be brief")
        async with client.messages.stream(model="tiny-a:latest", max_tokens=4, messages=ASK) as stream:
            final = await stream.get_final_message()
        events = [e.type async for e in await client.messages.create(model="tiny-a", max_tokens=3, messages=ASK,
                                                                     stream=True)]
    assert whole.type == "message" and whole.stop_reason == "max_tokens" and whole.usage.output_tokens == 5
    assert whole.model == "tiny-a", "llama-server answered itself, under its own id for the model"
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 4 and final.content[0].type == "text"
    assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]
    done = [e for e in logs if e["event"] == "request.done"]
    assert [(e["endpoint"], e["outcome"], e["worker"], e["tokens"]) for e in done] == [
        ("/v1/messages", "ok", "llama0", 5), ("/v1/messages", "ok", "llama0", 4), ("/v1/messages", "ok", "llama0", 3)]


async def test_every_stream_reads_with_the_sdks_helper_even_one_llama_server_starts_without_message_start(single):
    # llama-server sends message_start with the first token's text: a tiny model's first token is often
    # part of a character, and then the gateway supplies the message_start the helper needs.
    for _ in range(20):
        async with single.client.messages.stream(model="tiny-a", max_tokens=3, messages=ASK) as stream:
            final = await stream.get_final_message()
        assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 3


async def test_tools_reach_llama_server_and_any_answer_parses(single):
    tool = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    answer = await single.client.messages.create(model="tiny-a", max_tokens=8, messages=ASK, tools=[tool])
    assert answer.stop_reason in ("end_turn", "max_tokens", "tool_use")


async def test_count_tokens_is_the_workers_own_count(single):
    with capture_logs() as logs:
        counted = await single.client.messages.count_tokens(model="tiny-a", messages=ASK)
    assert counted.input_tokens > 0
    done = [e for e in logs if e["event"] == "request.done"]
    assert [(e["endpoint"], e["worker"], e["reason"]) for e in done] == [
        ("/v1/messages/count_tokens", "llama0", "tokenized")]


async def test_a_llama_server_refusal_comes_back_anthropic_shaped(single):
    too_long = [{"role": "user", "content": "blue sky " * 2000}]  # past the 512 tokens a slot holds
    with pytest.raises(anthropic.BadRequestError) as info:
        await single.client.messages.create(model="tiny-a", max_tokens=4, messages=too_long)
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "invalid_request_error"
    assert "context" in info.value.body["error"]["message"]
