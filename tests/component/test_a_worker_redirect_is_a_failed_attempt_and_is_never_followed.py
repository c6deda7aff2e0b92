"""A worker answering 3xx sends the gateway nowhere: the request path fails over as on a 5xx,
probes fail, fan-out and warm-ups fail naming the worker, and the service the Location points to
(an "internal" one on another loopback port, as cloud metadata would be) gets no request at all."""

import re

import aiohttp
import pytest

from gateway.app import new_session
from tests.component.fake_workers import MODEL, FakeWorker, Internal, redirect
from tests.conftest import WorkerSpec

FAST = "[failover]\nfirst_byte_timeout_s = 2\nconnect_timeout_s = 1\n[health]\nunhealthy_threshold = 1\n"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 3}}
TOKEN = "redirect-test-token"


async def serve(aiohttp_server, app) -> str:
    return str((await aiohttp_server(app)).make_url("")).rstrip("/")


async def internal_and_evil(aiohttp_server, kind="ollama"):
    internal, evil = Internal(), FakeWorker(kind)
    target = await serve(aiohttp_server, internal.app()) + "/latest/meta-data/iam"
    return internal, evil, target, await serve(aiohttp_server, evil.app())


async def failovers(fleet, reason: str) -> float | None:
    async with fleet.get("/metrics") as resp:
        text = await resp.text()
    found = re.search(rf'^beacon_failovers_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else None


@pytest.mark.parametrize(("path", "body"), [
    ("/api/chat", {**CHAT, "stream": False}),
    ("/api/chat", CHAT),
    ("/api/show", {"model": MODEL}),
    ("/v1/chat/completions", {"model": MODEL, "messages": CHAT["messages"]}),
])
async def test_a_redirecting_worker_is_skipped_for_the_next_and_its_location_gets_nothing(
        start_fleet, aiohttp_server, path, body):
    internal, evil, target, evil_url = await internal_and_evil(aiohttp_server)
    evil.routes[path] = redirect(target)
    # evil has the model resident (the sim has it only on disk): the router tries evil first
    fleet = await start_fleet(WorkerSpec("evil", url=evil_url), WorkerSpec("gpu1"), config_extra=FAST)
    before = await failovers(fleet, "redirect")
    async with fleet.post(path, body) as resp:
        await resp.read()
    assert evil.hits[path] == 1
    assert internal.hits == []
    assert resp.status == 200 and resp.headers["X-Beacon-Worker"] == "gpu1"
    assert before == 0  # present at 0 from the start, for rate() alerts
    assert await failovers(fleet, "redirect") == 1


async def test_only_a_redirecting_worker_gives_502_naming_it_and_the_redirect(start_fleet, aiohttp_server):
    internal, evil, target, evil_url = await internal_and_evil(aiohttp_server)
    evil.routes["/api/chat"] = redirect(target, 308)
    evil.routes["/v1/chat/completions"] = redirect(target, 302)
    fleet = await start_fleet(WorkerSpec("evil", url=evil_url), config_extra=FAST)
    async with fleet.post("/api/chat", {**CHAT, "stream": False}) as resp:
        assert resp.status == 502
        message = (await resp.json())["error"]
    assert "evil" in message and "308" in message and "redirect" in message and "127.0.0.1" not in message
    async with fleet.post("/v1/chat/completions", {"model": MODEL, "messages": CHAT["messages"]}) as resp:
        assert resp.status == 502
        error = (await resp.json())["error"]
    assert "evil" in error["message"] and "redirect" in error["message"] and error["code"] == 502
    assert internal.hits == []


@pytest.mark.parametrize(("kind", "path"), [("ollama", "/api/tags"), ("ollama", "/api/version"),
                                            ("llamacpp", "/health"), ("llamacpp", "/props"), ("openai", "/v1/models")])
async def test_a_probe_answered_with_a_redirect_fails_and_is_not_followed(start_fleet, aiohttp_server, kind, path):
    internal, evil, target, evil_url = await internal_and_evil(aiohttp_server, kind)
    evil.routes[path] = redirect(target, 302)
    fleet = await start_fleet(WorkerSpec("evil", url=evil_url, kind=kind), WorkerSpec("gpu1"), config_extra=FAST)
    worker = fleet.gateway.holder.current.worker("evil")
    assert not worker.up and "redirect" in worker.last_error
    assert evil.hits[path] >= 1 and internal.hits == []
    async with fleet.post("/api/chat", CHAT) as resp:  # the gateway keeps serving on the others
        assert resp.status == 200 and resp.headers["X-Beacon-Worker"] == "gpu1"


async def test_fan_out_and_warm_ups_answered_with_a_redirect_fail_naming_the_worker(start_fleet, aiohttp_server):
    internal, evil, target, evil_url = await internal_and_evil(aiohttp_server)
    for path in ("/api/delete", "/api/copy", "/api/pull", "/api/generate"):
        evil.routes[path] = redirect(target)
    fleet = await start_fleet(WorkerSpec("evil", url=evil_url), config_extra=FAST, admin_token=TOKEN)
    calls = [("DELETE", "/api/delete", {"model": MODEL}, 502),
             ("POST", "/api/copy", {"source": MODEL, "destination": "copy:1b"}, 502),
             ("POST", "/api/pull", {"model": MODEL, "stream": False}, 500),  # Ollama's status for a failed pull
             ("POST", "/admin/workers/evil/warm", {"model": MODEL}, 502)]
    for method, path, body, status in calls:
        async with fleet.http.request(method, fleet.url + path, json=body,
                                      headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == status, (path, await resp.text())
            message = (await resp.json())["error"]
        assert "evil" in message and "redirect" in message and "127.0.0.1" not in message, (path, message)
    assert internal.hits == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_the_gateway_session_stops_at_a_redirect_even_for_a_call_that_would_follow_it(aiohttp_server, status):
    """The session's own guard, apart from each call's allow_redirects=False: a call added later that
    forgets that flag still never reaches the Location."""
    internal, evil, target, evil_url = await internal_and_evil(aiohttp_server)
    evil.routes["/anything"] = redirect(target, status)
    async with new_session() as session:
        with pytest.raises(aiohttp.ClientResponseError) as caught:
            async with session.post(evil_url + "/anything", data=b'{"prompt": "secret"}'):
                pass
    assert caught.value.status == status and "127.0.0.1" not in str(caught.value)
    assert evil.hits["/anything"] == 1 and internal.hits == []
