"""Blob uploads (/api/blobs/sha256:...) keep to `[server] body_mib.blobs` (413), to
`body_timeout_s` between pieces and `blob_timeout_s` for the whole (408), and reach every
worker as the bytes the client sent: a Content-Encoded upload is refused (415) rather than
expanded on the way. Each refusal leaves no blob on any worker, and the gateway keeps serving."""

import asyncio
import gzip
import hashlib

import orjson

from tests.conftest import WorkerSpec

DATA = b"GGUF" + bytes(range(256)) * 64
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()
MIB = 1024 * 1024


def blob_calls(fleet) -> int:
    return sum(n for w in fleet.workers.values() for p, n in w.stats.requests.items() if p.startswith("/api/blobs/"))


def stored(fleet) -> list[dict]:
    return [dict(w.blobs) for w in fleet.workers.values()]


async def raw_upload(fleet, headers: bytes, parts: list[bytes], pause_s: float = 0.0) -> tuple[int, dict]:
    """A client that writes its body in `parts`, `pause_s` apart, then reads the answer."""
    host, port = fleet.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST /api/blobs/{DIGEST} HTTP/1.1\r\nHost: localhost\r\n".encode() + headers + b"\r\n")
    try:
        for part in parts:
            await asyncio.sleep(pause_s)  # the client's own pace, not a wait for the gateway
            writer.write(part)
            await writer.drain()
    except ConnectionError:
        pass  # refused before the client finished: the answer is already on its way
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    writer.close()
    return int(head.split(b" ", 2)[1]), orjson.loads(body)


def chunked(parts: list[bytes]) -> list[bytes]:
    return [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts] + [b"0\r\n\r\n"]


async def upload_ok(fleet) -> None:
    async with fleet.post(f"/api/blobs/{DIGEST}", data=DATA) as resp:
        assert resp.status == 201
    assert stored(fleet) == [{DIGEST: len(DATA)}] * len(fleet.workers), "every worker has the bytes as sent"


async def test_a_blob_over_body_mib_blobs_is_refused_before_or_while_it_arrives(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"),
                              config_extra="[server]\nbody_mib = { blobs = 1 }\n")
    status, body = await raw_upload(fleet, f"Content-Length: {2 * MIB}\r\n".encode(), [])
    assert status == 413 and "over the 1048576 byte limit (server.body_mib.blobs)" in body["error"]
    assert blob_calls(fleet) == 0, "a declared size over the limit reaches no worker"
    status, body = await raw_upload(fleet, b"Transfer-Encoding: chunked\r\n", chunked([b"x" * (256 * 1024)] * 6))
    assert status == 413 and "server.body_mib.blobs" in body["error"]
    assert stored(fleet) == [{}, {}], "the half-sent copies were dropped"
    await upload_ok(fleet)


async def test_a_stalled_blob_gets_408_after_body_timeout_s_and_leaves_nothing_behind(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), config_extra="[server]\nbody_timeout_s = 0.3\n")
    status, body = await raw_upload(fleet, f"Content-Length: {len(DATA)}\r\n".encode(), [DATA[:10]])
    assert status == 408 and body["error"].startswith("no blob bytes for 0.3s")
    assert stored(fleet) == [{}, {}]
    await upload_ok(fleet)


async def test_a_trickled_blob_gets_408_after_blob_timeout_s(start_fleet):
    """Each piece comes within body_timeout_s, but the whole does not come within blob_timeout_s."""
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"),
                              config_extra="[server]\nbody_timeout_s = 0.3\nblob_timeout_s = 0.8\n")
    status, body = await raw_upload(fleet, f"Content-Length: {len(DATA)}\r\n".encode(),
                                    [DATA[i:i + 10] for i in range(0, 200, 10)], pause_s=0.1)
    assert status == 408 and body["error"].startswith("blob not received within 0.8s")
    assert stored(fleet) == [{}, {}]
    await upload_ok(fleet)


async def test_a_content_encoded_blob_is_refused_not_expanded_onto_every_worker(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"))
    packed = gzip.compress(DATA)
    status, body = await raw_upload(fleet, f"Content-Encoding: gzip\r\nContent-Length: {len(packed)}\r\n".encode(),
                                    [packed])
    assert status == 415 and "must not be Content-Encoded" in body["error"]
    assert blob_calls(fleet) == 0
    await upload_ok(fleet)
