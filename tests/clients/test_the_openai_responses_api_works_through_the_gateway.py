"""The official `openai` SDK's Responses API (responses.create, create(stream=True), responses.stream())
through the gateway: translated to chat completions for simulated Ollama workers too old to serve
/v1/responses (the simulator reports 0.12.6), and passed through to an Ollama-like worker of 0.14.2 that
serves it itself (a real aiohttp app: the simulator's probes and chat, plus Ollama's /v1/responses)."""

import json
import re

import openai
import orjson
import pytest
from aiohttp import web

from local_workers.sim import SimWorker, build_sim_app, parse_models
from tests.conftest import WorkerSpec

MODEL = "llama3.2:1b"
ASK = "why is the sky blue?"
WEATHER = {"type": "function", "name": "get_weather", "description": "weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
async def fleet(start_fleet):
    return await start_fleet(WorkerSpec("gpu0", f"{MODEL}=1.3GiB"), WorkerSpec("gpu1", f"{MODEL}=1.3GiB"))


@pytest.fixture
def client(fleet):
    return openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)


async def tokens_counted(fleet) -> float:
    async with fleet.get("/metrics") as resp:
        found = re.search(rf'^beacon_tokens_generated_total{{model="{MODEL}"}} (\S+)$', await resp.text(), re.M)
    return float(found[1]) if found else 0.0


async def test_create_answers_a_whole_response_with_its_usage(client, fleet):
    response = await client.responses.create(model=MODEL, input=ASK, instructions="be brief",
                                             max_output_tokens=4)
    assert response.object == "response" and response.id.startswith("resp_") and response.model == MODEL
    assert response.status == "completed", "a length stop says completed, as Ollama says it"
    assert response.output[0].type == "message" and response.output[0].id.startswith("msg_")
    assert response.output_text and response.usage.output_tokens == 4
    assert response.usage.total_tokens == response.usage.input_tokens + 4 and response.instructions == "be brief"
    assert await tokens_counted(fleet) == 4


async def test_streams_carry_the_same_answer_as_a_whole_response(client, fleet):
    whole = await client.responses.create(model=MODEL, input=ASK, max_output_tokens=5)
    events = [e async for e in await client.responses.create(model=MODEL, input=ASK, max_output_tokens=5,
                                                             stream=True)]
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == whole.output_text
    async with client.responses.stream(model=MODEL, input=ASK, max_output_tokens=5) as stream:
        final = await stream.get_final_response()
    assert final.output_text == whole.output_text and final.usage.output_tokens == 5 and final.status == "completed"
    assert await tokens_counted(fleet) == 15


async def test_a_function_tool_call_round_trip(client):
    first = await client.responses.create(model=MODEL, input=[{"role": "user", "content": "weather in Paris?"}],
                                          tools=[WEATHER])
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and call.id.startswith("fc_") and call.call_id
    assert "city" in json.loads(call.arguments)
    async with client.responses.stream(model=MODEL, input="weather in Paris?", tools=[WEATHER]) as stream:
        streamed = await stream.get_final_response()
    assert [item.name for item in streamed.output if item.type == "function_call"] == ["get_weather"]
    follow_up = [{"role": "user", "content": "weather in Paris?"}, call.model_dump(exclude_none=True),
                 {"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "blue"}'}]
    second = await client.responses.create(model=MODEL, input=follow_up, tools=[WEATHER], max_output_tokens=6)
    assert second.output[0].type == "message" and second.output_text


async def test_turns_of_one_conversation_stay_on_the_worker_that_served_it(client, fleet):
    for name in ("gpu0", "gpu1"):  # both hold the model: without affinity, turns would spread
        async with fleet.http.post(fleet.worker_urls[name] + "/api/generate", json={"model": MODEL}):
            pass
    await fleet.probe()
    served: dict[int, set[str]] = {n: set() for n in range(4)}
    for turn in range(3):
        for n in served:
            conversation = [{"role": "user", "content": f"question {n}"}]
            conversation += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}] * turn
            raw = await client.responses.with_raw_response.create(model=MODEL, input=conversation,
                                                                  instructions=f"You are assistant {n}.",
                                                                  max_output_tokens=2)
            served[n].add(raw.headers["X-Beacon-Worker"])
    assert all(len(workers) == 1 for workers in served.values()), served
    assert {w for s in served.values() for w in s} == {"gpu0", "gpu1"}, "different conversations still spread"


async def test_a_stream_the_worker_cuts_ends_as_a_failed_response(client, fleet):
    for worker in fleet.workers.values():
        worker.set_mode("drop")
    events = [e async for e in await client.responses.create(model=MODEL, input=ASK, stream=True)]
    assert [e.type for e in events][-2:] == ["error", "response.failed"]
    assert events[-1].response.id == events[0].response.id and "mid-stream" in events[-2].message
    assert [e.sequence_number for e in events] == list(range(len(events)))


async def test_errors_are_openai_shaped_and_raise_the_sdks_own_exceptions(client):
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="does-not-exist", input=ASK)
    for bad in ({"input": []}, {"input": 5}, {"input": [{"type": "message", "role": "robot", "content": "x"}]},
                {"input": ASK, "max_output_tokens": 0}, {"input": ASK, "text": {"format": {"type": "xml"}}}):
        with pytest.raises(openai.BadRequestError):
            await client.responses.create(model=MODEL, **bad)
    file = {"role": "user", "content": [{"type": "input_file", "file_data": "data:application/pdf;base64,JVBER"}]}
    with pytest.raises(openai.BadRequestError, match="input_file"):  # no worker can: each said why
        await client.responses.create(model=MODEL, input=[file])
    with pytest.raises(openai.BadRequestError, match="stores no responses"):
        await client.responses.create(model=MODEL, input=ASK, previous_response_id="resp_1")


async def test_a_key_ollama_would_read_differently_is_refused(fleet):
    async with fleet.post("/v1/responses", json={"model": MODEL, "Model": "other", "input": ASK}) as resp:
        assert resp.status == 400 and "'model'" in (await resp.json())["error"]["message"]


# -- a worker that serves /v1/responses itself ------------------------------------------------------

def native_worker(seen: list[dict]) -> web.Application:
    """The simulator's probes (reporting Ollama 0.14.2) plus a /v1/responses that answers as Ollama's
    ResponsesWriter does; input "stop early" ends the stream after its first delta."""
    app = build_sim_app(SimWorker(name="native", models=parse_models(f"{MODEL}=1.3GiB"), version="0.14.2"))

    async def responses(request: web.Request) -> web.StreamResponse:
        asked = await request.json()
        seen.append(asked)
        usage = {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}
        item = {"id": "msg_9", "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "native answer", "annotations": []}]}
        done = {"id": "resp_9", "object": "response", "created_at": 1, "status": "completed", "model": asked["model"],
                "output": [item], "usage": usage}
        if not asked.get("stream"):
            return web.json_response(done)
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        started = {**done, "status": "in_progress", "output": [], "usage": None}
        events = [("response.created", {"response": started}), ("response.in_progress", {"response": started}),
                  ("response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress",
                                                                               "content": []}}),
                  ("response.content_part.added", {"item_id": "msg_9", "output_index": 0, "content_index": 0,
                                                   "part": {"type": "output_text", "text": "", "annotations": []}}),
                  ("response.output_text.delta", {"item_id": "msg_9", "output_index": 0, "content_index": 0,
                                                  "delta": "native answer"}),
                  ("response.output_text.done", {"item_id": "msg_9", "output_index": 0, "content_index": 0,
                                                 "text": "native answer"}),
                  ("response.content_part.done", {"item_id": "msg_9", "output_index": 0, "content_index": 0,
                                                  "part": item["content"][0]}),
                  ("response.output_item.done", {"output_index": 0, "item": item}),
                  ("response.completed", {"response": done})]
        if asked.get("input") == "stop early":
            events = events[:5]
        for n, (kind, data) in enumerate(events):
            payload = orjson.dumps({"type": kind, "sequence_number": n, **data})
            await out.write(f"event: {kind}\ndata: ".encode() + payload + b"\n\n")
        return out

    app.router.add_post("/v1/responses", responses)
    return app


@pytest.fixture
async def native(start_fleet, aiohttp_server):
    seen: list[dict] = []
    server = await aiohttp_server(native_worker(seen))
    fleet = await start_fleet(WorkerSpec("native", url=str(server.make_url("")).rstrip("/")))
    return fleet, seen, openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)


async def test_a_worker_that_serves_responses_gets_the_clients_request_itself(native):
    fleet, seen, client = native
    whole = await client.responses.create(model=MODEL, input=ASK, max_output_tokens=9)
    assert whole.id == "resp_9" and whole.output_text == "native answer"
    assert seen[-1] == {"model": MODEL, "input": ASK, "max_output_tokens": 9}, "the client's own request"
    async with client.responses.stream(model=MODEL, input=ASK) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert deltas == ["native answer"] and final.id == "resp_9" and final.usage.output_tokens == 2
    assert await tokens_counted(fleet) == 4, "each answer's usage.output_tokens, whole and streamed"


async def test_a_native_stream_that_stops_early_ends_as_a_failed_response(native):
    _, _, client = native
    events = [e async for e in await client.responses.create(model=MODEL, input="stop early", stream=True)]
    assert [e.type for e in events][-2:] == ["error", "response.failed"]
    assert events[-2].sequence_number == 5 and events[-1].sequence_number == 6
    assert events[-1].response.id == "resp_9" and "ended the stream early" in events[-1].response.error.message
