"""`python -m local_workers.sim --workers N ...` serves N simulated workers from one process, each on its
own port with its own slice of the models, every k-th with a model loaded; `GET /fleet` lists them
and sums their request counters; SIGTERM stops them all (the fleet-scale benchmark runs on this)."""

import asyncio
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
MODELS = "a:1b=0.1GiB,b:1b=0.1GiB,c:1b=0.1GiB,d:1b=0.1GiB"


async def test_one_process_serves_a_fleet_and_stops_on_sigterm():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "local_workers.sim", "--port", "0", "--workers", "6", "--name", "w", "--models", MODELS,
        "--models-per-worker", "2", "--resident-every", "3", "--load-s-per-gib", "0.01", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        control = re.search(r"control (http://\S+/fleet)", line)
        assert control, f"no listening line: {line!r}"
        async with aiohttp.ClientSession() as http:
            async with http.get(control.group(1)) as resp:
                fleet = (await resp.json())["workers"]
            assert [w["name"] for w in fleet] == [f"w{i}" for i in range(6)]
            assert len({w["url"] for w in fleet}) == 6, "a port each"
            listed, loaded = [], []
            for w in fleet:
                async with http.get(w["url"] + "/api/tags") as resp:
                    listed.append(sorted(m["name"] for m in (await resp.json())["models"]))
                async with http.get(w["url"] + "/api/ps") as resp:
                    loaded.append([m["name"] for m in (await resp.json())["models"]])
            assert listed[:4] == [["a:1b", "b:1b"], ["b:1b", "c:1b"], ["c:1b", "d:1b"], ["a:1b", "d:1b"]]
            assert loaded == [["a:1b"], [], [], ["d:1b"], [], []], "every 3rd worker starts with its first model"
            async with http.get(control.group(1)) as resp:
                assert (await resp.json())["requests"] == {"/api/tags": 6, "/api/ps": 6}
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_port_already_taken_is_one_line_and_exit_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "local_workers.sim", "--port", str(port - 1), "--workers", "2", cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1 and out == b""
    assert err.decode().splitlines()[-1].startswith("sim-fleet: cannot listen on 127.0.0.1:")
