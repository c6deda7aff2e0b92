"""What aiohttp, asyncio, warnings and an uncaught exception log goes through structlog: one JSON
line per event, and never a client's request head. aiohttp's parse errors quote the raw header
lines they choke on, an Authorization header among them; the gateway's log and its 400 answers
name the kind of error only. Run as real processes, reading everything they write."""

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-very-secret-client-key-0123456789"

# heads aiohttp refuses, each carrying the client's key
MALFORMED_HEADS = [
    f"GET /api/tags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\r\nno colon here\r\n\r\n",
    f"GET /api/tags HTTP/1.1\r\nAuth\x01orization: Bearer {SECRET}\r\n\r\n",
    f"GET /api/\x00tags HTTP/1.1\r\nAuthorization: Bearer {SECRET}\r\n\r\n",
    f"GET /api/tags HTTP/9.9\r\nAuthorization: Bearer {SECRET}\r\n\r\n",
    f"GET /api/tags HTTP/1.1\r\nAuthorization: Bearer {SECRET}\r\nContent-Length: {SECRET}\r\n\r\n",
    f"POST /api/chat HTTP/1.1\r\nAuthorization: Bearer {SECRET}\r\nTransfer-Encoding: chunked\r\n\r\n{SECRET}\r\n",
    f"GET /api/tags HTTP/1.1\r\nAuthorization: Bearer {SECRET}\r\nX-Long: {'a' * 20000}{SECRET}\r\n\r\n",
    f"{SECRET} / HTTP/1.1\r\n\r\n",
]


def json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    for line in lines:
        assert SECRET not in line, f"the client's key reached the log: {line[:300]}"
        try:
            json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line[:300]}") from None
    return [json.loads(line) for line in lines]


async def send_raw(port: int, head: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode("latin-1"))
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


async def test_malformed_heads_are_logged_as_one_json_line_without_the_head(tmp_path, unused_tcp_port):
    config = tmp_path / "config.toml"
    config.write_text('[[workers]]\nname = "gpu0"\nurl = "http://127.0.0.1:9"\nkind = "ollama"\n'
                      "[health]\ninterval_s = 0.2\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(config), "--listen", f"127.0.0.1:{unused_tcp_port}",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BEACON_LOG_FORMAT": "json"})
    try:
        url = f"http://127.0.0.1:{unused_tcp_port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(url + "/health/live") as resp:
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            for head in MALFORMED_HEADS:
                answer = await send_raw(unused_tcp_port, head)
                status_line, _, body = answer.partition(b"\r\n\r\n")
                assert status_line.split(b"\r\n")[0].split(b" ")[1] == b"400" and SECRET.encode() not in answer
                assert json.loads(body)["error"].startswith("malformed HTTP request")
            async with http.get(url + "/api/tags", headers={"Authorization": f"Bearer {SECRET}"}) as resp:
                assert resp.status == 200, "the gateway keeps serving"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    events = json_lines(err.decode()) + json_lines(out.decode())
    refused = [e for e in events if e["event"] == "http.bad_request"]
    assert len(refused) >= len(MALFORMED_HEADS) - 1  # a first line that is no HTTP method at all logs at debug
    assert all(set(e) >= {"status", "error", "remote"} and "exception" not in e for e in refused)


LIBRARY_NOISE = f"""
import asyncio, logging, warnings
from aiohttp.http_exceptions import BadHttpMessage
from gateway import logs, runner

logs.configure("json", "info")
try:
    raise BadHttpMessage("Invalid header token:\\n\\n    b'Authorization: Bearer {SECRET}'")
except BadHttpMessage:
    logging.getLogger("aiohttp.server").exception("Error handling request from %s", "127.0.0.1")
try:
    try:
        raise BadHttpMessage("Invalid header token: {SECRET}")
    except BadHttpMessage as exc:
        raise ConnectionError("the connection broke") from exc
except ConnectionError:
    logging.getLogger("aiohttp.client").exception("chained")
logging.getLogger("aiohttp.web").warning("a long client string: %s", "x" * 100000)
logging.getLogger("gguf.gguf_writer").info("info chatter from a library stays out")
warnings.warn("something is deprecated")


async def main():
    asyncio.get_running_loop().call_soon(lambda: 1 / 0)
    await asyncio.sleep(0.05)

runner.run(main)
raise RuntimeError("a crash at the very end")
"""


async def test_library_records_warnings_and_a_crash_are_json_lines_too():
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", LIBRARY_NOISE, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1 and out == b""
    events = json_lines(err.decode())
    by_logger = {e.get("logger"): e for e in events}
    assert set(by_logger) == {"aiohttp.server", "aiohttp.client", "aiohttp.web", "py.warnings", "asyncio", "gateway"}
    assert by_logger["aiohttp.server"]["error"] == "BadHttpMessage" and "exception" not in by_logger["aiohttp.server"]
    assert by_logger["aiohttp.client"]["error"] == "BadHttpMessage" and "exception" not in by_logger["aiohttp.client"]
    assert len(by_logger["aiohttp.web"]["event"]) < 2200
    assert "ZeroDivisionError" in by_logger["asyncio"]["exception"]
    crash = by_logger["gateway"]
    assert crash["level"] == "critical" and "a crash at the very end" in crash["exception"]
