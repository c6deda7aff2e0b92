"""Relaying one worker's answer to the client: the refusals every answer shares, and streams.

Before the first byte reaches the client any failure raises AttemptFailed (the proxy moves
on); after it, a failure ends the stream with one Ollama error line, or on /v1 with one SSE
error event. Streams are written chunk by chunk as they arrive (SSE in whole events); Ollama
workers' bytes are never parsed on the way. Non-streamed answers are whole.py's.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
from aiohttp import web

from backends import openai_front
from backends.answers import MALFORMED
from backends.base import UpstreamCall
from backends.streams import error_line
from backends.upstream import ERROR_DETAIL_BYTES, describe, worker_json
from gateway.inflight import Claim

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


def take_usage(usage: openai_front.Usage | None, outcome) -> None:
    if usage is not None:
        outcome.tokens, outcome.eval_s, outcome.service_s = usage.tokens, usage.eval_s, usage.service_s


async def stream(request, resp, call: UpstreamCall, outcome, claim: Claim, failover,
                 first_byte_s: float, max_stream_s: float) -> web.StreamResponse:
    try:
        async with asyncio.timeout(first_byte_s):
            first = await resp.content.readany()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise AttemptFailed("dropped", f"stream failed before its first byte: {describe(exc)}") from None
    if not first:
        raise AttemptFailed("dropped", "stream ended before its first byte")
    outcome.ttfb_s = time.monotonic() - outcome.started
    claim.first_byte()
    headers = reply_headers(resp, outcome)
    if call.translator:
        headers["Content-Type"] = "application/x-ndjson"
    out = web.StreamResponse(status=resp.status, headers=headers)
    await out.prepare(request)
    outcome.status = resp.status
    await _pump(out, resp, first, call, outcome, failover.stream_idle_timeout_s, max_stream_s)
    return out


async def _pump(out: web.StreamResponse, resp: aiohttp.ClientResponse, chunk: bytes, call: UpstreamCall,
                outcome, idle_s: float, max_s: float) -> None:
    translator = call.translator or (openai_front.SseRelay() if call.front == "openai" else None)
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
        outcome.outcome = "client_gone"  # leaving `async with resp` closes upstream: generation stops
        return
    except StreamTooLong as exc:
        outcome.outcome = "too_long"  # leaving `async with resp` closes upstream: the GPU slot frees
        await write_quietly(out, _cut_notice(call, str(exc), ends_line))
        return
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        outcome.outcome = "cut"
        message = f"worker {outcome.worker} failed mid-stream: {describe(exc)}"
        await write_quietly(out, _cut_notice(call, message, ends_line))
        return
    if isinstance(translator, openai_front.SseRelay):
        if not translator.finished:  # the worker closed the stream without [DONE]: the client must know
            outcome.outcome = "cut"
            await write_quietly(out, _cut_notice(call, f"worker {outcome.worker} ended the stream early", True))
            return
        take_usage(translator.usage(), outcome)
    else:
        read_final_fields((prev + last).rstrip(b"\n").rpartition(b"\n")[2], outcome)
    outcome.outcome = "ok"
    await write_quietly(out, b"", eof=True)


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


def _cut_notice(call: UpstreamCall, message: str, ends_line: bool) -> bytes:
    """What ends a stream a worker cut: one SSE error event on /v1 (SseRelay keeps the stream at an
    event boundary), else one Ollama error line on a line of its own."""
    if call.front == "openai":
        return openai_front.sse_error(message)
    return (b"" if ends_line else b"\n") + error_line(message)


def read_final_fields(line: bytes, outcome) -> None:
    """Tokens, load and service time from an Ollama final line: parsed once per request, not per chunk."""
    if b'"done":true' not in line.replace(b" ", b""):
        return
    try:
        final = worker_json(line)
    except ValueError:  # not JSON, or too costly to parse: accounting goes without it
        return
    if isinstance(final, dict):
        apply_final(final, outcome)


def apply_final(final: dict, outcome) -> None:
    """The accounting fields of an Ollama final answer (eval_count, the durations) onto the outcome."""
    count, load_ns = final.get("eval_count"), final.get("load_duration")
    prompt_ns, eval_ns = final.get("prompt_eval_duration"), final.get("eval_duration")
    outcome.tokens = count if isinstance(count, int) else None
    outcome.load_s = load_ns / 1e9 if isinstance(load_ns, int) else None
    if isinstance(prompt_ns, int) and isinstance(eval_ns, int):
        outcome.service_s = (prompt_ns + eval_ns) / 1e9
        outcome.eval_s = eval_ns / 1e9 if eval_ns > 0 else None
        total_ns = final.get("total_duration")
        if isinstance(total_ns, int) and total_ns > 0:  # what is left of the total was waiting at the worker
            outcome.queued_s = max(0.0, (total_ns - prompt_ns - eval_ns - (load_ns or 0)) / 1e9)


async def error_detail(resp: aiohttp.ClientResponse) -> str:
    """A failed answer's status and the worker's own message, read from its first bytes only."""
    try:
        async with asyncio.timeout(2):
            body = await resp.content.read(ERROR_DETAIL_BYTES)
        message = orjson.loads(body).get("error")
        if isinstance(message, dict):
            message = message.get("message")
    except Exception:  # the detail is best effort; the status already says it failed
        message = None
    return f"{resp.status} {str(message)[:300]}" if message else f"answered {resp.status}"


def reply_headers(resp: aiohttp.ClientResponse, outcome) -> dict[str, str]:
    headers = {"X-Request-ID": outcome.request_id, "X-Beacon-Worker": outcome.worker}
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
