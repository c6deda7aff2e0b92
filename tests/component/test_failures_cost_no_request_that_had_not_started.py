"""Crashes, hangs, error bursts, slowdowns and lost GPUs, with workers as real processes or
switched sims. For each: no request that had not received a first byte fails, a stream cut by
the fault ends with one error line, and traffic returns after recovery."""

import asyncio
import signal
import time

import orjson

from tests.conftest import WorkerSpec

FAST = ("[failover]\nfirst_byte_timeout_s = 1.0\nstream_idle_timeout_s = 1.0\nconnect_timeout_s = 0.5\n"
        "[health]\ntimeout_s = 0.3\nhealthy_threshold = 1\n")
SIM_ARGS = ("--models", "llama3.2:1b=1GiB", "--tokens-per-s", "40", "--load-s-per-gib", "0.01")


async def stream(fleet, num_predict=20, **body):
    """One streamed generate: (status, first line arrived at, lines, worker)."""
    request = {"model": "llama3.2:1b", "prompt": "x", "options": {"num_predict": num_predict}, **body}
    async with fleet.post("/api/generate", request) as resp:
        if resp.status != 200:
            return resp.status, None, [await resp.text()], None
        first_at, lines = None, []
        async for line in resp.content:
            first_at = first_at or time.monotonic()
            lines.append(orjson.loads(line))
        return 200, first_at, lines, resp.headers["X-Beacon-Worker"]


def done(result) -> bool:
    return result[0] == 200 and result[2][-1].get("done") is True


async def until_serving(fleet, name: str, seconds: float = 10.0) -> None:
    """Probe until the worker serves again (up, and any ejection over), however fast or slow this
    machine ran the steps before; fail if it never does."""
    for _ in range(int(seconds / 0.1)):
        await fleet.probe()
        if fleet.gateway.holder.current.worker(name).serving:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never served again")


async def external_fleet(start_fleet, *procs):
    return await start_fleet(*(WorkerSpec(p.name, url=p.url) for p in procs),
                             config_extra=FAST + "[outlier]\neject_s = 0.5\n")


async def test_kill_9_mid_stream_cuts_only_started_streams_and_the_worker_comes_back(start_fleet, sim_processes):
    gpu0, gpu1 = await sim_processes("gpu0", *SIM_ARGS), await sim_processes("gpu1", *SIM_ARGS)
    fleet = await external_fleet(start_fleet, gpu0, gpu1)
    running = [asyncio.create_task(stream(fleet, 40, system=f"s{i}")) for i in range(6)]
    await asyncio.sleep(0.3)  # every stream is under way on one worker or the other
    killed_at = time.monotonic()
    gpu0.kill()
    after = await asyncio.gather(*(stream(fleet, 3, system=f"late{i}") for i in range(6)))
    assert all(done(r) and r[3] == "gpu1" for r in after), "not-yet-started requests all succeed elsewhere"
    results = await asyncio.gather(*running)
    cut = [r for r in results if not done(r)]
    assert cut and all(r[0] == 200 and "error" in r[2][-1] and r[3] == "gpu0" for r in cut)
    assert all(sum("error" in line for line in r[2]) == 1 for r in cut)
    await gpu0.process.wait()
    restarted = await sim_processes("gpu0", *SIM_ARGS, port=gpu0.port)
    async with fleet.http.post(restarted.url + "/api/generate", json={"model": "llama3.2:1b"}):
        pass  # warm it, as the warmer would: a cold worker only gets traffic the resident ones can't take
    await until_serving(fleet, "gpu0")  # its cut streams may have ejected it for [outlier] eject_s
    served = {(await stream(fleet, 2, system=f"back{i}"))[3] for i in range(8)}
    assert "gpu0" in served, "traffic returns after recovery"
    assert time.monotonic() - killed_at < 30


async def test_a_sigstopped_worker_costs_one_timeout_and_its_streams_end_with_an_error(start_fleet, sim_processes):
    gpu0, gpu1 = await sim_processes("gpu0", *SIM_ARGS), await sim_processes("gpu1", *SIM_ARGS)
    fleet = await external_fleet(start_fleet, gpu0, gpu1)
    running = [asyncio.create_task(stream(fleet, 40, system=f"s{i}")) for i in range(4)]
    await asyncio.sleep(0.3)
    gpu0.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    after = await asyncio.gather(*(stream(fleet, 3, system=f"late{i}") for i in range(4)))
    assert all(done(r) and r[3] == "gpu1" for r in after)
    results = await asyncio.gather(*running)
    for r in results:
        assert done(r) or (r[3] == "gpu0" and "timed out" in r[2][-1]["error"]), r
    assert time.monotonic() - stopped_at < 5, "a hung worker holds no client longer than the timeouts"
    assert fleet.gateway.holder.current.worker("gpu0").state in ("ejected", "down")
    gpu0.signal(signal.SIGCONT)
    await until_serving(fleet, "gpu0")  # up again, and the ejection ran out
    assert "gpu0" in {(await stream(fleet, 2, system=f"b{i}"))[3] for i in range(8)}


async def test_a_burst_of_500s_ejects_the_worker_without_failing_a_request(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", tokens_per_s=2000), WorkerSpec("gpu1", tokens_per_s=2000),
                              config_extra=FAST + "[outlier]\nconsecutive_failures = 2\neject_s = 2\n")
    fleet.workers["gpu0"].set_mode("error")
    results = [await stream(fleet, 2, system=f"r{i}") for i in range(10)]
    assert all(done(r) and r[3] == "gpu1" for r in results)
    assert fleet.workers["gpu0"].stats.requests["/api/generate"] <= 2, "ejected after two failures"
    assert fleet.gateway.holder.current.worker("gpu0").state == "ejected"
    fleet.workers["gpu0"].set_mode("ok")
    async with fleet.http.post(fleet.worker_urls["gpu0"] + "/api/generate", json={"model": "llama3.2:1b"}):
        pass  # loaded again, as the warmer would: only then is it as good a choice as gpu1
    await until_serving(fleet, "gpu0")  # the ejection (eject_s 2: ten requests fit in it on 2 loaded cores) expired
    assert "gpu0" in {(await stream(fleet, 2, system=f"b{i}"))[3] for i in range(8)}


async def test_a_20x_slowdown_marks_the_worker_degraded_and_traffic_moves(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", tokens_per_s=400), WorkerSpec("gpu1", tokens_per_s=400))
    for i in range(6):  # learn both workers' usual rate
        await stream(fleet, 4, system=f"warm{i}")
    fleet.workers["gpu0"].set_mode("slow")
    for i in range(4):
        result = await stream(fleet, 4, system=f"s{i}")
        assert done(result)
    assert "below its usual" in fleet.gateway.inflight.slow_reason("gpu0")
    assert {(await stream(fleet, 2, system=f"n{i}"))[3] for i in range(6)} == {"gpu1"}


async def test_a_lost_gpu_shows_as_degraded_with_its_reason_and_ranks_after_healthy_gpus(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), WorkerSpec("cpu0", tier="cpu"))
    for name in ("gpu0", "gpu1"):
        async with fleet.http.post(fleet.worker_urls[name] + "/api/generate", json={"model": "llama3.2:1b"}):
            pass
    fleet.workers["gpu0"].set_mode("gpu_lost")
    await fleet.probe()
    async with fleet.get("/health") as resp:
        body = await resp.json()
    gpu0 = next(w for w in body["workers"] if w["name"] == "gpu0")
    assert gpu0["state"] == "degraded" and "spilled to CPU" in gpu0["degraded"]
    assert gpu0["resident"][0]["gpu_share"] == 0.0
    assert {(await stream(fleet, 2, system=f"n{i}"))[3] for i in range(6)} == {"gpu1"}
    fleet.workers["gpu1"].set_mode("error")
    fleet.workers["gpu0"].set_mode("ok")
    await fleet.probe()
    assert (await stream(fleet, 2))[3] == "gpu0", "the signal cleared: gpu0 is healthy again"
