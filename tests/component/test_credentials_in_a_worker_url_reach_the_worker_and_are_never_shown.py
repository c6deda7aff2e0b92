"""A worker URL may carry `user:password@` (a worker behind a proxy with Basic auth). The gateway
sends them as that worker's Authorization on every call (probes, requests, model management,
warm-ups) and never shows them: not in /health, /status, /metrics, admin answers or logs. With
api_key_env or forward_client_auth as well, check-config refuses the file instead of the 500
that every request used to get."""

from __future__ import annotations

import base64

import pytest
import structlog
from aiohttp import web

from gateway import cli
from gateway.config import ConfigError, parse_config
from local_workers.sim import SimWorker, build_sim_app, parse_models
from tests.conftest import WorkerSpec

SECRET = "s3cret-Pa55"
BASIC = "Basic " + base64.b64encode(f"ops@example:{SECRET}".encode()).decode()
ADMIN = {"Authorization": "Bearer admin-token"}


@pytest.fixture
async def guarded_worker(aiohttp_server):
    """A simulated worker behind Basic auth, as behind an nginx `auth_basic`: 401 without the
    credentials. Returns (its URL with the credentials in it, the paths it was asked for)."""
    seen: list[str] = []

    @web.middleware
    async def basic_auth(request: web.Request, handler):
        if request.headers.get("Authorization") != BASIC:
            return web.json_response({"error": "unauthorized"}, status=401)
        seen.append(f"{request.method} {request.path}")
        return await handler(request)

    worker = SimWorker(name="gpu0", models=parse_models("llama3.2:1b=1.3GiB"), vram_bytes=24 * 1024**3,
                       tokens_per_s=100_000, load_s_per_gib=0.005)
    app = build_sim_app(worker)
    app.middlewares.append(basic_auth)
    server = await aiohttp_server(app)
    return f"http://ops%40example:{SECRET}@127.0.0.1:{server.port}", seen


async def test_the_credentials_go_to_the_worker_on_every_call_and_nowhere_else(start_fleet, guarded_worker):
    url, seen = guarded_worker
    with structlog.testing.capture_logs() as logs:
        fleet = await start_fleet(WorkerSpec("gpu0", url=url), admin_token="admin-token")
        assert fleet.gateway.holder.current.workers["gpu0"].up, "the probe sent the credentials"
        async with fleet.post("/api/generate", {"model": "llama3.2:1b", "prompt": "x", "stream": False}) as resp:
            assert resp.status == 200 and (await resp.json())["done"] is True
        async with fleet.post("/api/copy", {"source": "llama3.2:1b", "destination": "mine:latest"}) as resp:
            assert resp.status == 200, "model management fans out with the credentials too"
        async with fleet.post("/admin/workers/gpu0/warm", {"model": "llama3.2:1b"}, headers=ADMIN) as resp:
            assert resp.status == 200
        await fleet.gateway.prober.step()  # learns the model's shape from /api/show, with the credentials
        shown = {}
        for path in ("/health", "/status", "/metrics"):
            async with fleet.get(path, headers=ADMIN) as resp:
                shown[path] = await resp.text()
        async with fleet.post("/admin/explain", {"model": "llama3.2:1b"}, headers=ADMIN) as resp:
            shown["explain"] = await resp.text()
    assert {"POST /api/generate", "POST /api/copy", "GET /api/tags", "POST /api/show"} <= set(seen)
    health = (await (await fleet.get("/health", headers=ADMIN)).json())["workers"][0]
    assert health["url"] == url.replace(f"ops%40example:{SECRET}@", "") and health["state"] == "healthy"
    for where, text in [*shown.items(), ("logs", repr(logs))]:
        assert SECRET not in text and "ops%40example" not in text, f"the password shows in {where}"


def test_check_config_refuses_credentials_in_the_url_beside_another_credential(tmp_path, capsys):
    base = f'[[workers]]\nname = "gpu0"\nurl = "http://ops:{SECRET}@10.0.0.5:11434"\nkind = "ollama"\n'
    for extra, named in (('api_key_env = "GPU0_KEY"\n', "api_key_env"), ("forward_client_auth = true\n",
                                                                        "forward_client_auth")):
        with pytest.raises(ConfigError) as refused:
            parse_config((base + extra).encode())
        assert len(refused.value.errors) == 1
        assert refused.value.errors[0].startswith("workers[0].url: carries user:password@ and " + named)
        path = tmp_path / "config.toml"
        path.write_text(base + extra)
        assert cli.main(["check-config", str(path)]) == 2
        err = capsys.readouterr().err
        assert "workers[0].url" in err and SECRET not in err
    config = parse_config(base.encode())
    assert config.workers[0].url == "http://10.0.0.5:11434" and SECRET not in repr(config)


def test_a_url_check_config_refuses_is_quoted_without_its_password():
    with pytest.raises(ConfigError) as refused:
        parse_config(f'[[workers]]\nname = "gpu0"\nurl = "ops:{SECRET}@10.0.0.5:11434"\nkind = "ollama"\n'.encode())
    assert "workers[0].url" in refused.value.errors[0] and SECRET not in str(refused.value)
