"""Every way out of `demo` and `serve`, run as real processes: a taken port (one line saying what to
do, or for the demo on its default address a free port), bad settings, Ctrl-C, SIGTERM or SIGHUP
(a closed terminal) while a llama-server child starts, a llama-server that exits at once. Each time: the exit code, no
traceback, no process left in the command's process group, nothing left in its TMPDIR."""

import asyncio
import json
import os
import signal
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "gateway"]


@contextmanager
def taken_port(port: int = 0):
    """A port some other program listens on (the default one may be taken already: then it is)."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        sock = None
    try:
        yield sock.getsockname()[1] if sock else port
    finally:
        if sock:
            sock.close()


def fake_llama_server(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "llama-server"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


class Command:
    """One command in a process group of its own, with a TMPDIR the test looks into afterwards."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir()
        self.proc: asyncio.subprocess.Process | None = None
        self.read = ""  # stdout until_running() has read already

    async def start(self, *args: str, **env: str) -> asyncio.subprocess.Process:
        self.proc = await asyncio.create_subprocess_exec(
            *CLI, *args, cwd=ROOT, start_new_session=True, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "TMPDIR": str(self.tmpdir), **env})
        return self.proc

    async def finish(self, seconds: float = 15) -> tuple[int, str, str]:
        out, err = await asyncio.wait_for(self.proc.communicate(), seconds)
        return self.proc.returncode, self.read + out.decode(), err.decode()

    async def until_running(self) -> str:
        """The demo's URL, read from its 'is running at' line."""
        while True:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), 30)).decode()
            assert line, "the demo ended before it ran"
            self.read += line
            if "is running at" in line:
                return line.split("is running at ", 1)[1].strip()

    async def assert_nothing_left(self) -> None:
        for _ in range(50):  # the OS needs a moment to reap; nothing to do with the control loop
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("a process of the command's group is still running")
        assert list(self.tmpdir.iterdir()) == [], "the command left files in its TMPDIR"

    def kill(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
async def command(tmp_path):
    cmd = Command(tmp_path)
    yield cmd
    cmd.kill()


async def test_serve_on_a_taken_port_says_so_in_one_line_and_exits_1(command, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[[workers]]\nname = "gpu0"\nurl = "http://127.0.0.1:9"\nkind = "ollama"\n')
    with taken_port() as port:
        await command.start("serve", "--config", str(config), "--listen", f"127.0.0.1:{port}")
        code, out, err = await command.finish()
    assert code == 1 and out == "" and "Traceback" not in err
    [line] = err.strip().splitlines()
    message = json.loads(line)["message"]
    assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in message
    assert "--listen 127.0.0.1:" in message
    await command.assert_nothing_left()


async def test_demo_on_a_taken_port_it_was_told_says_so_and_starts_nothing(command, tmp_path):
    marker = tmp_path / "llama-started"
    llama = fake_llama_server(tmp_path, f"echo $$ > {marker}\nexec sleep 300\n")
    with taken_port() as port:
        await command.start("demo", "--listen", f"127.0.0.1:{port}", BEACON_LLAMA_SERVER=str(llama))
        code, out, err = await command.finish()
    assert code == 1 and "Traceback" not in err
    [line] = err.strip().splitlines()
    assert f"127.0.0.1:{port}: the address is already in use" in line and "--listen 127.0.0.1:" in line
    assert not marker.exists(), "llama-server was started for a demo that could not listen"
    await command.assert_nothing_left()


async def test_demo_on_its_default_port_taken_takes_a_free_one_and_says_so(command):
    with taken_port(11434):
        await command.start("demo", BEACON_LLAMA_SERVER="/nonexistent/llama-server")
        url = await command.until_running()
        assert not url.endswith(":11434")
        async with aiohttp.ClientSession() as http, http.get(url + "/api/tags") as resp:
            assert resp.status == 200 and "llama3.2:1b" in {m["name"] for m in (await resp.json())["models"]}
    command.proc.send_signal(signal.SIGINT)
    code, out, err = await command.finish()
    assert code == 0 and "Traceback" not in err
    assert "127.0.0.1:11434 is in use" in out and "--listen HOST:PORT" in out
    assert "BEACON_LLAMA_SERVER does not name a file" in err
    await command.assert_nothing_left()


async def test_demo_whose_llama_server_exits_at_once_runs_without_it_and_ctrl_c_removes_everything(command, tmp_path):
    llama = fake_llama_server(tmp_path, "echo 'error: failed to load model' >&2\nexit 1\n")
    await command.start("demo", "--listen", "127.0.0.1:0", BEACON_LLAMA_SERVER=str(llama))
    url = await command.until_running()
    async with aiohttp.ClientSession() as http, http.get(url + "/api/tags") as resp:
        names = {m["name"] for m in (await resp.json())["models"]}
    assert "llama3.2:1b" in names and "tiny-llama:latest" not in names
    assert len(list(command.tmpdir.iterdir())) == 1, "the demo's folder exists while it runs"
    command.proc.send_signal(signal.SIGINT)
    code, out, err = await command.finish()
    assert code == 0 and "Traceback" not in err
    assert "llama-server exited with 1" in err and "the demo runs without llama0" in err
    assert "no llama-server found" in out
    await command.assert_nothing_left()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"])
async def test_demo_stopped_while_llama_server_starts_kills_it_and_removes_its_folder(command, tmp_path, sig):
    marker = tmp_path / "llama-started"
    llama = fake_llama_server(tmp_path, f"echo $$ > {marker}.tmp\nmv {marker}.tmp {marker}\nexec sleep 300\n")
    await command.start("demo", "--listen", "127.0.0.1:0", BEACON_LLAMA_SERVER=str(llama))
    for _ in range(300):  # the fake llama-server says when it runs; it never gets ready
        if marker.exists():
            break
        await asyncio.sleep(0.05)
    llama_pid = int(marker.read_text())
    assert len(list(command.tmpdir.iterdir())) == 1
    command.proc.send_signal(sig)
    code, _, err = await command.finish()
    assert code == 0 and "Traceback" not in err
    with pytest.raises(ProcessLookupError):
        os.kill(llama_pid, 0)
    await command.assert_nothing_left()


async def test_demo_with_bad_settings_names_the_variable_and_starts_nothing(command, tmp_path):
    marker = tmp_path / "llama-started"
    llama = fake_llama_server(tmp_path, f"echo $$ > {marker}\nexec sleep 300\n")
    await command.start("demo", "--listen", "127.0.0.1:0", BEACON_LLAMA_SERVER=str(llama), BEACON_LOG_LEVEL="loud")
    code, out, err = await command.finish()
    assert code == 2 and out == "" and "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith("bad settings: BEACON_LOG_LEVEL: ")
    assert not marker.exists()
    await command.assert_nothing_left()
