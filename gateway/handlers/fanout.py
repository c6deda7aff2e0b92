"""Sending one management request to many workers: plain calls, merged progress, tee uploads.

Pure plumbing for handlers/manage.py: it decides nothing about which workers are targets.
A worker that is down, unreachable or answers an error becomes a failed Result naming it;
nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from backends.streams import LineTooLong, NdjsonSplitter, error_line
from backends.worker_said import describe, error_detail
from gateway.context import Gateway
from gateway.errors import UpstreamFailed, error_response
from gateway.outcome import Ended, Relayed
from gateway.state import WorkerView

Emit = Callable[[str, dict], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Result:
    worker: str
    ok: bool
    status: int | None = None
    detail: str = ""


def _timeout(gw: Gateway, *, progress: bool) -> aiohttp.ClientTimeout:
    """`[manage]`'s timeouts for one worker's call: a progress stream or upload, or a plain answer."""
    manage = gw.holder.current.config.manage
    read_s = manage.progress_idle_timeout_s if progress else manage.answer_timeout_s
    return aiohttp.ClientTimeout(total=None, sock_connect=manage.connect_timeout_s, sock_read=read_s)


async def send_each(gw: Gateway, method: str, path: str, targets: list[WorkerView], payload: Any) -> list[Result]:
    body = None if payload is None else orjson.dumps(payload)
    return list(await asyncio.gather(*(_send_one(gw, method, path, w, body) for w in targets)))


async def _send_one(gw: Gateway, method: str, path: str, worker: WorkerView, body: bytes | None) -> Result:
    if not worker.up:
        return Result(worker.name, False, None, "worker is down")
    try:
        async with gw.session.request(method, worker.url + path, data=body, timeout=_timeout(gw, progress=False),
                                      headers=worker.config.auth_headers(), allow_redirects=False) as resp:
            detail = "" if resp.status < 400 else await error_detail(resp)
            return Result(worker.name, resp.status < 400, resp.status, detail)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Result(worker.name, False, None, describe(exc))


async def run_progress(request: web.Request, gw: Gateway, path: str, targets: list[WorkerView],
                       payload: dict) -> Relayed:
    """Run a progress operation on every target; stream merged progress or answer once.
    The targets are re-probed before the last line, so a client that hears success sees the model listed."""
    streaming = payload.get("stream", True) is not False
    body = orjson.dumps({**payload, "stream": True})
    out = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"}) if streaming else None
    lock = asyncio.Lock()

    async def emit(worker: str, line: dict) -> None:
        if out is None:
            return
        async with lock:
            if not out.prepared:
                await out.prepare(request)
            await out.write(orjson.dumps({**line, "worker": worker}) + b"\n")

    results = await asyncio.gather(*(_progress_one(gw, path, w, body, emit) for w in targets))
    await gw.prober.refresh(w.name for w in targets)
    failed = [r for r in results if not r.ok]
    message, status = _failure_message(path, failed, len(results)), _failure_status(failed, len(results))
    if failed and (out is None or not out.prepared):  # every emit is done: nothing else can start the stream
        return _failed_whole(request, message, status)
    if out is None:
        return Relayed(web.json_response({"status": "success"}), 200, None, Ended.OK)
    async with lock:
        if not out.prepared:
            await out.prepare(request)
        await out.write(error_line(message) if failed else b'{"status":"success"}\n')
        await out.write_eof()
    # A stream that failed once it had begun is 200 on the wire, and the failure's status in the record.
    return Relayed(out, status, None, Ended.FAILED) if failed else Relayed(out, 200, None, Ended.OK)


async def _progress_one(gw: Gateway, path: str, worker: WorkerView, body: bytes, emit: Emit) -> Result:
    if not worker.up:
        return Result(worker.name, False, None, "worker is down")
    try:
        async with gw.session.post(worker.url + path, data=body, timeout=_timeout(gw, progress=True),
                                   headers=worker.config.auth_headers(), allow_redirects=False) as resp:
            if resp.status != 200:
                return Result(worker.name, False, resp.status, await error_detail(resp))
            return await _read_progress(worker.name, resp, emit)
    except (aiohttp.ClientError, TimeoutError, LineTooLong) as exc:
        return Result(worker.name, False, None, describe(exc))


async def _read_progress(worker: str, resp: aiohttp.ClientResponse, emit: Emit) -> Result:
    splitter, succeeded = NdjsonSplitter(max_line=1024 * 1024), False
    async for chunk in resp.content.iter_any():
        for line in splitter.feed(chunk):
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError:
                return Result(worker, False, 200, "malformed progress line")
            if not isinstance(item, dict):
                continue
            if "error" in item:
                return Result(worker, False, 200, str(item["error"])[:300])
            if item.get("status") == "success":
                succeeded = True
            else:
                await emit(worker, item)
    return Result(worker, succeeded, 200, "" if succeeded else "progress ended without success")


def _failure_message(path: str, failed: list[Result], total: int) -> str:
    op = path.rsplit("/", 1)[-1]
    return f"{op} failed on {len(failed)} of {total} workers: " + "; ".join(f"{r.worker}: {r.detail}" for r in failed)


def _failure_status(failed: list[Result], total: int) -> int:
    """The status of a progress operation that failed. Every target refusing alike with a 4xx (a bad
    name, say) is the client's error, passed on. Every target failing otherwise is a 500, Ollama's
    answer to a pull, push or create that failed. Some failing while the others succeeded is a 502:
    half done is a failure of the gateway's fleet, one a single Ollama cannot have."""
    if len(failed) < total:
        return 502
    statuses = {r.status for r in failed}
    if len(statuses) == 1 and (status := statuses.pop()) and 400 <= status < 500:
        return status
    return 500


def _failed_whole(request: web.Request, message: str, status: int) -> Relayed:
    """A failure known before any progress line went out: one answer with its status and the
    front's error body, as Ollama answers a non-streamed operation and, since 0.12.6, a stream that
    fails before its first line. Returned, not raised: the record must say the workers failed (a
    refusal passed on, or an upstream error), where a raised 500 would count as the gateway's own fault."""
    ended = Ended.CLIENT_ERROR if status < 500 else Ended.FAILED
    return Relayed(error_response(request.path, status, message), status, None, ended)


async def tee_upload(gw: Gateway, chunks: AsyncIterator[bytes], path: str, workers: list[WorkerView]) -> list[Result]:
    """Stream one uploaded body to every healthy worker at once, without holding it in memory.
    `chunks` enforces the client's limits: whatever it raises stops every worker's upload."""
    targets = [w for w in workers if w.up]
    if not targets:
        raise UpstreamFailed("no healthy worker to upload the blob to")
    queues: list[asyncio.Queue[bytes | None]] = [asyncio.Queue(maxsize=4) for _ in targets]
    alive = [True] * len(targets)

    async def body(i: int):
        while (chunk := await queues[i].get()) is not None:
            yield chunk

    async def upload(i: int, worker: WorkerView) -> Result:
        try:
            async with gw.session.post(worker.url + path, data=body(i), timeout=_timeout(gw, progress=True),
                                       headers=worker.config.auth_headers(), allow_redirects=False) as resp:
                ok = resp.status in (200, 201)
                return Result(worker.name, ok, resp.status, "" if ok else await error_detail(resp))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Result(worker.name, False, None, describe(exc))
        finally:
            alive[i] = False
            while not queues[i].empty():  # unblock a feeder waiting on this worker's full queue
                queues[i].get_nowait()

    async def feed() -> None:
        async for chunk in chunks:
            for i, queue in enumerate(queues):
                if alive[i]:
                    await queue.put(chunk)
        for i, queue in enumerate(queues):
            if alive[i]:
                await queue.put(None)

    uploads = [asyncio.create_task(upload(i, w)) for i, w in enumerate(targets)]
    try:
        await feed()
    except BaseException:  # the client went away or broke a limit: stop every worker's half-sent upload
        for task in uploads:
            task.cancel()
        await asyncio.gather(*uploads, return_exceptions=True)
        raise
    return list(await asyncio.gather(*uploads))
