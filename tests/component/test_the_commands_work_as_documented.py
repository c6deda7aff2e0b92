"""The documented commands, run as real processes: check-config, serve, status, the admin commands,
SIGHUP, sim-worker, demo."""

import asyncio
import os
import signal

import aiohttp
import pytest

from local_workers import llamaserver
from tests.component.served_processes import CLI, ROOT, free_port


async def run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*CLI, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, cwd=ROOT)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode(), err.decode()


async def wait_http(url: str, seconds: float = 20.0) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(int(seconds / 0.1)):
            try:
                async with http.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered")


async def test_check_config_exits_0_when_valid_and_2_listing_every_error(tmp_path):
    code, out, _ = await run("check-config", "config.example.toml")
    assert code == 0 and "ok (4 workers" in out
    bad = tmp_path / "bad.toml"
    bad.write_text('[[workers]]\nname = "g"\nurl = "nope"\nkind = "ollama"\ntypo = 1\n')
    code, _, err = await run("check-config", str(bad))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2
    assert any("workers[0].url" in x for x in lines) and any("workers[0].typo: unknown key" in x for x in lines)


@pytest.fixture
async def processes():
    procs = []

    async def start(*args: str, env: dict | None = None):
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
                                                    env={**os.environ, **env} if env else None)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_serve_and_status_in_front_of_a_sim_worker_process(processes, tmp_path):
    worker_port, gateway_port = free_port(), free_port()
    await processes(*CLI, "sim-worker", "--port", str(worker_port), "--name", "gpu0", "--models", "tiny:1b=0.1GiB",
                    "--load-s-per-gib", "0.01", "--tokens-per-s", "5000")
    await wait_http(f"http://127.0.0.1:{worker_port}/")
    config = tmp_path / "config.toml"
    config.write_text(f'[[workers]]\nname = "gpu0"\nurl = "http://127.0.0.1:{worker_port}"\nkind = "ollama"\n'
                      "[health]\ninterval_s = 0.2\n")
    gateway = await processes(*CLI, "serve", "--config", str(config), "--listen", f"127.0.0.1:{gateway_port}")
    url = f"http://127.0.0.1:{gateway_port}"
    await wait_http(url + "/health/live")
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/api/generate", json={"model": "tiny:1b", "prompt": "x", "stream": False}) as r:
            assert r.status == 200 and (await r.json())["done"] is True
    for _ in range(20):  # the next probe shows the model loaded
        code, out, _ = await run("status", "--url", url)
        if "tiny:1b" in out:
            break
    assert code == 0 and "gpu0" in out and "healthy" in out and "tiny:1b" in out
    gateway.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(gateway.wait(), 10) == 0


async def test_serve_refuses_an_invalid_config_with_exit_2(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[[workers]]\n")
    code, _, err = await run("serve", "--config", str(config))
    assert code == 2 and "workers[0].name: required key is missing" in err


async def test_demo_starts_a_fleet_and_stops_on_ctrl_c(processes):
    port = free_port()
    demo = await processes(*CLI, "demo", "--listen", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    await wait_http(url + "/api/tags")
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/api/tags") as r:
            names = {m["name"] for m in (await r.json())["models"]}
        body = {"model": "default", "messages": [{"role": "user", "content": "hi"}], "stream": False,
                "options": {"num_predict": 2}}
        async with http.post(url + "/api/chat", json=body) as r:
            assert r.status == 200 and r.headers["X-Beacon-Worker"] in ("gpu0", "gpu1")
    assert {"llama3.2:1b", "qwen2.5:7b", "llama3.1:8b"} <= names
    if llamaserver.binary() is not None:  # a real llama.cpp worker joins the demo fleet
        assert "tiny-llama:latest" in names
        async with aiohttp.ClientSession() as http:
            body = {"model": "tiny-llama", "prompt": "hello", "stream": False, "options": {"num_predict": 3}}
            async with http.post(url + "/api/generate", json=body) as r:
                assert r.status == 200 and r.headers["X-Beacon-Worker"] == "llama0"
                assert (await r.json())["eval_count"] == 3
    demo.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(demo.wait(), 10) == 0
    output = (await demo.stdout.read()).decode()
    assert "beacon-gateway demo is running" in output and "OLLAMA_HOST=" in output
    assert ("llama0 is a real llama-server" in output) == (llamaserver.binary() is not None)


async def health(url: str) -> dict:
    """The full report: its gateway runs with BEACON_ADMIN_TOKEN=tok, and the token reads it."""
    async with aiohttp.ClientSession() as http, \
            http.get(url + "/health", headers={"Authorization": "Bearer tok"}) as resp:
        return await resp.json()


async def test_sighup_reloads_and_the_admin_commands_drain_undrain_and_reload(processes, tmp_path):
    ports = {"gpu0": free_port(), "gpu1": free_port()}
    for name, port in ports.items():
        await processes(*CLI, "sim-worker", "--port", str(port), "--name", name, "--models", "tiny:1b=0.1GiB",
                        "--load-s-per-gib", "0.01", "--tokens-per-s", "5000")
        await wait_http(f"http://127.0.0.1:{port}/")
    workers = {n: f'[[workers]]\nname = "{n}"\nurl = "http://127.0.0.1:{p}"\nkind = "ollama"\n' for n, p in ports.items()}
    polls = "[health]\ninterval_s = 0.2\n[server]\nconfig_poll_s = 0\n"  # no file watch: SIGHUP must do it
    config, gateway_port = tmp_path / "config.toml", free_port()
    config.write_text(workers["gpu0"] + polls)
    gateway = await processes(*CLI, "serve", "--config", str(config), "--listen", f"127.0.0.1:{gateway_port}",
                              env={"BEACON_ADMIN_TOKEN": "tok"})
    url = f"http://127.0.0.1:{gateway_port}"
    await wait_http(url + "/health/live")
    config.write_text(workers["gpu0"] + workers["gpu1"] + polls)
    gateway.send_signal(signal.SIGHUP)
    for _ in range(100):
        if [w["state"] for w in (await health(url))["workers"]] == ["healthy", "healthy"]:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"SIGHUP did not add gpu1: {await health(url)}")

    code, out, _ = await run("drain", "gpu0", "--url", url, "--token", "tok")
    assert code == 0 and "drained True" in out
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.post(url + "/api/generate", json={"model": "tiny:1b", "prompt": "x", "stream": False}) as r:
                assert r.status == 200 and r.headers["X-Beacon-Worker"] == "gpu1"
    code, out, _ = await run("status", "--url", url, "--token", "tok")  # an admin token is set: the table needs it
    assert "drained" in out.split("gpu0", 1)[1].splitlines()[0]
    assert (await run("undrain", "gpu0", "--url", url, "--token", "tok"))[0] == 0
    assert not (await health(url))["workers"][0]["drained"]
    code, _, err = await run("drain", "gpu0", "--url", url)
    assert code == 2 and "BEACON_ADMIN_TOKEN" in err
    code, out, _ = await run("drain", "gpu0", "--url", url, "--token", "nope")
    assert code == 1 and "wrong bearer token" in out

    config.write_text(workers["gpu0"] + "[health]\ninterval_s = \"zero\"\n")
    code, out, _ = await run("reload", "--url", url, "--token", "tok")
    assert code == 1 and "reload failed" in out and "health.interval_s" in out
    assert len((await health(url))["workers"]) == 2, "the old config stays"
    config.write_text(workers["gpu0"] + polls)
    code, out, _ = await run("reload", "--url", url, "--token", "tok")
    assert code == 0 and "reload ok" in out and "removed: gpu1" in out
    gateway.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(gateway.wait(), 10) == 0
