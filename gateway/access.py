"""Who may use the front API: client keys from `[[clients]]`, their model lists and their limits.

With no `[[clients]]` the front API is open (the default bind is 127.0.0.1). With clients,
every /api/* and /v1/* request needs `Authorization: Bearer <key>` (or Anthropic's `x-api-key`);
the config holds only each key's SHA-256, so the file leaks nothing. Per client: allowed models (names or shell
patterns), model management on or off, concurrent requests, requests per minute (sliding
60 s window), refused with 429 and Retry-After. Keys and tokens are never logged.
Does not route; handlers call `allow_model` once they know the model.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from gateway.cluster import Cluster
from gateway.config import ClientConfig, RoutingConfig
from gateway.context import GATEWAY
from gateway.errors import Forbidden, TooManyRequests, Unauthorized

log = structlog.get_logger("gateway.access")
CLIENT = web.RequestKey("client", ClientConfig)
MANAGE_PATHS = ("/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete", "/api/blobs/")
_BEARER = {"WWW-Authenticate": 'Bearer realm="beacon-gateway"'}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(request: web.Request) -> str | None:
    """The bearer token the request carries, or None: also when the header is not UTF-8. aiohttp
    keeps such bytes as lone surrogates, which no key can match and which no `.encode()` survives."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    token = value.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return _text(token)


def client_key(request: web.Request) -> str | None:
    """A client's key: its bearer token, else Anthropic's `x-api-key` header (what Claude Code and the
    anthropic SDKs send given an API key). Only client keys are read there: never the admin or metrics token."""
    found = bearer(request)
    if found is None and (given := request.headers.get("x-api-key", "").strip()):
        return _text(given)
    return found


def _text(token: str) -> str | None:
    try:
        token.encode()
    except UnicodeEncodeError:
        return None
    return token


def token_matches(request: web.Request, token: str) -> bool:
    """Whether the request carries `token` (the metrics or admin token), compared in constant time."""
    given = bearer(request)
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class Access:
    """Per-client live counters; the client list itself is read from the config on every request,
    so a reload adds, changes and removes keys at once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._inflight: dict[str, int] = {}
        self._recent: dict[str, deque[float]] = {}

    def identify(self, config: RoutingConfig, request: web.Request) -> ClientConfig | None:
        """The client behind the request; None when keys are not required. Raises 401 otherwise."""
        if not config.clients:
            return None
        key = client_key(request)
        if key is None:
            raise Unauthorized("an API key is required: send Authorization: Bearer <key>", headers=dict(_BEARER))
        digest = hash_key(key)
        client = next((c for c in config.clients if hmac.compare_digest(c.key_sha256, digest)), None)
        if client is None:
            raise Unauthorized("unknown API key", headers=dict(_BEARER))
        return client

    async def admit(self, client: ClientConfig, path: str, cluster: Cluster | None = None) -> bool:
        """Checks that need no body: the management right, the concurrency cap, the request rate.
        Only a request that passes all three takes a place and counts against the rate: one turned
        away here costs nothing (a max_concurrent refusal must not use up requests_per_minute), while
        one let in counts even if its body is then refused (400, 403), since reading and judging it
        was work and a loop of bad requests must not be free.

        With replicas sharing state the limits hold fleet-wide, counted in Redis; while Redis is out
        of reach each replica counts alone. Returns whether the place was taken in Redis (pass it to
        `leave`)."""
        if path.startswith(MANAGE_PATHS) and not client.manage:
            route = "/api/blobs" if path.startswith("/api/blobs/") else path  # the digest part is client text
            raise Forbidden(f"client {client.name!r} may not manage models ({route}); set manage = true for it")
        if cluster is not None and cluster.shared and (client.max_concurrent or client.requests_per_minute):
            shared = await self._admit_shared(client, cluster)
            if shared:
                return True
        self._admit_local(client)
        return False

    async def _admit_shared(self, client: ClientConfig, cluster: Cluster) -> bool:
        """Fleet-wide limits; False when Redis did not answer (the caller counts locally)."""
        total = await cluster.enter(client.name, client.max_concurrent)
        if total is None:
            return False
        if total < 0:
            raise TooManyRequests(f"client {client.name!r} already has {-total} requests in flight across the "
                                  f"gateway's replicas (max_concurrent {client.max_concurrent})", 1)
        wait = await cluster.rate(client.name, client.requests_per_minute) if client.requests_per_minute else 0.0
        if wait:
            await cluster.leave(client.name)
            raise TooManyRequests(f"client {client.name!r} is over its {client.requests_per_minute} requests "
                                  "per minute", math.ceil(wait))
        return True

    def _admit_local(self, client: ClientConfig) -> None:
        window = self._window(client)
        if client.requests_per_minute and len(window) >= client.requests_per_minute:
            wait = math.ceil(60.0 - (self._clock() - window[0]))
            raise TooManyRequests(f"client {client.name!r} is over its {client.requests_per_minute} requests "
                                  "per minute", wait)
        count = self._inflight.get(client.name, 0)
        if client.max_concurrent and count >= client.max_concurrent:
            raise TooManyRequests(f"client {client.name!r} already has {count} requests in flight "
                                  f"(max_concurrent {client.max_concurrent})", 1)
        self._inflight[client.name] = count + 1
        if client.requests_per_minute:
            window.append(self._clock())

    def _window(self, client: ClientConfig) -> deque[float]:
        """The client's admissions in the last 60 s (a sliding window)."""
        now, window = self._clock(), self._recent.setdefault(client.name, deque())
        while window and now - window[0] >= 60.0:
            window.popleft()
        return window

    async def leave(self, client: ClientConfig, shared: bool, cluster: Cluster | None = None) -> None:
        if shared and cluster is not None:
            await cluster.leave(client.name)
        else:
            self._inflight[client.name] -= 1


def allow_model(request: web.Request, model: str) -> None:
    """403 when the request's client may not use `model` (canonical name)."""
    client = request.get(CLIENT)
    if client is None or not client.models:
        return
    if not any(name_matches(model, pattern) or name_matches(model.removesuffix(":latest"), pattern)
               for pattern in client.models):
        raise Forbidden(f"client {client.name!r} may not use model {model!r}")


def name_matches(model: str, pattern: str) -> bool:
    """A shell pattern whose wildcards stay within one `/` part of the name: `qwen*` must not match
    `qwen.evil.com/ns/model`, which Ollama reads as a model on another registry host."""
    parts, wanted = model.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True))


def allowed_models(request: web.Request, names: list[str]) -> list[str]:
    """The subset of `names` the request's client may see (listings)."""
    client = request.get(CLIENT)
    if client is None or not client.models:
        return names
    keep = []
    for name in names:
        try:
            allow_model(request, name)
        except Forbidden:
            continue
        keep.append(name)
    return keep


ACCESS = web.AppKey("access", Access)


@web.middleware
async def access_middleware(request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    path = request.path
    if path == "/metrics" and gw.settings.metrics_token is not None:
        if not token_matches(request, gw.settings.metrics_token.get_secret_value()):
            raise Unauthorized("/metrics needs its bearer token (BEACON_METRICS_TOKEN)", headers=dict(_BEARER))
        return await handler(request)
    if not path.startswith(("/api/", "/v1/")):
        return await handler(request)
    access = request.app[ACCESS]
    try:
        client = access.identify(gw.holder.current.config, request)
    except Unauthorized as exc:
        gw.metrics.requests.labels(_endpoint_label(request), "none", "none", "unauthorized").inc()
        log.info("request.refused", path=path, reason="unauthorized", error=exc.message)
        raise
    if client is None:
        return await handler(request)
    request[CLIENT] = client
    try:
        shared = await access.admit(client, path, gw.cluster)
    except (Forbidden, TooManyRequests) as exc:  # refused before any handler could count it
        reason = "rate_limited" if isinstance(exc, TooManyRequests) else "forbidden"
        gw.metrics.requests.labels(_endpoint_label(request), "none", "none", reason).inc()
        log.info("request.refused", client=client.name, path=path, reason=reason, error=exc.message)
        raise
    try:
        return await handler(request)
    finally:
        await access.leave(client, shared, gw.cluster)


def _endpoint_label(request: web.Request) -> str:
    """The metrics label of a refused request: its route, never the raw path (client input, unbounded)."""
    resource = request.match_info.route.resource
    if resource is None:
        return "unknown"
    path = resource.canonical
    return path if path.startswith("/v1/") else path.removeprefix("/api/")
