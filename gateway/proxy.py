"""Runs a Plan: prepare the request for each candidate's kind, send, fail over before the first byte.

Before any byte reached the client, a connect error, a 5xx/429, a redirect (never followed),
a timeout, an answer over its size cap or a dropped answer moves on to the next candidate
(relay.py relays streams, whole.py non-streamed answers). A non-streamed attempt never runs
past [server] max_answer_s, however many tokens it asks for. Never decides where to go (that
is router.choose) and never writes the snapshot except the one passive-health report of a
refused connection. What clients read names workers, never their addresses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import structlog
from aiohttp import web

from backends import for_kind
from backends.base import FrontRequest, UpstreamCall
from backends.translate import Unsupported
from backends.upstream import UpstreamRedirect
from backends.worker_said import describe
from gateway import state, vram, whole
from gateway.cluster import Cluster
from gateway.errors import BadRequest, NoCapacity, UpstreamFailed, UpstreamTimeout
from gateway.inflight import Claim, InFlight, RetryBudget
from gateway.metrics import Metrics
from gateway.outcome import Asked, Ended, Relayed, Trail, timer
from gateway.relay import AttemptFailed, refuse, stream, streams
from gateway.router import Candidate, Plan, Reason
from gateway.shared_load import SharedLoad
from gateway.state import Snapshot, SnapshotHolder, WorkerView

log = structlog.get_logger("gateway.proxy")


class Proxy:
    def __init__(self, session: aiohttp.ClientSession, holder: SnapshotHolder, inflight: InFlight | SharedLoad,
                 metrics: Metrics, clock: Callable[[], float] = time.monotonic,
                 on_release: Callable[[str], None] = lambda model: None, cluster: Cluster | None = None) -> None:
        self._session, self._holder, self._inflight = session, holder, inflight
        self._cluster = cluster or Cluster.alone()
        self._metrics, self._clock, self._on_release = metrics, clock, on_release
        self._budget = RetryBudget(clock)
        # (worker, front API) -> the version it reported when it said it has no such route: one entry a
        # worker and API at most, whatever versions a worker claims
        self._no_route: dict[tuple[str, str], str | None] = {}

    async def run(self, request: web.Request, snap: Snapshot, plan: Plan, front: FrontRequest, asked: Asked,
                  trail: Trail) -> Relayed:
        """The answer from the first candidate that gives one, relayed; else the error that says why
        none did. `snap` is the snapshot the plan was made from: one config for the whole request."""
        failover = snap.config.failover
        failures: list[AttemptFailed] = []
        refusals: list[str] = []
        self._budget.request()
        for candidate in plan.candidates[: failover.max_attempts]:
            worker = snap.worker(candidate.worker)
            if worker is None:
                continue
            if failures and not self._budget.allow_retry(failover.retry_budget_ratio, failover.retry_budget_min_per_s):
                trail.attempts.append("retry budget exhausted: not retrying while the fleet is failing")
                self._metrics.failovers.labels(reason="budget_exhausted").inc()
                break
            if (call := self._prepared(worker, front, asked, request, refusals)) is None:
                continue
            loading = None
            if candidate.loads and self._cluster.shared:
                chosen = worker
                worker, candidate, loading = await self._single_flight(snap, plan, candidate, worker)
                if worker is not chosen and (call := self._prepared(worker, front, asked, request, refusals)) is None:
                    continue  # sent to the copy another replica is loading: prepared for that worker's kind
            trail.worker, trail.reason = worker.name, candidate.reason
            try:
                with self._inflight.claim(worker.name, plan.model, self._clock()) as claim:
                    self._inflight.evicting(worker.name, candidate.evicts, self._clock())
                    self._inflight.sent_options(worker.name, plan.model, asked.options, self._clock())
                    timeout_s, late = self._deadline(snap, plan, candidate, asked, worker)
                    try:
                        relayed = await self._attempt(request, snap, worker, call, asked, claim, timeout_s, late)
                    except AttemptFailed as exc:
                        if exc.kind != "no_route":
                            raise
                        call = self._without_route(worker, front, asked, request, exc)
                        relayed = await self._attempt(request, snap, worker, call, asked, claim, timeout_s, late)
                    self._committed(snap, plan, candidate, asked, relayed, claim)
                    return relayed
            except AttemptFailed as exc:
                failures.append(exc)
                trail.attempts.append(f"{worker.name}: {exc.detail}")
                self._report_failure(worker.name, exc)
            finally:
                self._on_release(plan.model)
                if loading is not None:  # loaded (its first byte came) or failed: the next placement decides afresh
                    self._cluster.later(self._cluster.release_load(plan.model, loading))
        if refusals and not failures:
            raise BadRequest("; ".join(refusals))
        raise _final_error(plan, failures, trail, snap.config.server.retry_after_s)

    def _prepared(self, worker: WorkerView, front: FrontRequest, asked: Asked, request: web.Request,
                  refusals: list[str]) -> UpstreamCall | None:
        """The request as `worker` takes it, or None (and why, in `refusals`) when its kind cannot."""
        try:
            return prepare(worker, front, asked.request_id, request.headers.get("Authorization"),
                           self._native(worker, front))
        except Unsupported as exc:
            refusals.append(f"{worker.name} ({worker.config.kind}): {exc}")
            return None

    def _native(self, worker: WorkerView, front: FrontRequest) -> bool:
        """Whether a front's own route may be asked of this worker: not once it said it has none
        (until its reported version changes, or the gateway restarts)."""
        key = (worker.name, front.api)
        return key not in self._no_route or self._no_route[key] != worker.version

    def _without_route(self, worker: WorkerView, front: FrontRequest, asked: Asked, request: web.Request,
                       failed: AttemptFailed) -> UpstreamCall:
        """The worker has no such route (an older llama-server or Ollama than its kind and version
        suggested): remember it, and the same request translated for its chat endpoint instead."""
        self._no_route[(worker.name, front.api)] = worker.version
        self._metrics.failovers.labels(reason="no_route").inc()
        log.warning("front.translated", worker=worker.name, api=front.api, path=front.path,
                    reason="the worker has no such route; its requests are translated from now on")
        try:
            return prepare(worker, front, asked.request_id, request.headers.get("Authorization"), native=False)
        except Unsupported:
            raise failed from None

    async def _single_flight(self, snap: Snapshot, plan: Plan, candidate: Candidate,
                             worker: WorkerView) -> tuple[WorkerView, Candidate, str | None]:
        """A cold load, with replicas sharing state: load it here only if no other replica is loading
        the model already; else send this request to the copy being loaded (one load for the whole
        fleet, not one per replica). Returns the worker, its candidate and the load lock we hold."""
        ttl_s = snap.config.failover.first_byte_s(worker.tier) + self._load_allowance(snap, plan, candidate)
        holder = await self._cluster.claim_load(plan.model, worker.name, ttl_s)
        if holder == worker.name:
            return worker, candidate, worker.name
        other = snap.worker(holder)
        if other is None or not other.serving:
            return worker, candidate, None  # that load's worker is gone: load here, without the lock
        return other, Candidate(other.name, Reason.SHARED_LOAD), None

    def _deadline(self, snap: Snapshot, plan: Plan, candidate: Candidate, asked: Asked,
                  worker: WorkerView) -> tuple[float, str]:
        """Seconds this attempt may take before its first byte, and the words for running out. A
        non-streamed answer's first byte is its whole answer: its allowance for generation grows
        with num_predict, so [server] max_answer_s bounds it (a hung worker frees its slot then)."""
        first_byte_s = snap.config.failover.first_byte_s(worker.tier)
        timeout_s = (first_byte_s + self._load_allowance(snap, plan, candidate)
                     + self._whole_answer_allowance(snap, asked, worker, plan.model))
        ceiling_s = max(snap.config.server.max_answer_s, first_byte_s)  # never below what the operator set there
        if not asked.stream and timeout_s > ceiling_s:
            return ceiling_s, f"no whole answer within {ceiling_s:g}s ([server] max_answer_s)"
        return timeout_s, f"no answer within {timeout_s:g}s"

    def _load_allowance(self, snap: Snapshot, plan: Plan, candidate: Candidate) -> float:
        """A cold load takes time before the first byte: the timeout waits that much longer."""
        if not candidate.loads:
            return 0.0
        return vram.predicted_load_s(snap, plan.model, self._inflight.load_s(plan.model))

    def _whole_answer_allowance(self, snap: Snapshot, asked: Asked, worker: WorkerView, model: str) -> float:
        """A non-streamed answer's first byte comes when the whole generation is done: allow for its
        token budget (the same one the plan used), at the worker's measured decode rate (the
        configured CPU rate until measured). A stream's first byte is its first token."""
        if asked.stream or asked.predict <= 0:
            return 0.0
        rate = self._inflight.decode_rate(worker.name, model) or self._inflight.worker_rate(worker.name)
        return asked.predict / (rate or snap.config.cpu.tokens_per_s)

    def _committed(self, snap: Snapshot, plan: Plan, candidate: Candidate, asked: Asked, relayed: Relayed,
                   claim: Claim) -> None:
        """What an answer teaches: the worker is healthy, and from a whole answer its service time,
        load time, slots and decode rate (the learning rules, each reading the worker's own usage)."""
        now, usage = self._clock(), relayed.usage
        self._holder.update(lambda s: state.with_outcome(s, candidate.worker, True, now))
        if relayed.ended is Ended.OK:
            busy_s = usage.service_s  # the worker's own prompt + decode time: no queueing, no load
            if busy_s is None:
                busy_s = max(0.0, timer() - asked.started - (usage.load_s or 0.0))
            self._inflight.finished(plan.model, busy_s, usage.load_s)
            self._inflight.remember_session(asked.session, candidate.worker)
            # Ollama's queue time leaves out load_duration: a request that waited behind a load would look unqueued.
            if (usage.queued_s is not None and usage.service_s and usage.queued_s < 0.1 * usage.service_s
                    and (usage.load_s or 0.0) < 0.05):
                self._inflight.learn_slots(candidate.worker, plan.model, claim.peers)
            if usage.tokens and usage.tokens >= 4 and usage.eval_s:  # a token or two time nothing reliably
                degraded = snap.config.degraded
                self._inflight.record_rate(candidate.worker, plan.model, usage.tokens / usage.eval_s,
                                           degraded.slow_decode_factor, degraded.slow_verdict_s, claim.peers)
        if candidate.loads:
            self._metrics.count_load(snap, candidate.worker, plan.model, candidate.reason)
            log.info("model.load", worker=candidate.worker, model=plan.model, reason=candidate.reason,
                     evicts=list(candidate.evicts) or None, load_s=usage.load_s)

    async def _attempt(self, request: web.Request, snap: Snapshot, worker: WorkerView, call: UpstreamCall,
                       asked: Asked, claim: Claim, first_byte_s: float, late: str) -> Relayed:
        failover, server = snap.config.failover, snap.config.server
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=failover.connect_timeout_s)
        started = timer()
        try:
            async with asyncio.timeout(first_byte_s):
                resp = await self._send(call, worker.url, timeout)
        except TimeoutError:
            raise AttemptFailed("timeout", late) from None
        except UpstreamRedirect as exc:
            raise AttemptFailed("redirect", describe(exc), exc.status) from None
        except aiohttp.ClientConnectorError as exc:
            raise AttemptFailed("connect", describe(exc)) from None
        except aiohttp.ClientError as exc:
            raise AttemptFailed("dropped", f"connection failed: {describe(exc)}") from None
        remaining_s = max(0.1, first_byte_s - (timer() - started))
        async with resp:
            await refuse(resp)
            if streams(resp, call):
                return await stream(request, resp, call, asked, worker.name, claim, remaining_s,
                                    failover.stream_idle_timeout_s, server.max_stream_s)
            return await whole.answer(request, resp, call, asked, worker.name, remaining_s, server.max_answer_bytes,
                                      failover.stream_idle_timeout_s, late)

    async def _send(self, call: UpstreamCall, base_url: str, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        """The request on a pooled connection; once or twice more when that connection turns out closed
        before any answer (llama-server closes its connection after a streamed answer without saying
        so, and a connection reused at once fails: "Server disconnected" / "Can not write request body")."""
        for retry in range(3):
            try:
                return await self._session.request(call.method, base_url + call.path, data=call.body,
                                                   headers=call.headers, timeout=timeout, allow_redirects=False)
            except aiohttp.ClientConnectorError:
                raise
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                if retry == 2:
                    raise
        raise AssertionError("unreachable")

    def _report_failure(self, worker: str, exc: AttemptFailed) -> None:
        self._metrics.failovers.labels(reason=exc.kind).inc()
        now = self._clock()
        if exc.kind == "connect":
            self._holder.update(lambda s: state.with_failure(s, worker, exc.detail, now))
        elif exc.kind != "busy":  # a full queue is not a sick worker
            self._holder.update(lambda s: state.with_outcome(s, worker, False, now))


def prepare(worker: WorkerView, front: FrontRequest, request_id: str, client_auth: str | None = None,
            native: bool = True) -> UpstreamCall:
    """The request as this worker's kind takes it, under the worker's own id for the model. The
    client's own Authorization goes on only to a worker configured to receive it."""
    call = for_kind(worker.config.kind).prepare(front, worker.upstream_id(front.model), version=worker.version,
                                                native=native)
    call.headers.setdefault("Content-Type", "application/json")
    call.headers["X-Request-ID"] = request_id
    if client_auth and worker.config.forward_client_auth:
        call.headers["Authorization"] = client_auth
    call.headers.update(worker.config.auth_headers())
    return call


def _final_error(plan: Plan, failures: list[AttemptFailed], trail: Trail, retry_after_s: int) -> Exception:
    summary = "; ".join(trail.attempts + ([plan.note] if plan.note else [])) or "no worker could be tried"
    kinds = {f.kind for f in failures}
    if not failures or kinds <= {"connect", "busy"}:
        return NoCapacity(f"no worker can serve model {plan.model!r} now ({summary})", retry_after_s)
    if kinds == {"timeout"}:
        return UpstreamTimeout(f"workers timed out for model {plan.model!r} ({summary})")
    return UpstreamFailed(f"every worker failed for model {plan.model!r} ({summary})")
