"""`python -m local_workers.sim --port P ...` serves a simulated worker as a real process, says where it
listens, answers over HTTP, and stops cleanly on SIGINT or SIGTERM."""

import asyncio
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]


async def start(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "local_workers.sim", *args, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    match = re.search(r"listening on (http://\S+)", line)
    assert match, f"no listening line: {line!r}"
    return proc, match.group(1)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_the_command_serves_until_told_to_stop(stop):
    proc, url = await start("--port", "0", "--name", "gpu9", "--models", "tiny:1b=0.1GiB", "--tokens-per-s",
                            "100000", "--load-s-per-gib", "0.01", "--num-parallel", "2", "--vram-gib", "8")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/") as resp:
                assert await resp.text() == "Ollama is running"
            body = {"model": "tiny:1b", "prompt": "x", "stream": False}
            async with http.post(url + "/api/generate", json=body) as resp:
                assert resp.status == 200 and (await resp.json())["done"] is True
            async with http.get(url + "/_sim/state") as resp:
                state = await resp.json()
            assert state["name"] == "gpu9" and state["loads"] == ["tiny:1b"]
        proc.send_signal(stop)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_required_port_is_asked_for():
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "local_workers.sim", cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2 and b"--port" in err


async def test_a_signal_right_after_the_listening_line_still_stops_it_cleanly():
    proc, _ = await start("--port", "0")
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert await proc.stdout.read() == b"", "no traceback"


async def test_a_port_already_taken_is_one_line_and_exit_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "local_workers.sim", "--port", str(port),
                                                    cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1 and out == b""
    assert err.decode().splitlines() == [f"sim-worker sim: cannot listen on 127.0.0.1:{port}: address already in use"]
