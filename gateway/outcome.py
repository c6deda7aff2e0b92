"""One request's record, as typed values each written by its one owner.

- `Asked`: what the front read from the request (endpoint, model, stream, the token budget,
  conversation and client), built once by handlers/inference.py before any routing.
- `Trail`: what the proxy tried (the worker it committed to, why, the attempts that failed):
  written only by proxy.Proxy.run.
- `Relayed`: what the relay returns once an answer has been sent (status, first-byte time, how it
  ended, the worker's usage): frozen, made by relay.py or whole.py.
- `Outcome`: assembled from those in one place (`outcome_of`) and read by metrics and the
  `request.done` line; the learning rules read the same `Relayed`.

Two clocks, named: the routing clock is injected (`Gateway.clock`: claims, sessions, health, so
tests can move time), while latency is measured on `timer` (time.monotonic, never faked: a
request's duration and time to first byte are real seconds).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from aiohttp import web

from backends.usage import NONE, Usage

if TYPE_CHECKING:
    from gateway.load_options import LoadOptions

timer = time.monotonic  # the latency timer; the routing clock is Gateway.clock


class Ended(StrEnum):
    """How a relayed answer ended, once the client had its first byte (or its whole answer)."""

    OK = "ok"
    CLIENT_ERROR = "client_error"  # the worker answered 4xx: passed on, not a failover
    CLIENT_GONE = "client_gone"  # the client hung up; upstream closed so generation stops
    TOO_LONG = "too_long"  # ran past [server] max_stream_s and was ended
    CUT = "cut"  # the worker failed mid-answer; the client was told
    FAILED = "upstream_error"  # a fan-out's progress stream that some worker failed; the last line says so


class Kind(StrEnum):
    """The `outcome` label of metrics and request.done: how a relayed answer ended, or why none was."""

    OK = "ok"
    CLIENT_ERROR = "client_error"
    CLIENT_GONE = "client_gone"
    TOO_LONG = "too_long"
    CUT = "cut"
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    TIMEOUT = "timeout"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    NO_CAPACITY = "no_capacity"
    UPSTREAM_ERROR = "upstream_error"
    ERROR = "error"  # a fault of the gateway's own: never the default for "not known yet"


_REFUSALS = {400: Kind.BAD_REQUEST, 401: Kind.UNAUTHORIZED, 403: Kind.FORBIDDEN, 404: Kind.NOT_FOUND,
             408: Kind.TIMEOUT, 413: Kind.TOO_LARGE, 429: Kind.RATE_LIMITED, 502: Kind.UPSTREAM_ERROR,
             503: Kind.NO_CAPACITY, 504: Kind.TIMEOUT}


def refusal(status: int) -> Kind:
    """The outcome of a request the gateway answered with an error of its own."""
    return _REFUSALS.get(status, Kind.ERROR)


@dataclass(frozen=True, slots=True)
class Asked:
    """What the front read: `endpoint` as backends name it (chat, generate, embed, completions...),
    `label` the endpoint in metrics, `model` resolved to its canonical name, whether the answer
    streams, and `predict`, the tokens the answer may generate, computed once here and used by
    both the plan and the timeout (0 for answers that generate nothing)."""

    request_id: str
    label: str
    endpoint: str
    model: str
    started: float  # on `timer`
    stream: bool = False
    predict: int = 0
    session: str | None = None
    client: str | None = None  # the client key's name, when keys are configured
    priority: str = "interactive"  # the client key's priority class: interactive | batch
    queued_s: float | None = None  # planning, and waiting in the model's queue when every copy was busy
    options: LoadOptions | None = None  # load-time options as the worker gets them; None: it loads nothing


@dataclass(slots=True)
class Trail:
    """What the proxy tried for one request. Written only by Proxy.run."""

    worker: str = ""
    reason: str = ""
    attempts: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Relayed:
    """An answer the client has (or had started to get): what the relay returns."""

    response: web.StreamResponse
    status: int
    ttfb_s: float | None
    ended: Ended
    usage: Usage = NONE


@dataclass(frozen=True, slots=True)
class Outcome:
    """One finished request, for metrics and the request.done line."""

    label: str
    model: str
    kind: Kind
    status: int
    duration_s: float
    worker: str = ""
    reason: str = ""
    ttfb_s: float | None = None
    tokens: int | None = None
    attempts: tuple[str, ...] = ()
    client: str | None = None
    priority: str = "interactive"
    queued_s: float | None = None


def outcome_of(asked: Asked, trail: Trail, relayed: Relayed | None, error: BaseException | None) -> Outcome:
    """The one place a request's outcome is decided: the relay's ending when an answer went out,
    else the status of the error the gateway answered with (499, nginx's number, when the client
    hung up first); anything else is the gateway's own fault."""
    if relayed is not None:
        kind, status = Kind(relayed.ended.value), relayed.status
    elif isinstance(error, asyncio.CancelledError):  # the client went away before any answer
        kind, status = Kind.CLIENT_GONE, 499
    elif (status := getattr(error, "status", 0)) and isinstance(status, int):
        kind = refusal(status)
    else:
        kind, status = Kind.ERROR, 500
    return Outcome(asked.label, asked.model, kind, status, timer() - asked.started, trail.worker, trail.reason,
                   relayed.ttfb_s if relayed else None, relayed.usage.tokens if relayed else None,
                   tuple(trail.attempts), asked.client, asked.priority, asked.queued_s)
