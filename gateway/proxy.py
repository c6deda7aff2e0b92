"""Runs a Plan: send to each candidate in turn, fail over before the first byte, relay.

Before any byte reached the client, a connect error, a 5xx/429, a timeout or a dropped
answer moves on to the next candidate. Once bytes flow they are relayed as they arrive;
a stream cut by the worker ends with one Ollama error line. Never decides where to go
(that is router.choose) and never writes the snapshot except the one passive-health report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson
import structlog
from aiohttp import web

from backends.streams import error_line
from gateway import state
from gateway.errors import NoCapacity, UpstreamFailed, UpstreamTimeout
from gateway.inflight import Claim, InFlight
from gateway.metrics import Metrics
from gateway.router import Candidate, Plan
from gateway.state import SnapshotHolder

log = structlog.get_logger("gateway.proxy")

STREAM_TYPES = ("application/x-ndjson", "text/event-stream")
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class AttemptFailed(Exception):
    """One candidate could not answer; `kind` says how (connect, timeout, status, dropped)."""

    def __init__(self, kind: str, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.status = kind, detail, status


@dataclass(slots=True)
class Outcome:
    """What happened to one request, for the request.done line and metrics."""

    request_id: str
    endpoint: str
    model: str
    started: float
    worker: str = ""
    reason: str = ""
    outcome: str = "error"
    status: int = 0
    ttfb_s: float | None = None
    attempts: list[str] = field(default_factory=list)
    session: str | None = None
    tokens: int | None = None
    load_s: float | None = None
    service_s: float | None = None


@dataclass(frozen=True, slots=True)
class Upstream:
    """The request as sent to a worker: same path and bytes for Ollama workers."""

    method: str
    path: str
    body: bytes
    headers: dict[str, str]


class Proxy:
    def __init__(self, session: aiohttp.ClientSession, holder: SnapshotHolder, inflight: InFlight,
                 metrics: Metrics, clock: Callable[[], float] = time.monotonic,
                 on_release: Callable[[str], None] = lambda model: None) -> None:
        self._session, self._holder, self._inflight = session, holder, inflight
        self._metrics, self._clock, self._on_release = metrics, clock, on_release

    async def run(self, request: web.Request, plan: Plan, upstream: Upstream, outcome: Outcome) -> web.StreamResponse:
        snap = self._holder.current
        failover = snap.config.failover
        failures: list[AttemptFailed] = []
        for candidate in plan.candidates[: failover.max_attempts]:
            worker = snap.worker(candidate.worker)
            if worker is None:
                continue
            outcome.worker, outcome.reason = worker.name, candidate.reason
            try:
                with self._inflight.claim(worker.name, plan.model, self._clock()) as claim:
                    response = await self._attempt(request, worker.url, upstream, outcome, claim)
                    self._committed(plan, candidate, outcome)
                    return response
            except AttemptFailed as exc:
                failures.append(exc)
                outcome.attempts.append(f"{worker.name}: {exc.detail}")
                self._report_failure(worker.name, exc)
            finally:
                self._on_release(plan.model)
        raise _final_error(plan, failures, outcome, snap.config.server.retry_after_s)

    def _committed(self, plan: Plan, candidate: Candidate, outcome: Outcome) -> None:
        if outcome.outcome == "ok":
            busy_s = outcome.service_s  # the worker's own prompt + decode time: no queueing, no load
            if busy_s is None:
                busy_s = max(0.0, time.monotonic() - outcome.started - (outcome.load_s or 0.0))
            self._inflight.finished(plan.model, busy_s, outcome.load_s)
            self._inflight.remember_session(outcome.session, candidate.worker)
        if candidate.loads:
            self._metrics.loads.labels(candidate.worker, plan.model, candidate.reason).inc()
            log.info("model.load", worker=candidate.worker, model=plan.model, reason=candidate.reason,
                     evicts=list(candidate.evicts) or None, load_s=outcome.load_s)

    async def _attempt(self, request: web.Request, base_url: str, up: Upstream, outcome: Outcome,
                       claim: Claim) -> web.StreamResponse:
        failover = self._holder.current.config.failover
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=failover.connect_timeout_s)
        try:
            async with asyncio.timeout(failover.first_byte_timeout_s):
                resp = await self._session.request(up.method, base_url + up.path, data=up.body,
                                                   headers=up.headers, timeout=timeout)
        except TimeoutError:
            raise AttemptFailed("timeout", f"no answer within {failover.first_byte_timeout_s:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise AttemptFailed("connect", f"cannot connect: {exc.os_error.strerror or exc.os_error}") from None
        except aiohttp.ClientError as exc:
            raise AttemptFailed("dropped", f"connection failed: {_describe(exc)}") from None
        async with resp:
            return await self._answer(request, resp, outcome, failover, claim)

    async def _answer(self, request: web.Request, resp: aiohttp.ClientResponse, outcome: Outcome,
                      failover, claim: Claim) -> web.StreamResponse:
        if resp.status in RETRYABLE_STATUS:
            detail = await _error_detail(resp)
            raise AttemptFailed("busy" if resp.status in (429, 503) else "status", detail, resp.status)
        if resp.content_type in STREAM_TYPES and resp.status == 200:
            return await self._relay_stream(request, resp, outcome, failover, claim)
        try:
            async with asyncio.timeout(failover.first_byte_timeout_s):
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AttemptFailed("dropped", f"answer cut short: {_describe(exc)}") from None
        outcome.ttfb_s = time.monotonic() - outcome.started
        outcome.status, outcome.outcome = resp.status, "ok" if resp.status < 400 else "client_error"
        if resp.status == 200 and outcome.endpoint in ACCOUNTED:
            read_final_fields(body, outcome)
        return web.Response(status=resp.status, body=body, headers=_reply_headers(resp, outcome))

    async def _relay_stream(self, request: web.Request, resp: aiohttp.ClientResponse, outcome: Outcome,
                            failover, claim: Claim) -> web.StreamResponse:
        try:
            async with asyncio.timeout(failover.first_byte_timeout_s):
                first = await resp.content.readany()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AttemptFailed("dropped", f"stream failed before its first byte: {_describe(exc)}") from None
        if not first:
            raise AttemptFailed("dropped", "stream ended before its first byte")
        outcome.ttfb_s = time.monotonic() - outcome.started
        claim.first_byte()
        out = web.StreamResponse(status=resp.status, headers=_reply_headers(resp, outcome))
        await out.prepare(request)
        outcome.status = resp.status
        await self._pump(out, resp, first, outcome, failover.stream_idle_timeout_s)
        return out

    async def _pump(self, out: web.StreamResponse, resp: aiohttp.ClientResponse, chunk: bytes,
                    outcome: Outcome, idle_s: float) -> None:
        ends_line, prev, last = True, b"", b""
        try:
            while chunk:
                await out.write(chunk)
                ends_line = chunk.endswith(b"\n")
                prev, last = last, chunk  # the final line may straddle two chunks
                async with asyncio.timeout(idle_s):
                    chunk = await resp.content.readany()
        except ConnectionResetError:
            outcome.outcome = "client_gone"  # leaving `async with resp` closes upstream: generation stops
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome.outcome = "cut"
            message = f"worker {outcome.worker} failed mid-stream: {_describe(exc)}"
            await _write_quietly(out, (b"" if ends_line else b"\n") + error_line(message))
            return
        outcome.outcome = "ok"
        read_final_fields((prev + last).rstrip(b"\n").rpartition(b"\n")[2], outcome)
        await _write_quietly(out, b"", eof=True)

    def _report_failure(self, worker: str, exc: AttemptFailed) -> None:
        self._metrics.failovers.labels(reason=exc.kind).inc()
        if exc.kind == "connect":
            now = self._clock()
            self._holder.update(lambda s: state.with_failure(s, worker, exc.detail, now))


ACCOUNTED = frozenset({"chat", "generate"})


def read_final_fields(line: bytes, outcome: Outcome) -> None:
    """Tokens and load time from an Ollama final line: parsed once per request, not per chunk."""
    if b'"done":true' not in line.replace(b" ", b""):
        return
    try:
        final = orjson.loads(line)
    except orjson.JSONDecodeError:
        return
    if isinstance(final, dict):
        count, load_ns = final.get("eval_count"), final.get("load_duration")
        prompt_ns, eval_ns = final.get("prompt_eval_duration"), final.get("eval_duration")
        outcome.tokens = count if isinstance(count, int) else None
        outcome.load_s = load_ns / 1e9 if isinstance(load_ns, int) else None
        if isinstance(prompt_ns, int) and isinstance(eval_ns, int):
            outcome.service_s = (prompt_ns + eval_ns) / 1e9


def _final_error(plan: Plan, failures: list[AttemptFailed], outcome: Outcome, retry_after_s: int) -> Exception:
    summary = "; ".join(outcome.attempts) or "no worker could be tried"
    kinds = {f.kind for f in failures}
    if not failures or kinds <= {"connect", "busy"}:
        outcome.outcome, outcome.status = "no_capacity", 503
        return NoCapacity(f"no worker can serve model {plan.model!r} now ({summary})", retry_after_s)
    if kinds == {"timeout"}:
        outcome.outcome, outcome.status = "timeout", 504
        return UpstreamTimeout(f"workers timed out for model {plan.model!r} ({summary})")
    outcome.outcome, outcome.status = "upstream_error", 502
    return UpstreamFailed(f"every worker failed for model {plan.model!r} ({summary})")


async def _error_detail(resp: aiohttp.ClientResponse) -> str:
    try:
        async with asyncio.timeout(2):
            body = await resp.content.read(4096)
        message = orjson.loads(body).get("error")
        if isinstance(message, dict):
            message = message.get("message")
    except Exception:  # the detail is best effort; the status already says it failed
        message = None
    return f"{resp.status} {message}" if message else f"answered {resp.status}"


def _reply_headers(resp: aiohttp.ClientResponse, outcome: Outcome) -> dict[str, str]:
    headers = {"X-Request-ID": outcome.request_id, "X-Beacon-Worker": outcome.worker}
    if ctype := resp.headers.get("Content-Type"):
        headers["Content-Type"] = ctype
    return headers


async def _write_quietly(out: web.StreamResponse, data: bytes, eof: bool = False) -> None:
    try:
        if data:
            await out.write(data)
        if eof:
            await out.write_eof()
    except ConnectionResetError:
        pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
