"""`serve --processes 2` as a real command in front of a simulated worker, with the private
redis-server it starts: both processes answer on the one port (each /health names its index),
/metrics merges both, each series labelled with its process, under one HELP and TYPE a family;
SIGHUP and POST /admin/reload reload both (config polling off, so nothing else could); a drain
through the port drains the worker in both (through Redis); a process
killed with kill -9 comes back while the port keeps serving, and so does the private Redis; and
SIGTERM leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from local_workers.sim import SimWorker, build_sim_app, parse_models
from tests.component.served_processes import Served, alive

TOKEN = "admin-token-for-processes-test"
CHAT = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def write_config(path, worker_url: str, version: int) -> None:
    path.write_text(f'[server]\nconfig_poll_s = 0\n\n[models."llama3.2:1b"]\naliases = ["v{version}"]\n\n'
                    f'[[workers]]\nname = "gpu0"\nurl = "{worker_url}"\nkind = "ollama"\nvram_gib = 24\n')


@pytest.fixture
async def served(tmp_path, aiohttp_server):
    worker = SimWorker(name="gpu0", models=parse_models("llama3.2:1b=1.3GiB"), vram_bytes=24 * 1024**3,
                       tokens_per_s=100_000)
    server = await aiohttp_server(build_sim_app(worker))
    config = tmp_path / "config.toml"
    write_config(config, str(server.make_url("")).rstrip("/"), 1)
    cmd = Served(tmp_path)
    cmd.config, cmd.worker_url, cmd.token = config, str(server.make_url("")).rstrip("/"), TOKEN
    await cmd.start(config, env={"BEACON_ADMIN_TOKEN": TOKEN})
    yield cmd
    await cmd.close()


async def metric_samples(cmd: Served) -> tuple[str, dict]:
    async with aiohttp.ClientSession() as http, http.get(cmd.url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def reloads(families: dict, process: str) -> float:
    return sum(s.value for s in families["beacon_config_reloads"].samples
               if s.name.endswith("_total") and s.labels == {"process": process, "result": "ok"})


async def test_both_processes_answer_on_one_port_and_metrics_merge_them(served):
    pids = await served.until_serving(2)
    assert set(pids) == {0, 1} and len(set(pids.values())) == 2
    health = await served.health()
    assert health["status"] == "ok" and health["process"]["count"] == 2
    assert health["process"]["cluster"] == "shared", "through the private redis-server the supervisor started"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        for _ in range(20):
            async with http.post(served.url + "/api/chat", json=CHAT) as resp:
                assert resp.status == 200 and (await resp.json())["done"] is True
    text, families = await metric_samples(served)
    requests = [s for s in families["beacon_requests"].samples if s.name == "beacon_requests_total"]
    assert {s.labels["process"] for s in requests} == {"0", "1"}, "both processes served some of 20 connections"
    assert sum(s.value for s in requests if s.labels["outcome"] == "ok") == 20
    assert text.count("# TYPE beacon_requests_total counter") == 1
    assert text.count("# HELP beacon_requests_total ") == 1
    cpu = families["process_cpu_seconds"].samples
    assert {s.labels["process"] for s in cpu} == {"0", "1"}
    for family in families.values():  # every series says which process it came from
        assert all(s.labels.get("process") in ("0", "1") for s in family.samples), family.name
    unanswered = [s for s in families["beacon_process_metrics_unanswered"].samples if s.name.endswith("_total")]
    assert unanswered and all(s.value == 0 for s in unanswered)


async def test_sighup_and_the_admin_reload_reload_every_process(served):
    await served.until_serving(2)
    _, families = await metric_samples(served)
    assert reloads(families, "0") == reloads(families, "1") == 0
    write_config(served.config, served.worker_url, 2)
    served.proc.send_signal(signal.SIGHUP)  # to the supervisor alone: it forwards
    for _ in range(100):  # another process reloading: poll its metrics, bounded
        _, families = await metric_samples(served)
        if reloads(families, "0") == reloads(families, "1") == 1:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("SIGHUP did not reload both processes")

    write_config(served.config, served.worker_url, 3)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(served.url + "/admin/reload", headers=headers) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        assert body["result"] == "ok"
        assert [(p["process"], p["result"], p["version"]) for p in body["processes"]] == [
            (0, "ok", body["version"]), (1, "ok", body["version"])]
        served.config.write_text("[[workers]]\nname = 1\n")
        async with http.post(served.url + "/admin/reload", headers=headers) as resp:
            refused = await resp.json()
            assert resp.status == 422
    assert refused["result"] == "failed" and "still running " + body["version"] in refused["error"]
    assert [p["result"] for p in refused["processes"]] == ["failed", "failed"]
    assert (await served.health())["config"]["version"] == body["version"]


async def drained_in(served: Served) -> dict[int, bool]:
    """Whether each process sees gpu0 drained, asked on fresh connections until both answered."""
    seen: dict[int, bool] = {}
    for _ in range(60):
        health = await served.health()
        seen[health["process"]["index"]] = health["workers"][0]["drained"]
        if len(seen) == 2:
            break
    return seen


async def test_a_drain_through_the_shared_port_drains_the_worker_in_every_process(served):
    await served.until_serving(2)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        for action, drained in (("drain", True), ("undrain", False)):
            async with http.post(f"{served.url}/admin/workers/gpu0/{action}", headers=headers) as resp:
                assert resp.status == 200 and (await resp.json())["drained"] is drained
            for _ in range(100):  # the other process applies it from Redis on its next sync (0.1 s)
                if await drained_in(served) == {0: drained, 1: drained}:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"{action} did not reach both processes: {await drained_in(served)}")


async def test_a_process_killed_comes_back_and_the_port_keeps_serving(served):
    before = await served.until_serving(2)
    os.kill(before[1], signal.SIGKILL)
    # what the killed process had accepted or queued dies with it (reset): new connections go on
    for _ in range(100):  # until the supervisor has reaped it; the kernel then routes nothing there
        if not alive(before[1]):
            break
        await asyncio.sleep(0.02)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        for _ in range(30):  # meanwhile, process 0 alone takes every new connection
            async with http.post(served.url + "/api/chat", json=CHAT) as resp:
                assert resp.status == 200
    after = await served.until_serving(2)
    assert after[0] == before[0] and after[1] != before[1]
    [exited] = [line for line in served.lines() if line.get("event") == "process.exited"]
    assert exited["child"] == "process 1" and exited["exit"] == "SIGKILL" and exited["pid"] == before[1]
    assert any(line.get("event") == "process.restarted" and line["pid"] == after[1] for line in served.lines())


async def test_the_private_redis_killed_comes_back_and_both_processes_share_again(served):
    await served.until_serving(2)
    [redis] = [pid for pid in served.seen if Path(f"/proc/{pid}/comm").read_text().strip() == "redis-server"]
    os.kill(redis, signal.SIGKILL)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        for _ in range(10):  # Redis gone is not the gateway gone
            async with http.post(served.url + "/api/chat", json=CHAT) as resp:
                assert resp.status == 200
    for _ in range(100):  # the supervisor restarts it; each process rejoins on its next sync
        modes = {p["index"]: p["cluster"] for p in [(await served.health())["process"] for _ in range(8)]}
        restarted = [line for line in served.lines() if line.get("event") == "process.restarted"]
        if modes == {0: "shared", 1: "shared"} and [line["child"] for line in restarted] == ["redis-server"]:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"the processes did not share again: {modes}")


async def test_sigterm_stops_every_process_and_redis_and_removes_the_run_folder(served):
    await served.until_serving(2)
    assert len(served.seen) == 3, "two gateways and a private redis-server"
    assert len(list(served.tmpdir.iterdir())) == 1, "the run folder exists while it runs"
    served.proc.send_signal(signal.SIGTERM)
    assert await served.finish() == 0
    assert not [line for line in served.lines() if "Traceback" in str(line)]
    await served.assert_nothing_left()
