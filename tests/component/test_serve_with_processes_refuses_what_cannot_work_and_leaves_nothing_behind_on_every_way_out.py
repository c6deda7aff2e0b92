"""The ways in and out of `serve --processes 2` that are not a normal run: no redis-server
installed and no BEACON_REDIS_URL (one line, exit 2), port 0 (one line, exit 2), a stop signal
while the processes start, and kill -9 of the supervisor itself or of its process group (its
processes, each in a group of its own, notice and stop, and the last one removes the run
folder). Each time nothing is left running or on disk."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from tests.component.served_processes import Served, alive, children_of


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[[workers]]\nname = "gpu0"\nurl = "http://127.0.0.1:9"\nkind = "ollama"\n')
    return path


@pytest.fixture
async def served(tmp_path):
    cmd = Served(tmp_path)
    yield cmd
    await cmd.close()


async def test_without_redis_server_or_a_redis_url_it_refuses_in_one_line(served, config, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()  # a PATH with no redis-server on it (the command itself runs by absolute path)
    await served.start(config, env={"PATH": str(empty)})
    assert await served.finish() == 2
    [line] = served.log.read_text().strip().splitlines()
    assert "redis-server" in line and "BEACON_REDIS_URL" in line and "Traceback" not in line
    await served.assert_nothing_left()


async def test_port_0_with_several_processes_is_refused_in_one_line(served, config):
    await served.start(config, listen="127.0.0.1:0")
    assert await served.finish() == 2
    [line] = served.log.read_text().strip().splitlines()
    assert "--processes 2 needs a fixed port" in line and "--listen 127.0.0.1:" in line
    await served.assert_nothing_left()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stop_signal_while_the_processes_start_stops_them_all(served, config, sig):
    await served.start(config)
    for _ in range(1000):  # until Redis and both gateways run: the gateways are starting now
        served.seen.update(children_of(served.proc.pid))
        if len(served.seen) == 3:
            break
        await asyncio.sleep(0.01)
    assert len(served.seen) == 3, "Redis and both gateways were started"
    served.proc.send_signal(sig)
    assert await served.finish() == 0
    await served.assert_nothing_left()


@pytest.mark.parametrize("kill", [os.kill, os.killpg], ids=["the-supervisor", "its-process-group"])
async def test_kill_9_of_the_supervisor_stops_its_processes_and_they_remove_the_folder(served, config, kill):
    await served.start(config)
    pids = await served.until_serving(2)
    kill(served.proc.pid, signal.SIGKILL)  # its group, as a harness stops what it started: the supervisor alone
    await served.finish()
    for _ in range(100):  # the processes are told by the kernel and stop on their own
        if not any(alive(pid) for pid in served.seen) and not list(served.tmpdir.iterdir()):
            break
        await asyncio.sleep(0.1)
    assert not [pid for pid in pids.values() if alive(pid)]
    await served.assert_nothing_left()
