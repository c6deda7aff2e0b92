"""/v1/messages goes natively to workers that serve it (Ollama from 0.14.0, llama-server) and as a chat
completion to the rest: a native stream is relayed byte for byte in whole events and known finished by
its message_stop, its usage counted; a stream cut either way ends with one Anthropic error event; a
worker's OpenAI-shaped error comes back Anthropic-shaped; tool calls split across chunks arrive whole;
count_tokens asks a llama-server worker and estimates otherwise; Claude Code's x-api-key is a client key."""

import asyncio

import anthropic
import orjson
from aiohttp import web
from structlog.testing import capture_logs

from gateway.access import hash_key
from tests.component.fake_workers import MODEL, FakeWorker
from tests.conftest import WorkerSpec

ASK = {"model": MODEL, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
NATIVE = [  # what Ollama 0.14's /v1/messages streams: event lines, no ping
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": MODEL, "content": [],
        "usage": {"input_tokens": 3, "output_tokens": 0}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Hello there"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                       "usage": {"input_tokens": 3, "output_tokens": 7}}),
    ("message_stop", {"type": "message_stop"}),
]
SSE = b"".join(b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps(data)) for name, data in NATIVE)
WHOLE = {"id": "msg_2", "type": "message", "role": "assistant", "model": MODEL, "stop_reason": "end_turn",
         "content": [{"type": "text", "text": "Hello"}], "usage": {"input_tokens": 3, "output_tokens": 5}}


def dribble(body: bytes, status: int = 200, content_type: str = "text/event-stream", piece: int = 5):
    """An answer written a few bytes at a time, so events straddle chunks."""
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=status, headers={"Content-Type": content_type})
        await resp.prepare(request)
        for start in range(0, len(body), piece):
            await resp.write(body[start:start + piece])
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    return handler


def native_ollama(version: str, sse: bytes = SSE) -> FakeWorker:
    worker = FakeWorker("ollama")
    worker.got = []

    async def messages(request: web.Request) -> web.StreamResponse:
        worker.got.append(await request.read())
        if orjson.loads(worker.got[-1]).get("stream"):
            return await dribble(sse)(request)
        return web.json_response(WHOLE)

    worker.routes["/api/version"] = lambda request: _json({"version": version})
    worker.routes["/v1/messages"] = messages
    return worker


async def _json(data: dict, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


async def fleet_of(start_fleet, aiohttp_server, *workers: tuple[str, FakeWorker], **options):
    specs = []
    for name, worker in workers:
        server = await aiohttp_server(worker.app())
        specs.append(WorkerSpec(name, kind=worker.kind, url=str(server.make_url("")).rstrip("/")))
    return await start_fleet(*specs, **options)


def events(raw: bytes) -> list[tuple[str, dict]]:
    assert raw.endswith(b"\n\n")
    out = []
    for block in raw.split(b"\n\n")[:-1]:
        name, data = block.split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: "), block
        out.append((name[7:].decode(), orjson.loads(data[6:])))
    return out


async def test_an_ollama_that_serves_messages_gets_the_clients_bytes_and_its_stream_passes_unchanged(
        start_fleet, aiohttp_server):
    worker = native_ollama("0.14.2")
    fleet = await fleet_of(start_fleet, aiohttp_server, ("new", worker))
    sent = orjson.dumps({**ASK, "stream": True, "metadata": {"user_id": "u"}})
    with capture_logs() as logs:
        async with fleet.http.post(fleet.url + "/v1/messages", data=sent) as resp:
            assert resp.status == 200 and resp.content_type == "text/event-stream"
            assert await resp.read() == SSE
        async with fleet.post("/v1/messages", ASK) as resp:
            assert resp.status == 200 and await resp.json() == WHOLE
    assert worker.got[0] == sent and worker.hits["/v1/chat/completions"] == 0
    done = [e for e in logs if e["event"] == "request.done"]
    assert [(e["endpoint"], e["outcome"], e["tokens"]) for e in done] == [("/v1/messages", "ok", 7),
                                                                         ("/v1/messages", "ok", 5)]


async def test_a_key_ollama_would_read_as_another_field_is_refused_before_any_worker(start_fleet, aiohttp_server):
    worker = native_ollama("0.14.2")
    fleet = await fleet_of(start_fleet, aiohttp_server, ("new", worker))
    for sneaky in ({"Max_Tokens": 100000}, {"messages": [{"role": "user", "Content": "x", "content": "hi"}]}):
        async with fleet.post("/v1/messages", {**ASK, **sneaky}) as resp:
            body = await resp.json()
        assert resp.status == 400 and body["error"]["type"] == "invalid_request_error"
        assert "would be read by Ollama as" in body["error"]["message"]
    assert worker.hits["/v1/messages"] == 0


async def test_a_native_stream_that_stops_before_message_stop_ends_with_one_error_event(start_fleet, aiohttp_server):
    short = SSE[:SSE.index(b"event: message_delta")]
    fleet = await fleet_of(start_fleet, aiohttp_server, ("new", native_ollama("0.14.0", short)))
    with capture_logs() as logs:
        async with fleet.post("/v1/messages", {**ASK, "stream": True}) as resp:
            got = events(await resp.read())
    assert [name for name, _ in got] == [name for name, _ in NATIVE[:4]] + ["error"]
    assert got[-1][1]["error"]["type"] == "api_error" and "ended the stream early" in got[-1][1]["error"]["message"]
    assert [e["outcome"] for e in logs if e["event"] == "request.done"] == ["cut"]


async def test_older_and_unknown_ollama_versions_are_translated(start_fleet):
    for version in ("0.13.9", "0.14.0-rc1", "0.0.0"):
        fleet = await start_fleet(WorkerSpec("old", sim_options={"version": version}))
        async with fleet.post("/v1/messages", {**ASK, "max_tokens": 2}) as resp:
            answer = await resp.json()
        assert resp.status == 200 and answer["stop_reason"] == "max_tokens", version
        assert fleet.workers["old"].stats.completed == 1


async def test_a_translated_stream_cut_by_the_worker_ends_with_one_error_event(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    fleet.workers["gpu0"].set_mode("drop")
    with capture_logs() as logs:
        async with fleet.post("/v1/messages", {**ASK, "stream": True}) as resp:
            got = events(await resp.read())
    assert got[0][0] == "message_start" and got[2][1]["delta"]["text"], "the tokens before the cut reached the client"
    assert [name for name, _ in got].count("error") == 1 and got[-1][0] == "error"
    assert "failed mid-stream" in got[-1][1]["error"]["message"] and "message_stop" not in [n for n, _ in got]
    assert [e["outcome"] for e in logs if e["event"] == "request.done"] == ["cut"]


async def test_a_llama_server_refusal_comes_back_anthropic_shaped(start_fleet, aiohttp_server):
    worker = FakeWorker("llamacpp")
    refusal = {"error": {"code": 400, "message": "the request exceeds the available context size",
                         "type": "exceed_context_size_error"}}
    worker.routes["/v1/messages"] = lambda request: _json(refusal, 400)
    fleet = await fleet_of(start_fleet, aiohttp_server, ("llama0", worker))
    async with fleet.post("/v1/messages", ASK) as resp:
        assert resp.status == 400 and await resp.json() == {"type": "error", "error": {
            "type": "invalid_request_error", "message": "the request exceeds the available context size"}}
    assert worker.hits["/v1/messages"] == 1 and worker.hits["/v1/chat/completions"] == 0


TOOL_STREAM = b"".join(b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in (
    {"choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "they want weather"}}]},
    {"choices": [{"index": 0, "delta": {"content": "Let me look."}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                         "function": {"name": "get_weather", "arguments": ""}}]}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                                                         "function": {"name": "get_time", "arguments": "{}"}}]}}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 9, "total_tokens": 20}},
)) + b"data: [DONE]\n\n"
TOOL_WHOLE = {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
    "role": "assistant", "content": "Let me look.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}}],
    "usage": {"prompt_tokens": 11, "completion_tokens": 9}}
TOOLS = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
         {"name": "get_time", "description": "now"}]


async def test_tool_calls_split_across_chunks_reach_the_sdk_whole(start_fleet, aiohttp_server):
    worker = FakeWorker("openai")
    worker.got = []

    async def chat(request: web.Request) -> web.StreamResponse:
        worker.got.append(orjson.loads(await request.read()))
        return await (dribble(TOOL_STREAM)(request) if worker.got[-1].get("stream") else _json(TOOL_WHOLE))

    worker.routes["/v1/chat/completions"] = chat
    fleet = await fleet_of(start_fleet, aiohttp_server, ("vllm", worker))
    client = anthropic.AsyncAnthropic(base_url=fleet.url, api_key="unused", max_retries=0)
    async with client.messages.stream(model=MODEL, max_tokens=64, system="be brief", tools=TOOLS,
                                      tool_choice={"type": "tool", "name": "get_weather"},
                                      messages=[{"role": "user", "content": "weather in Paris?"}]) as stream:
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert final.content[0].thinking == "they want weather" and final.content[1].text == "Let me look."
    assert (final.content[2].id, final.content[2].name, final.content[2].input) == (
        "call_1", "get_weather", {"city": "Paris"})
    assert (final.content[3].name, final.content[3].input) == ("get_time", {})
    assert final.stop_reason == "tool_use" and (final.usage.input_tokens, final.usage.output_tokens) == (11, 9)
    asked = worker.got[0]
    assert asked["messages"] == [{"role": "system", "content": "be brief"},
                                 {"role": "user", "content": "weather in Paris?"}]
    assert asked["tools"][0]["function"] == {"name": "get_weather", "parameters": TOOLS[0]["input_schema"]}
    assert asked["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert asked["max_tokens"] == 64 and asked["stream_options"] == {"include_usage": True}
    whole = await client.messages.create(model=MODEL, max_tokens=64, tools=TOOLS,
                                         messages=[{"role": "user", "content": "weather in Paris?"}])
    assert [b.type for b in whole.content] == ["text", "tool_use"] and whole.content[1].input == {"city": "Paris"}
    assert whole.stop_reason == "tool_use" and "stream" not in worker.got[1]


async def test_count_tokens_asks_a_llama_server_that_holds_the_model_and_estimates_when_it_cannot(
        start_fleet, aiohttp_server):
    worker = FakeWorker("llamacpp")
    worker.routes["/v1/messages/count_tokens"] = lambda request: _json({"input_tokens": 42})
    fleet = await fleet_of(start_fleet, aiohttp_server, ("llama0", worker))
    with capture_logs() as logs:
        async with fleet.post("/v1/messages/count_tokens", {"model": MODEL, "messages": ASK["messages"]}) as resp:
            assert resp.status == 200 and await resp.json() == {"input_tokens": 42}
        worker.routes["/v1/messages/count_tokens"] = lambda request: _json({"error": {"message": "boom"}}, 500)
        async with fleet.post("/v1/messages/count_tokens", {"model": MODEL, "messages": ASK["messages"]}) as resp:
            assert resp.status == 200 and await resp.json() == {"input_tokens": 1}, "(4 + 2) // 4: Ollama's estimate"
    done = [e for e in logs if e["event"] == "request.done"]
    assert [(e["worker"], e["reason"], e["outcome"]) for e in done] == [("llama0", "tokenized", "ok"),
                                                                        (None, "estimate", "ok")]
    assert len(done[1]["failed_attempts"]) == 1 and "llama0: " in done[1]["failed_attempts"][0]
    assert "answered 500" in done[1]["failed_attempts"][0]
    assert worker.hits["/v1/messages"] == worker.hits["/v1/chat/completions"] == 0, "counting generates nothing"
    assert fleet.gateway.inflight.service_s(MODEL) is None


async def test_claude_codes_x_api_key_is_a_client_key(start_fleet):
    key = "claude-key-0123456789abcdef"
    clients = f'[[clients]]\nname = "claude"\nkey_sha256 = "{hash_key(key)}"\n'
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra=clients)
    for headers, status in (({"x-api-key": key}, 200), ({"Authorization": f"Bearer {key}"}, 200),
                            ({}, 401), ({"x-api-key": "wrong-key-0123456789abcdef"}, 401)):
        async with fleet.post("/v1/messages", {**ASK, "max_tokens": 2}, headers=headers) as resp:
            body = await resp.json()
        assert resp.status == status, headers
        assert body["type"] == "message" if status == 200 else body["error"]["type"] == "authentication_error"


async def test_a_browser_preflight_may_send_the_anthropic_sdks_headers(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    wanted = "x-api-key,anthropic-version,anthropic-beta,anthropic-dangerous-direct-browser-access,content-type"
    async with fleet.http.options(fleet.url + "/v1/messages", headers={
            "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": wanted}) as resp:
        assert resp.status == 204
        allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert set(wanted.split(",")) <= allowed


CHAT_WHOLE = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi"}}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
NO_ROUTE = {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}


async def test_a_llama_server_without_the_messages_route_is_translated_for_from_then_on(start_fleet, aiohttp_server):
    # llama-server builds before late 2025 have no /v1/messages: its router answers 404 "File Not
    # Found". Nothing has reached the client yet, so the same request goes to its chat endpoint,
    # and the worker's later requests are translated at once.
    worker = FakeWorker("llamacpp")
    worker.routes["/v1/messages"] = lambda request: _json(NO_ROUTE, 404)
    worker.routes["/v1/chat/completions"] = lambda request: _json(CHAT_WHOLE)
    fleet = await fleet_of(start_fleet, aiohttp_server, ("old-llama", worker))
    client = anthropic.AsyncAnthropic(base_url=fleet.url, api_key="unused", max_retries=0)
    for _ in range(3):
        message = await client.messages.create(**ASK)
        assert message.content[0].text == "Hi" and message.stop_reason == "end_turn"
    assert worker.hits["/v1/messages"] == 1 and worker.hits["/v1/chat/completions"] == 3
    assert fleet.gateway.metrics.failovers.labels(reason="no_route")._value.get() == 1


async def test_a_model_the_native_worker_does_not_know_is_the_clients_404_not_a_missing_route(
        start_fleet, aiohttp_server):
    worker = native_ollama("0.14.2")
    unknown = {"type": "error", "error": {"type": "not_found_error", "message": "model 'x' not found"}}
    worker.routes["/v1/messages"] = lambda request: _json(unknown, 404)
    fleet = await fleet_of(start_fleet, aiohttp_server, ("gpu0", worker))
    async with fleet.post("/v1/messages", ASK) as resp:
        assert resp.status == 404 and (await resp.json())["error"]["type"] == "not_found_error"
    assert worker.hits["/v1/chat/completions"] == 0
