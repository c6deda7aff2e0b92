"""With [[clients]] keys or a metrics/admin token configured, /health and /status show strangers
and client keys only whether the gateway is ready (the same 200 / 503, which is all a readiness
probe needs), never worker names, addresses, errors or models; the metrics or admin token reads
the full report, and `beacon-gateway status` passes it. An open install shows everything as before."""

from __future__ import annotations

import asyncio

from gateway.access import hash_key
from gateway.status import print_status
from tests.conftest import WorkerSpec

KEY = "app-key-0123456789abcdef"
CLIENTS = f'[[clients]]\nname = "app"\nkey_sha256 = "{hash_key(KEY)}"\nmodels = ["llama3.2:1b"]\n'
SETTINGS = {"metrics_token": "scrape-token"}
HIDDEN = ("gpu0", "127.0.0.1:", "qwen2:0.5b", "llama3.2:1b")  # a worker's name, address, models


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def read(fleet, path: str, headers: dict | None = None) -> tuple[int, str, dict]:
    async with fleet.get(path, headers=headers or {}) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


async def test_strangers_and_client_keys_read_only_whether_the_gateway_is_ready(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", models="llama3.2:1b=1.3GiB,qwen2:0.5b=0.4GiB"),
                              config_extra=CLIENTS + "[health]\nunhealthy_threshold = 1\n", settings=SETTINGS,
                              admin_token="admin-token")
    async with fleet.post("/admin/workers/gpu0/warm", {"model": "qwen2:0.5b"}, headers=bearer("admin-token")) as resp:
        assert resp.status == 200  # resident now: a model the app's key may neither use nor list
    for path in ("/health", "/status"):
        status, text, headers = await read(fleet, path)
        assert status == 200 and headers["Cache-Control"] == "no-store"
        assert not [word for word in HIDDEN if word in text], f"{path} shows the fleet to a stranger"
    status, text, _ = await read(fleet, "/health")
    assert text == '{"status": "ok"}'
    for token in ("scrape-token", "admin-token"):
        status, text, _ = await read(fleet, "/health", bearer(token))
        assert status == 200 and '"gpu0"' in text and "qwen2:0.5b" in text and fleet.worker_urls["gpu0"] in text
        status, page, _ = await read(fleet, "/status", bearer(token))
        assert 'data-worker="gpu0"' in page
    for wrong in (KEY, "not-a-token"):  # a client key is not an operator's token
        status, text, headers = await read(fleet, "/health", bearer(wrong))
        assert status == 401 and "metrics or admin token" in text and wrong not in text
        assert headers["WWW-Authenticate"].startswith("Bearer")
    await fleet.stop_worker("gpu0")
    await fleet.probe()
    status, text, _ = await read(fleet, "/health")
    assert status == 503 and text == '{"status": "unavailable"}', "readiness probes still see the fleet go"
    status, page, _ = await read(fleet, "/status")
    assert status == 200 and "unavailable" in page and "gpu0" not in page and "cannot connect" not in page
    async with fleet.get("/health/live") as resp:
        assert resp.status == 200 and await resp.json() == {"status": "alive"}


async def test_client_keys_alone_hide_the_fleet_and_no_key_opens_it(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra=CLIENTS)
    status, text, _ = await read(fleet, "/health")
    assert status == 200 and text == '{"status": "ok"}'
    status, text, _ = await read(fleet, "/health", bearer(KEY))
    assert status == 401 and "neither BEACON_METRICS_TOKEN nor BEACON_ADMIN_TOKEN is set" in text


async def test_an_open_install_shows_the_whole_report_as_before(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    status, text, _ = await read(fleet, "/health")
    assert status == 200 and '"workers"' in text and "gpu0" in text
    status, page, _ = await read(fleet, "/status")
    assert 'data-worker="gpu0"' in page and '<div id="unlock" class="unlock" hidden>' in page


async def test_the_status_command_shows_workers_only_with_a_token(start_fleet, capsys, monkeypatch):
    monkeypatch.delenv("BEACON_METRICS_TOKEN", raising=False)
    monkeypatch.delenv("BEACON_ADMIN_TOKEN", raising=False)
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra=CLIENTS, settings=SETTINGS)
    capsys.readouterr()  # the start-up log lines
    assert await asyncio.to_thread(print_status, fleet.url) == 0  # urllib blocks: off this test's loop
    out = capsys.readouterr().out
    assert out.startswith("gateway ok\n") and "workers hidden" in out and "gpu0" not in out
    assert await asyncio.to_thread(print_status, fleet.url, "scrape-token") == 0
    assert "gpu0" in capsys.readouterr().out
    monkeypatch.setenv("BEACON_METRICS_TOKEN", "scrape-token")
    assert await asyncio.to_thread(print_status, fleet.url) == 0
    assert "gpu0" in capsys.readouterr().out, "the token comes from the environment too"
    assert await asyncio.to_thread(print_status, fleet.url, "wrong") == 1
    assert "metrics or admin token" in capsys.readouterr().err


async def test_a_bearer_that_is_no_token_is_a_401_and_other_schemes_read_the_public_form(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra=CLIENTS, settings=SETTINGS)
    host, port = fleet.url.removeprefix("http://").split(":")
    for value, status in ((b"Bearer \xff\xfe", b"401"), (b"Bearer scrape-token\x80", b"401"),
                          (b"bearer nope", b"401"), (b"\xc3\x28 scrape-token", b"200"),
                          (b"Basic c2NyYXBlLXRva2Vu", b"200"), (b"scrape-token", b"200")):  # Basic: for a proxy
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: " + value
                     + b"\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 " + status) and b"gpu0" not in answer, value
    assert (await read(fleet, "/health", bearer("scrape-token")))[0] == 200, "and the gateway keeps serving"
