"""DNS rebinding: a web page on an attacker's domain re-points its name to 127.0.0.1 and drives a
gateway bound to loopback from the visitor's browser. Bound to loopback, the gateway answers only
requests whose Host names this machine, as Ollama does; everything else gets a 403 in the front
API's shape, naming no one. Bound elsewhere there is no check, and BEACON_ALLOWED_HOSTS adds names."""

from __future__ import annotations

import socket

from tests.conftest import WorkerSpec

LOCAL = ["localhost", "localhost:11434", "127.0.0.1:11434", "127.1.2.3", "[::1]:11434", "[::1]", "::1",
         "app.localhost", "printer.local:80", "db.internal", "10.1.2.3", "172.16.0.1", "192.168.1.20:11434",
         "[fd00::1]:8080", "0.0.0.0:11434", "[::]", "LOCALHOST", "localhost.", socket.gethostname()]
FOREIGN = ["attacker.example", "attacker.example:11434", "localhost.attacker.example", "8.8.8.8",
           "[2001:db8::1]:11434", "169.254.169.254", "100.64.0.1", "127.0.0.1.nip.io", "local", "x" * 4000]


async def status_of(fleet, method: str, path: str, host: str) -> tuple[int, dict]:
    async with fleet.http.request(method, fleet.url + path, headers={"Host": host}) as resp:
        body = await resp.json(content_type=None) if resp.status != 200 or path != "/" else {}
        return resp.status, body


async def test_requests_naming_another_host_get_403_in_the_front_apis_shape(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"))  # listens on the default 127.0.0.1:11434
    for host in LOCAL:
        assert (await status_of(fleet, "GET", "/api/tags", host))[0] == 200, host
    messages = set()
    for host in FOREIGN:
        status, body = await status_of(fleet, "GET", "/api/tags", host)
        assert status == 403, host
        messages.add(body["error"])
    assert len(messages) == 1 and "loopback" in messages.pop(), "one message, echoing no Host"
    status, body = await status_of(fleet, "GET", "/v1/models", "attacker.example")
    assert status == 403 and body["error"]["type"] == "permission_error"
    for path in ("/", "/health", "/status", "/metrics"):
        assert (await status_of(fleet, "GET", path, "attacker.example"))[0] == 403, path
    async with fleet.post("/api/generate", {"model": "llama3.2:1b", "prompt": "x", "stream": False},
                          headers={"Host": "attacker.example"}) as resp:
        assert resp.status == 403
    assert "/api/generate" not in fleet.workers["gpu0"].stats.requests, "a refused request reaches no worker"
    assert (await status_of(fleet, "GET", "/health/live", "attacker.example"))[0] == 200, "liveness answers any Host"
    async with fleet.post("/api/generate", {"model": "llama3.2:1b", "prompt": "x", "stream": False}) as resp:
        assert resp.status == 200, "the gateway keeps serving local clients"


async def test_bound_to_every_interface_there_is_no_host_check(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), settings={"listen": "0.0.0.0:11434"})
    assert (await status_of(fleet, "GET", "/api/tags", "gateway.example.com"))[0] == 200


async def test_allowed_hosts_adds_names_and_a_star_turns_the_check_off(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), settings={"allowed_hosts": "gw.example.com, *.corp.example"})
    for host in ("gw.example.com", "GW.example.com:443", "a.corp.example", "b.a.corp.example", "localhost"):
        assert (await status_of(fleet, "GET", "/api/tags", host))[0] == 200, host
    for host in ("corp.example", "xcorp.example", "gw.example.com.attacker.example"):
        assert (await status_of(fleet, "GET", "/api/tags", host))[0] == 403, host
    fleet = await start_fleet(WorkerSpec("gpu1"), settings={"allowed_hosts": "*"})
    assert (await status_of(fleet, "GET", "/api/tags", "attacker.example"))[0] == 200
