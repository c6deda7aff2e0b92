"""The official openai SDK reads what responses_stream.py makes of a chat stream: a real aiohttp server
on 127.0.0.1 answers /v1/responses with the translated events (a few bytes at a time), and the SDK's
own responses.stream() accumulator, create(stream=True) and create() read them."""

import json

import openai
import orjson
import pytest
from aiohttp import web

from backends.responses_stream import ResponsesStream
from tests.unit.test_chat_answers_become_responses_objects_and_stream_events import CALLS, TEXT, chunk, sse

THOUGHT = sse(chunk({"reasoning_content": "the user greets"}), chunk({"content": "Hello"}), chunk(finish="stop"),
              {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}, "[DONE]")
WHOLE = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hello"}}],
         "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}


async def answer(request: web.Request) -> web.StreamResponse:
    asked = await request.json()
    translator = ResponsesStream(asked["model"], asked)
    if not asked.get("stream"):
        return web.Response(body=translator.whole(orjson.dumps(WHOLE)), content_type="application/json")
    raw = CALLS if asked.get("tools") else THOUGHT if asked.get("reasoning") else TEXT
    out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await out.prepare(request)
    for i in range(0, len(raw), 5):
        await out.write(translator.feed(raw[i:i + 5]))
    await out.write(translator.end())
    return out


@pytest.fixture
async def client(aiohttp_server):
    app = web.Application()
    app.router.add_post("/v1/responses", answer)
    server = await aiohttp_server(app)
    return openai.AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key="unused", max_retries=0)


async def test_responses_stream_accumulates_the_text_and_the_final_response(client):
    async with client.responses.stream(model="tiny", input="hi", max_output_tokens=8) as stream:
        deltas = [event.delta async for event in stream if event.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert deltas == ["Hel", "lo"] and final.output_text == "Hello" and final.status == "completed"
    assert final.usage.input_tokens == 11 and final.usage.output_tokens == 3 and final.id.startswith("resp_")


async def test_responses_stream_accumulates_function_calls_whose_arguments_came_in_pieces(client):
    async with client.responses.stream(model="tiny", input="weather?", tools=[WEATHER]) as stream:
        final = await stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.name) for c in calls] == [("call_a", "get_weather"), ("call_b", "get_time")]
    assert json.loads(calls[0].arguments) == {"city": "Paris"} and calls[1].arguments == "{}"


async def test_responses_stream_accumulates_reasoning_before_the_message(client):
    async with client.responses.stream(model="tiny", input="hi", reasoning={"effort": "low"}) as stream:
        final = await stream.get_final_response()
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].summary[0].text == "the user greets" and final.output_text == "Hello"


async def test_create_with_stream_yields_typed_events_ending_in_completed(client):
    events = [event async for event in await client.responses.create(model="tiny", input="hi", stream=True)]
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello"
    assert events[-1].response.output_text == "Hello"


async def test_create_reads_the_whole_response(client):
    response = await client.responses.create(model="tiny", input="hi")
    assert response.output_text == "Hello" and response.usage.total_tokens == 7 and response.object == "response"
