"""deploy/haproxy/haproxy.cfg, compose's front door for its two gateway replicas: `haproxy -c`
accepts it, and HAProxy run from it (servers pointed at two fake replicas on 127.0.0.1, checks every
100 ms instead of 2 s) sends requests to ready replicas only, falls back to live ones when none is
ready, streams without buffering, never runs a request twice, and answers in each front API's own
error shape when no replica runs."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Callable

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port

from gateway.errors import error_body
from tests.deploy.conftest import DEPLOY, require_tool

CFG = DEPLOY / "haproxy/haproxy.cfg"
NAMES = ("gateway-a", "gateway-b")


class FakeReplica:
    """A gateway replica as HAProxy sees it: /health 200 or 503 (switchable), /health/live, a
    generate that answers or streams (holding its last line until released), and a chat that
    drops the connection without answering."""

    def __init__(self, name: str) -> None:
        self.name, self.ready, self.served, self.checks = name, True, 0, 0
        self.release = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/health/live", self.live)
        app.router.add_post("/api/generate", self.generate)
        app.router.add_post("/api/chat", self.drop)
        return app

    async def health(self, request: web.Request) -> web.Response:
        self.checks += 1
        return web.json_response({"status": "ok" if self.ready else "unavailable"}, status=200 if self.ready else 503)

    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def generate(self, request: web.Request) -> web.StreamResponse:
        self.served += 1
        if not (await request.json()).get("stream", True):  # Ollama streams unless told not to
            return web.json_response({"replica": self.name, "done": True})
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        await resp.write(b'{"response":"first","done":false}\n')
        await self.release.wait()
        await resp.write(b'{"response":"","done":true}\n')
        return resp

    async def drop(self, request: web.Request) -> web.Response:
        self.served += 1
        await request.read()
        request.transport.close()
        raise asyncio.CancelledError  # aiohttp answers nothing on a closed transport


class Front:
    def __init__(self, url: str, replicas: dict[str, FakeReplica], servers: dict) -> None:
        self.url, self.replicas, self.servers = url, replicas, servers
        self.session = aiohttp.ClientSession()

    async def generate(self, path: str = "/api/generate", **body) -> tuple[int, dict, dict]:
        async with self.session.post(self.url + path, json={"model": "m", "prompt": "x", **body}) as resp:
            return resp.status, dict(resp.headers), orjson.loads(await resp.read())

    async def who(self) -> str:
        status, _, body = await self.generate(stream=False)
        assert status == 200, body
        return body["replica"]

    async def checked_twice(self, *names: str) -> None:
        """Two health checks after a change: the first one's answer has been read by then."""
        start = {n: self.replicas[n].checks for n in names}
        await until(lambda: all(self.replicas[n].checks >= start[n] + 2 for n in names))


async def until(done: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """HAProxy is another process with its own clock: poll, within a bound."""
    async with asyncio.timeout(timeout_s):
        while not done():
            await asyncio.sleep(0.02)


def test_haproxy_accepts_the_config():
    out = subprocess.run([require_tool("haproxy"), "-c", "-f", str(CFG)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    # Outside compose the replica names do not resolve; init-addr none lets HAProxy start anyway.
    warnings = [line for line in (out.stdout + out.stderr).splitlines() if "WARNING" in line]
    assert all("could not resolve address" in line for line in warnings), warnings


def test_haproxy_waits_longer_than_the_gateway_so_the_gateway_says_why_a_request_failed():
    from gateway.config import parse_config

    text = CFG.read_text()
    seconds = {}
    for name, value, unit in re.findall(r"^\s*timeout (client|server)\s+(\d+)(s|m|h)\b", text, re.M):
        seconds[name] = int(value) * {"s": 1, "m": 60, "h": 3600}[unit]
    config = parse_config((DEPLOY / "config.compose.toml").read_bytes())
    silent_s = config.admission.queue_timeout_s + config.failover.max_attempts * max(
        config.server.max_answer_s, config.failover.first_byte_s("cpu"))  # a non-streamed answer comes whole
    assert min(seconds["client"], seconds["server"]) > max(silent_s, config.server.max_stream_s)


def local_config(servers: dict, port: int) -> str:
    text, n = re.subn(r"^(\s*bind) :11434$", rf"\1 127.0.0.1:{port}", CFG.read_text(), flags=re.M)
    assert n == 1
    for name, server in servers.items():
        text, n = re.subn(rf"\b{name}:11434\b", f"127.0.0.1:{server.port}", text)
        assert n == 2  # one server line in each backend
    text, n = re.subn(r"inter 2s fall 2 rise 2", "inter 100ms fall 1 rise 1", text)
    assert n == 2
    return text


@pytest.fixture
async def front(aiohttp_server, tmp_path):
    tool = require_tool("haproxy")
    replicas = {name: FakeReplica(name) for name in NAMES}
    servers = {name: await aiohttp_server(r.app()) for name, r in replicas.items()}
    port = unused_port()
    (tmp_path / "haproxy.cfg").write_text(local_config(servers, port))
    proc = subprocess.Popen([tool, "-db", "-f", str(tmp_path / "haproxy.cfg")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    f = Front(f"http://127.0.0.1:{port}", replicas, servers)
    try:
        await f.checked_twice(*NAMES)  # listening, and both replicas checked
        yield f
    finally:
        for r in replicas.values():
            r.release.set()
        await f.session.close()
        proc.terminate()
        proc.wait(timeout=10)


async def test_requests_spread_over_ready_replicas_and_skip_one_that_is_not_ready(front):
    assert {await front.who() for _ in range(10)} == set(NAMES)
    a = front.replicas["gateway-a"]
    a.ready = False
    await front.checked_twice("gateway-a")
    before = a.served
    assert {await front.who() for _ in range(10)} == {"gateway-b"}
    assert a.served == before
    a.ready = True
    await front.checked_twice("gateway-a")
    assert "gateway-a" in {await front.who() for _ in range(10)}


async def test_with_no_replica_ready_requests_still_reach_the_live_ones(front):
    for r in front.replicas.values():
        r.ready = False
    await front.checked_twice(*NAMES)
    # The replicas' own 503 + Retry-After would say why (no worker up); HAProxy does not answer for them.
    assert {await front.who() for _ in range(10)} == set(NAMES)


async def test_a_stream_is_relayed_as_it_comes_not_when_it_ends(front):
    async with front.session.post(front.url + "/api/generate", json={"model": "m", "prompt": "x"}) as resp:
        assert resp.status == 200
        async with asyncio.timeout(5):
            first = await resp.content.readline()
        assert orjson.loads(first) == {"response": "first", "done": False}
        for r in front.replicas.values():
            r.release.set()
        assert orjson.loads(await resp.content.readline())["done"] is True


async def test_a_replica_that_drops_a_request_gives_a_json_502_and_no_second_run(front):
    async with front.session.post(front.url + "/api/chat", json={"model": "m", "messages": []}) as resp:
        assert resp.status == 502
        assert resp.content_type == "application/json"
        assert orjson.loads(await resp.read()) == {"error": "a gateway replica failed before answering"}
    assert sum(r.served for r in front.replicas.values()) == 1  # a POST that reached a replica is never retried


@pytest.mark.parametrize("path", ["/api/generate", "/v1/chat/completions", "/v1/messages"])
async def test_with_no_replica_running_haproxy_answers_in_the_front_apis_own_shape(front, path):
    for server in front.servers.values():
        await server.close()

    async def answered_by_haproxy() -> bool:
        status, headers, _ = await front.generate(path)
        return status == 503 and headers.get("Retry-After") == "5"

    async with asyncio.timeout(10):
        while not await answered_by_haproxy():
            await asyncio.sleep(0.05)
    status, headers, body = await front.generate(path)
    assert headers["Content-Type"] == "application/json"
    assert body == orjson.loads(error_body(path, 503, "no gateway replica is running"))
