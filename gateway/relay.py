"""Relaying one worker's answer to the client: the refusals every answer shares, and streams.

Before the first byte reaches the client any failure raises AttemptFailed (the proxy moves
on); after it, a failure ends the stream with one Ollama error line, or on the other fronts with
the front's own error event (backends.base.FrontAnswer.cut). Streams are written chunk by chunk as
they arrive (SSE in whole events); Ollama workers' bytes are never parsed on the way to Ollama
clients. Non-streamed answers are whole.py's.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from backends.answers import MALFORMED
from backends.base import AnswerTranslator, FrontAnswer, UpstreamCall
from backends.fronts import reply_of
from backends.streams import error_line
from backends.usage import NONE, Usage, ollama_line
from backends.worker_said import describe, error_detail
from gateway.inflight import Claim
from gateway.outcome import Asked, Ended, Relayed, timer

STREAM_TYPES = ("application/x-ndjson", "text/event-stream")
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
ACCOUNTED = frozenset({"chat", "generate"})


class AttemptFailed(Exception):
    """One candidate could not answer; `kind` says how (connect, timeout, status, busy, dropped,
    malformed, redirect, too_large): the failovers metric's reason."""

    def __init__(self, kind: str, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.status = kind, detail, status


async def refuse(resp: aiohttp.ClientResponse) -> None:
    """The answers that are failed attempts whatever was asked: a redirect (never followed: the
    session's middleware stops it first, this is the second guard) and a retryable status."""
    if 300 <= resp.status < 400:
        raise AttemptFailed("redirect", f"answered {resp.status}: a redirect, which the gateway never follows",
                            resp.status)
    if resp.status in RETRYABLE_STATUS:
        detail = await error_detail(resp)
        raise AttemptFailed("busy" if resp.status in (429, 503) else "status", detail, resp.status)


def streams(resp: aiohttp.ClientResponse, call: UpstreamCall) -> bool:
    """A stream is relayed as it arrives; embed/show answer one document even when typed NDJSON."""
    return resp.content_type in STREAM_TYPES and resp.status == 200 and call.whole is None


async def stream(request: web.Request, resp: aiohttp.ClientResponse, call: UpstreamCall, asked: Asked, worker: str,
                 claim: Claim, first_byte_s: float, idle_s: float, max_stream_s: float) -> Relayed:
    try:
        async with asyncio.timeout(first_byte_s):
            first = await resp.content.readany()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise AttemptFailed("dropped", f"stream failed before its first byte: {describe(exc)}") from None
    if not first:
        raise AttemptFailed("dropped", "stream ended before its first byte")
    ttfb_s = timer() - asked.started
    claim.first_byte()
    headers = reply_headers(resp, asked.request_id, worker)
    if call.translator:
        headers["Content-Type"] = "application/x-ndjson"
    elif call.reply is not None:  # a front's own events, passed through or translated from chat completions
        headers["Content-Type"] = "text/event-stream"
    out = web.StreamResponse(status=resp.status, headers=headers)
    await out.prepare(request)
    ended, usage = await _pump(out, resp, first, call, worker, idle_s, max_stream_s)
    return Relayed(out, resp.status, ttfb_s, ended, usage)


async def _pump(out: web.StreamResponse, resp: aiohttp.ClientResponse, chunk: bytes, call: UpstreamCall,
                worker: str, idle_s: float, max_s: float) -> tuple[Ended, Usage]:
    reply = reply_of(call)
    translator: AnswerTranslator | None = call.translator or reply
    ends_line, prev, last = True, b"", b""
    watchdog = Watchdog(idle_s, max_s)
    try:
        with watchdog:
            while chunk:
                data = _translated(translator.feed, chunk) if translator else chunk
                if data:
                    await out.write(data)
                    ends_line = data.endswith(b"\n")
                    prev, last = last, data  # the final line may straddle two chunks
                watchdog.fed()
                chunk = await resp.content.readany()
        if translator and (tail := _translated(translator.end)):
            await out.write(tail)
            prev, last = last, tail
    except ConnectionResetError:
        return Ended.CLIENT_GONE, NONE  # leaving `async with resp` closes upstream: generation stops
    except StreamTooLong as exc:
        await write_quietly(out, _cut_notice(reply, str(exc), ends_line))
        return Ended.TOO_LONG, NONE  # leaving `async with resp` closes upstream: the GPU slot frees
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        await write_quietly(out, _cut_notice(reply, f"worker {worker} failed mid-stream: {describe(exc)}", ends_line))
        return Ended.CUT, NONE
    if reply is not None:
        if not reply.finished:  # the worker closed the stream before its last event: the client must know
            await write_quietly(out, _cut_notice(reply, f"worker {worker} ended the stream early", True))
            return Ended.CUT, NONE
        usage = reply.usage() or NONE
    else:
        usage = ollama_line((prev + last).rstrip(b"\n").rpartition(b"\n")[2])
    await write_quietly(out, b"", eof=True)
    return Ended.OK, usage


def _translated(step, *chunk: bytes) -> bytes:
    """A translator step; an event of the wrong shape is the worker's malformed answer (ValueError),
    while errors of the relay's own code around it stay what they are."""
    try:
        return step(*chunk)
    except MALFORMED as exc:
        raise ValueError(f"malformed event: {describe(exc)}") from None


class Watchdog:
    """A stream's two deadlines (no chunk for idle_s; longer than max_s in all) with one timer per
    idle period instead of one per chunk: relaying a chunk only notes the time. On expiry it
    cancels the relaying task and turns that cancellation into TimeoutError or StreamTooLong;
    any other cancellation (the client went away) passes through untouched."""

    def __init__(self, idle_s: float, max_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._idle_s, self._max_s = idle_s, max_s
        self._deadline = self._loop.time() + max_s
        self._last = self._loop.time()
        self._task: asyncio.Task | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._fired: Exception | None = None

    def fed(self) -> None:
        self._last = self._loop.time()

    def __enter__(self) -> Watchdog:
        self._task = asyncio.current_task()
        self._arm()
        return self

    def _arm(self) -> None:
        self._handle = self._loop.call_at(min(self._last + self._idle_s, self._deadline), self._check)

    def _check(self) -> None:
        now = self._loop.time()
        if now >= self._deadline:
            self._fired = StreamTooLong(self._max_s)
        elif now - self._last >= self._idle_s:
            self._fired = TimeoutError(f"no data for {self._idle_s:g}s")
        if self._fired is None:
            self._arm()
        elif self._task is not None:
            self._task.cancel()

    def __exit__(self, kind, exc, tb) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self._fired is not None and kind is asyncio.CancelledError and self._task is not None:
            self._task.uncancel()
            raise self._fired from None


class StreamTooLong(Exception):
    def __init__(self, max_s: float) -> None:
        super().__init__(f"the stream ran past the gateway's limit of {max_s:g}s ([server] max_stream_s) and was ended")


def _cut_notice(reply: FrontAnswer | None, message: str, ends_line: bool) -> bytes:
    """What ends a stream a worker cut: the front's own error event (its reply keeps the stream at
    an event boundary), else on the Ollama front one error line on a line of its own."""
    if reply is not None:
        return reply.cut(message)
    return (b"" if ends_line else b"\n") + error_line(message)


def reply_headers(resp: aiohttp.ClientResponse, request_id: str, worker: str) -> dict[str, str]:
    headers = {"X-Request-ID": request_id, "X-Beacon-Worker": worker}
    if ctype := resp.headers.get("Content-Type"):
        headers["Content-Type"] = ctype
    return headers


async def write_quietly(out: web.StreamResponse, data: bytes, eof: bool = False) -> None:
    try:
        if data:
            await out.write(data)
        if eof:
            await out.write_eof()
    except ConnectionResetError:
        pass
