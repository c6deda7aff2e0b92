"""The fuzz tier's harness: hypothesis settings, a bounded raw HTTP client, the properties every
answer must keep (no 500, front-API-shaped errors, no hang, no leaked task or connection), and a
hostile fake worker whose reply each example scripts byte by byte.

One fleet serves all the examples of a test (fixtures are per test, examples are many); each
example is checked on its own, so hypothesis shrinks a failure to one minimal input.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, settings

from tests.conftest import WorkerSpec

EXAMPLES = int(os.environ.get("BEACON_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])
TOKEN = "fuzz-admin-token"
MODEL = "llama3.2:1b"
BOUND_S = 10.0  # no answer may take longer: a hang is a failure, not a slow test
BODY_LIMIT_MIB = 0.25
FAST_FAILURE = f"""
[server]
max_body_mib = {BODY_LIMIT_MIB}
body_timeout_s = 1
[failover]
connect_timeout_s = 1
first_byte_timeout_s = 1
stream_idle_timeout_s = 0.5
retry_budget_min_per_s = 1000
[routing]
default_num_predict = 8  # a whole answer is allowed 8 tokens at [cpu] tokens_per_s: 0.4 s
[outlier]
consecutive_failures = 1000000
[health]
unhealthy_threshold = 1000000
"""


@dataclass
class Reply:
    status: int
    content_type: str | None
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "GET"


async def call(url: str, method: str, path: str, body: bytes | None = None,
               headers: dict[str, str] | None = None) -> Reply:
    """One request on a fresh connection (nothing pooled outlives it), bounded by BOUND_S."""
    async def go() -> Reply:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                         auto_decompress=False, skip_auto_headers=("Content-Type",)) as http:
            async with http.request(method, url + path, data=body, headers=headers or {}) as resp:
                data = await resp.read()
                return Reply(resp.status, resp.content_type if "Content-Type" in resp.headers else None, data,
                             dict(resp.headers), method)

    return await asyncio.wait_for(go(), BOUND_S)


async def raw_call(url: str, raw: bytes) -> bytes:
    """Raw bytes on a socket (lying headers, odd methods): whatever comes back until the server closes."""
    host, port = url.removeprefix("http://").split(":")

    async def go() -> bytes:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(raw)
            await writer.drain()
            return await reader.read(1 << 20)  # the head and the start of the body is all we judge
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    return await asyncio.wait_for(go(), BOUND_S)


# Ollama answers a pull, push or create that failed with a 500, and so does the gateway when every worker
# failed it, saying so; any other 500 is a fault of our code.
_FAILED_ON_EVERY_WORKER = re.compile(r"(pull|push|create) failed on (\d+) of \2 workers: ")


def _failed_on_every_worker(path: str, reply: Reply) -> bool:
    if path not in ("/api/pull", "/api/push", "/api/create") or reply.content_type != "application/json":
        return False
    error = json.loads(reply.body).get("error")
    return isinstance(error, str) and _FAILED_ON_EVERY_WORKER.match(error) is not None


def assert_front_shape(path: str, reply: Reply) -> None:
    """No 500 from our code; every error is the front API's shape with a non-empty message."""
    assert reply.status != 500 or _failed_on_every_worker(path, reply), f"500 on {path}: {reply.body[:300]!r}"
    if reply.status < 400 or reply.method == "HEAD":  # a HEAD answer has no body to judge
        return
    assert reply.content_type == "application/json", f"{reply.status} on {path} as {reply.content_type}: " \
                                                     f"{reply.body[:300]!r}"
    error = json.loads(reply.body)["error"]
    if path.startswith("/v1/"):
        assert isinstance(error, dict) and set(error) >= {"message", "type", "code"}, reply.body[:300]
        assert isinstance(error["message"], str) and error["message"].strip(), reply.body[:300]
    else:
        assert isinstance(error, str) and error.strip(), reply.body[:300]


def drop_idle(connector: aiohttp.BaseConnector) -> None:
    """Close the pool's idle keep-alive connections: each holds a server task on the worker that
    is no leak; what stays acquired is."""
    for conns in connector._conns.values():
        for proto, _ in conns:
            proto.close()
    connector._conns.clear()


class Baseline:
    """Tasks on the loop and connections the gateway's pool holds, before the hostile input."""

    def __init__(self, fleet) -> None:
        self.fleet = fleet
        drop_idle(self.connector)
        self.tasks = len(asyncio.all_tasks())
        self.acquired = len(self.connector._acquired)

    @property
    def connector(self) -> aiohttp.BaseConnector:
        return self.fleet.gateway.session.connector

    async def settled(self, what: str) -> None:
        """Give closing connections a moment; then nothing may be left over."""
        tasks = acquired = 0
        for _ in range(300):
            drop_idle(self.connector)
            tasks, acquired = len(asyncio.all_tasks()), len(self.connector._acquired)
            if tasks <= self.tasks and acquired <= self.acquired:
                return
            await asyncio.sleep(0.01)
        extra = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        raise AssertionError(f"after {what}: {tasks} tasks (baseline {self.tasks}), {acquired} acquired "
                             f"connections (baseline {self.acquired}); tasks: {[t.get_coro() for t in extra]}")


GOOD = {"model": MODEL, "prompt": "x", "stream": False, "options": {"num_predict": 2}}


async def still_serves(fleet) -> None:
    reply = await call(fleet.url, "POST", "/api/generate", json.dumps(GOOD).encode(),
                       {"Content-Type": "application/json"})
    assert reply.status == 200 and json.loads(reply.body)["done"] is True, reply


@pytest.fixture
async def fleet(start_fleet):
    """Two simulated Ollama workers (one Ollama, one OpenAI-kind) behind a gateway that fails fast."""
    fleet = await start_fleet(WorkerSpec("gpu0", f"{MODEL}=1.3GiB,all-minilm=0.05GiB"),
                              WorkerSpec("oai0", f"{MODEL}=1.3GiB,all-minilm=0.05GiB", kind="openai"),
                              config_extra=FAST_FAILURE, admin_token=TOKEN)
    await still_serves(fleet)  # pools and keep-alive connections warmed before any baseline is taken
    return fleet


# -- the hostile worker ----------------------------------------------------------------------------


@dataclass
class Script:
    """One scripted answer, written as raw bytes: status line, headers and body framing are all the
    example's choice. `pieces` are written one by one (pause_s apart); `end` says how it stops."""

    status: int = 200
    content_type: str | None = "application/json"
    pieces: list[bytes] = field(default_factory=lambda: [b"{}"])
    framing: str = "length"  # length | short_length | long_length | chunked | bad_chunked | close
    gzip_claimed: bool = False
    real_gzip: bool = False
    pause_s: float = 0.0
    end: str = "close"  # close | hang (until the gateway hangs up, at most HANG_S) | abort

    def head(self, body_len: int) -> bytes:
        lines = [f"HTTP/1.1 {self.status} X"]
        if self.content_type is not None:
            lines.append(f"Content-Type: {self.content_type}")
        if self.gzip_claimed or self.real_gzip:
            lines.append("Content-Encoding: gzip")
        if self.framing == "length":
            lines.append(f"Content-Length: {body_len}")
        elif self.framing == "short_length":
            lines.append(f"Content-Length: {max(0, body_len - 3)}")
        elif self.framing == "long_length":
            lines.append(f"Content-Length: {body_len + 100}")
        elif self.framing in ("chunked", "bad_chunked"):
            lines.append("Transfer-Encoding: chunked")
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def frames(self) -> list[bytes]:
        pieces = [gzip.compress(b"".join(self.pieces))] if self.real_gzip else list(self.pieces)
        if self.framing == "chunked":
            return [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p] + [b"0\r\n\r\n"]
        if self.framing == "bad_chunked":
            return [b"zz\r\n" + p for p in pieces]
        return pieces


HANG_S = 5.0


class HostileWorker:
    """Answers probes like a healthy worker of its kind; answers everything else with `script`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.script = Script()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        probe = self.probe_answer(request.method, request.path)
        if probe is not None:
            return web.json_response(probe)
        await self.play(request)
        raise _Hijacked

    def probe_answer(self, method: str, path: str) -> dict | None:
        tags = {"models": [{"name": MODEL, "model": MODEL, "size": 1_300_000_000}]}
        listing = {"object": "list", "data": [{"id": MODEL, "object": "model"}]}
        answers = {
            "ollama": {"/api/tags": tags, "/api/ps": {"models": [{**tags["models"][0], "size_vram": 1}]},
                       "/api/version": {"version": "0.12.6"}},
            "openai": {"/v1/models": listing},
            "llamacpp": {"/health": {"status": "ok"}, "/v1/models": listing, "/props": {"total_slots": 4},
                         "/slots": []},
        }[self.kind]
        return answers.get(path) if method == "GET" else None

    async def play(self, request: web.Request) -> None:
        script, transport = self.script, request.transport
        frames = script.frames()
        body_len = sum(len(p) for p in ([gzip.compress(b"".join(script.pieces))] if script.real_gzip
                                        else script.pieces))
        transport.write(script.head(body_len))
        for frame in frames:
            if script.pause_s:
                await asyncio.sleep(script.pause_s)
            if transport.is_closing():
                return
            transport.write(frame)
        if script.end == "hang":
            loop = asyncio.get_running_loop()
            until = loop.time() + HANG_S
            while not transport.is_closing() and loop.time() < until:
                await asyncio.sleep(0.02)
        if script.end == "abort":
            transport.abort()
        else:
            transport.close()


class _Hijacked(web.HTTPException):
    """The answer was written on the socket by hand: aiohttp must send nothing more."""

    status_code = 499

    def __init__(self) -> None:
        super().__init__()


@pytest.fixture
async def hostile(start_fleet, aiohttp_server):
    """start(kind) -> (fleet, worker): one hostile worker of that kind behind a fast-failing gateway."""

    async def start(kind: str):
        worker = HostileWorker(kind)
        server = await aiohttp_server(worker.app())  # the test server cancels handlers of closed connections
        url = str(server.make_url("")).rstrip("/")
        fleet = await start_fleet(WorkerSpec("evil", kind=kind, url=url), config_extra=FAST_FAILURE)
        assert fleet.gateway.holder.current.workers["evil"].up, "the hostile worker must pass its probe"
        return fleet, worker

    return start
