"""A real llama-server behind the gateway's /v1/responses, driven with the official openai SDK. The
request is translated to llama-server's /v1/chat/completions and its answer back: llama-server's own
/v1/responses stream lacks output_index, content_index and sequence_number, on which the SDK's
responses.stream() fails, so the gateway does not use it."""

import openai
import pytest

from tests.conftest import WorkerSpec

ASK = "why is the sky blue?"


async def test_llama_servers_own_responses_stream_is_one_the_sdk_cannot_accumulate(llama_server, tiny_models):
    """Why llama-server workers are translated: should this start to pass, a newer llama-server numbers
    its events and backends/responses_front.serves_responses may send it /v1/responses itself."""
    server = await llama_server(model=tiny_models["tiny-a"], alias="tiny-a")
    direct = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(TypeError, match="NoneType"):
        async with direct.responses.stream(model="tiny-a", input=ASK, max_output_tokens=3) as stream:
            await stream.get_final_response()


@pytest.fixture
async def client(llama_server, tiny_models, start_fleet):
    server = await llama_server(model=tiny_models["tiny-a"], alias="tiny-a", parallel=2)
    fleet = await start_fleet(WorkerSpec("llama0", kind="llamacpp", url=server.url))
    return openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)


async def test_create_and_both_streams_read_one_answer(client):
    whole = await client.responses.create(model="tiny-a", input=ASK, instructions="be brief", max_output_tokens=5,
                                          temperature=0)
    assert whole.status == "completed" and whole.model == "tiny-a:latest" and whole.usage.output_tokens == 5
    assert whole.output[0].type == "message" and whole.usage.input_tokens > 0
    events = [e async for e in await client.responses.create(model="tiny-a", input=ASK, instructions="be brief",
                                                             max_output_tokens=5, temperature=0, stream=True)]
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert streamed == whole.output_text, "temperature 0: the same tokens"
    async with client.responses.stream(model="tiny-a", input=ASK, instructions="be brief", max_output_tokens=5,
                                       temperature=0) as stream:
        final = await stream.get_final_response()
    assert final.output_text == whole.output_text and final.usage.output_tokens == 5


async def test_a_function_call_output_and_errors(client):
    tool = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
    answer = await client.responses.create(model="tiny-a", max_output_tokens=3, tools=[tool], input=[
        {"role": "user", "content": ASK},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"}])
    assert answer.status == "completed" and answer.output
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="nope", input=ASK)
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(model="tiny-a", input=[])
