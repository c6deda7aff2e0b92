"""kill -9 of a gateway replica (a real `beacon-gateway serve` process) while it has requests in
flight: the other replica stops counting them once the dead one's lease runs out, instead of
seeing those workers busy for ever."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import aiohttp

from tests.component.served_processes import free_port
from tests.conftest import WorkerSpec

SLOW = (WorkerSpec("gpu0", models="small:1b=1GiB", tokens_per_s=5, load_s_per_gib=0.01),)
LEASE_S = 1.0


async def test_a_killed_replica_s_claims_are_gone_within_its_lease(redis_server, start_replicas, tmp_path):
    survivor = await start_replicas(1, redis_server.url, *SLOW, lease_s=LEASE_S)
    config = tmp_path / "config.toml"
    config.write_text(survivor.config_text)
    port = free_port()
    env = {**os.environ, "BEACON_REDIS_URL": redis_server.url, "BEACON_REDIS_LEASE_S": str(LEASE_S),
           "BEACON_LOG_LEVEL": "warning"}
    doomed = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(url + "/health/live"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            body = {"model": "small:1b", "prompt": "hi", "stream": False, "options": {"num_predict": 200}}
            held = [asyncio.create_task(http.post(url + "/api/generate", json=body)) for _ in range(3)]
            cluster = survivor.gateways[0].cluster
            def seen() -> int:  # in flight at the worker, or waiting in that replica's queue for its one slot
                return cluster.view.claims.get(("gpu0", "small:1b"), 0) + cluster.view.depths.get("small:1b", 0)

            for _ in range(100):  # the other process publishes every 0.1 s: wait until we have read it
                await cluster.step()
                if seen() == 3:
                    break
                await asyncio.sleep(0.05)
            assert seen() == 3 and cluster.view.claims.get(("gpu0", "small:1b"), 0) >= 1
            assert survivor.gateways[0].load.get("gpu0") >= 1  # what routing reads: the other replica's traffic
            doomed.kill()
            await doomed.wait()
            killed = time.monotonic()
            await asyncio.gather(*held, return_exceptions=True)  # their connections died with the replica
            while cluster.view.claims and time.monotonic() - killed < LEASE_S + 3:
                await asyncio.sleep(0.1)
                await cluster.step()
            assert cluster.view.claims == {} and survivor.gateways[0].load.get("gpu0") == 0
            assert time.monotonic() - killed <= LEASE_S + 1.0 and cluster.view.depths == {}
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await doomed.wait()
