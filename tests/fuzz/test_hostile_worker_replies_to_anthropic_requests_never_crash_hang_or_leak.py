"""Hostile worker replies to /v1/messages, on each path the Anthropic front takes: translated from chat
completions (an Ollama before 0.14, an OpenAI-compatible worker) and passed through (an Ollama from
0.14, llama-server). A worker that answers garbage, cuts its stream, lies about its framing or hangs.

For each example: no 500, every error Anthropic-shaped, every stream the client gets ends with
message_stop or one error event (and a translated one is named events of JSON data throughout), a
whole translated answer is one message, nothing leaks, and the gateway serves the next request.
"""

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import WorkerSpec
from tests.fuzz.conftest import EXAMPLES, FAST_FAILURE, FUZZ, MODEL, Baseline, HostileWorker, Script, call
from tests.fuzz.test_hostile_worker_replies_never_crash_hang_or_leak import SCRIPTS, SSE_CHUNK, SSE_DONE

ASK = {"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "x"}]}
NATIVE_SSE = (b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":1}}}\n\n',
              b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":1}}\n\n',
              b'event: message_stop\ndata: {"type":"message_stop"}\n\n', b'event: error\ndata: {"error":"x"}\n\n',
              b'data: {"type":"message_stop"}\n\n', b"event: message_stop\n\n")
ANTHROPIC_SCRIPTS = SCRIPTS | st.builds(Script, status=st.just(200), content_type=st.just("text/event-stream"),
                                        pieces=st.lists(st.sampled_from(NATIVE_SSE + (SSE_CHUNK, SSE_DONE)),
                                                        max_size=5),
                                        end=st.sampled_from(["close", "abort"]))
FEWER = settings(FUZZ, max_examples=max(10, EXAMPLES // 3))  # four paths: a third of the examples each
# (kind, version the worker reports): the first two are translated, the last two passed through
PATHS = [("ollama", "0.12.6"), ("openai", None), ("ollama", "0.14.2"), ("llamacpp", None)]
GOOD = Script(200, "application/json", [b'{"choices":[{"message":{"role":"assistant","content":"hi"},'
                                        b'"finish_reason":"stop"}],"usage":{"completion_tokens":1}}'])
NATIVE_GOOD = Script(200, "application/json", [b'{"type":"message","content":[],"usage":{"output_tokens":1}}'])


class VersionedWorker(HostileWorker):
    def __init__(self, kind: str, version: str | None) -> None:
        super().__init__(kind)
        self.version = version

    def probe_answer(self, method: str, path: str) -> dict | None:
        if path == "/api/version" and self.version:
            return {"version": self.version}
        return super().probe_answer(method, path)


@pytest.fixture
async def anthropic_hostile(start_fleet, aiohttp_server):
    started: dict = {}

    async def start(kind: str, version: str | None):
        if (kind, version) not in started:
            worker = VersionedWorker(kind, version)
            server = await aiohttp_server(worker.app())
            url = str(server.make_url("")).rstrip("/")
            fleet = await start_fleet(WorkerSpec("evil", kind=kind, url=url), config_extra=FAST_FAILURE)
            assert fleet.gateway.holder.current.workers["evil"].up
            started[kind, version] = fleet, worker
        return started[kind, version]

    return start


def judge(reply, translated: bool) -> None:
    assert reply.status != 500, reply.body[:300]
    if reply.status >= 400:
        assert reply.content_type == "application/json", reply
        error = json.loads(reply.body)
        assert error["type"] == "error" and error["error"]["type"] and error["error"]["message"].strip(), reply.body
        return
    if reply.content_type == "text/event-stream":
        events = reply.body.replace(b"\r\n", b"\n").split(b"\n\n")
        assert events[-1] == b"", f"the stream ends between events: {reply.body[-300:]!r}"
        last = events[-2]
        assert b"message_stop" in last or last.startswith(b"event: error"), reply.body[-300:]
        assert sum(e.startswith(b"event: error") for e in events) <= 1 or not translated, reply.body[-600:]
        if translated:
            for event in events[:-1]:
                name, data = event.split(b"\n")
                assert name.startswith(b"event: ") and json.loads(data[6:])["type"] == name[7:].decode()
    elif translated:
        assert json.loads(reply.body)["type"] == "message", reply.body[:300]


async def served_after(fleet, worker, native: bool) -> None:
    worker.script = NATIVE_GOOD if native else GOOD
    reply = await call(fleet.url, "POST", "/v1/messages", json.dumps(ASK).encode(),
                       {"Content-Type": "application/json"})
    assert reply.status == 200 and json.loads(reply.body)["type"] == "message", reply


@pytest.mark.parametrize(("kind", "version"), PATHS)
@FEWER
@given(stream=st.booleans(), script=ANTHROPIC_SCRIPTS)
@example(stream=True, script=Script(200, "text/event-stream", [SSE_CHUNK], "close"))
@example(stream=True, script=Script(200, "text/event-stream", [NATIVE_SSE[0]], "chunked", end="abort"))
@example(stream=True, script=Script(200, "text/event-stream", [b'data: {"choices":[{"delta":{"tool_calls":'
                                                                b'[{"index":0,"function":{"arguments":5}}]}}]}\n\n']))
@example(stream=False, script=Script(400, "application/json", [b'{"error":{"message":"no","type":"x"}}']))
@example(stream=False, script=Script(200, "application/json", [b'{"choices":[{"message":{"tool_calls":[1]}}]}']))
@example(stream=False, script=Script(201, "application/x-ndjson", []))  # a 2xx but 200 is still translated
@example(stream=False, script=Script(200, "text/event-stream", [NATIVE_SSE[2], SSE_CHUNK]))  # on after the end
async def test_hostile_replies_to_messages(anthropic_hostile, kind, version, stream, script):
    fleet, worker = await anthropic_hostile(kind, version)
    native = kind == "llamacpp" or version == "0.14.2"
    await served_after(fleet, worker, native)
    base = Baseline(fleet)
    worker.script = script
    reply = await call(fleet.url, "POST", "/v1/messages", json.dumps({**ASK, "stream": stream}).encode(),
                       {"Content-Type": "application/json"})
    judge(reply, translated=not native)
    if reply.status in (502, 504):
        assert "evil" in reply.body.decode(), reply.body[:300]
    await base.settled(f"/v1/messages against {script}")
    await served_after(fleet, worker, native)


@FEWER
@given(script=SCRIPTS)
async def test_hostile_count_answers_fall_back_to_the_estimate(anthropic_hostile, script):
    fleet, worker = await anthropic_hostile("llamacpp", None)
    base = Baseline(fleet)
    worker.script = script
    reply = await call(fleet.url, "POST", "/v1/messages/count_tokens",
                       json.dumps({"model": MODEL, "messages": ASK["messages"]}).encode(),
                       {"Content-Type": "application/json"})
    assert reply.status == 200 and isinstance(json.loads(reply.body)["input_tokens"], int), reply
    await base.settled(f"count_tokens against {script}")
