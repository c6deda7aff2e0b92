"""Who may use the front API: client keys from `[[clients]]`, their model lists and their limits.

With no `[[clients]]` the front API is open (the default bind is 127.0.0.1). With clients,
every /api/* and /v1/* request needs `Authorization: Bearer <key>`; the config holds only
each key's SHA-256, so the file leaks nothing. Per client: allowed models (names or shell
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

from gateway.config import ClientConfig, RoutingConfig
from gateway.errors import Forbidden, TooManyRequests, Unauthorized

log = structlog.get_logger("gateway.access")
CLIENT = web.RequestKey("client", ClientConfig)
MANAGE_PATHS = ("/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete", "/api/blobs/")
_BEARER = {"WWW-Authenticate": 'Bearer realm="beacon-gateway"'}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def token_matches(request: web.Request, token: str) -> bool:
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
        key = bearer(request)
        if key is None:
            raise Unauthorized("an API key is required: send Authorization: Bearer <key>", headers=dict(_BEARER))
        digest = hash_key(key)
        client = next((c for c in config.clients if hmac.compare_digest(c.key_sha256, digest)), None)
        if client is None:
            raise Unauthorized("unknown API key", headers=dict(_BEARER))
        return client

    def admit(self, client: ClientConfig, path: str) -> None:
        """Checks that need no body: model management rights and the request-rate limit."""
        if path.startswith(MANAGE_PATHS) and not client.manage:
            raise Forbidden(f"client {client.name!r} may not manage models ({path}); set manage = true for it")
        if client.requests_per_minute:
            now, window = self._clock(), self._recent.setdefault(client.name, deque())
            while window and now - window[0] >= 60.0:
                window.popleft()
            if len(window) >= client.requests_per_minute:
                wait = math.ceil(60.0 - (now - window[0]))
                raise TooManyRequests(f"client {client.name!r} is over its {client.requests_per_minute} requests "
                                      "per minute", wait)
            window.append(now)

    def enter(self, client: ClientConfig) -> None:
        """Take one of the client's concurrent-request places, or refuse with 429."""
        count = self._inflight.get(client.name, 0)
        if client.max_concurrent and count >= client.max_concurrent:
            raise TooManyRequests(f"client {client.name!r} already has {count} requests in flight "
                                  f"(max_concurrent {client.max_concurrent})", 1)
        self._inflight[client.name] = count + 1

    def leave(self, client: ClientConfig) -> None:
        self._inflight[client.name] -= 1



def allow_model(request: web.Request, model: str) -> None:
    """403 when the request's client may not use `model` (canonical name)."""
    client = request.get(CLIENT)
    if client is None or not client.models:
        return
    if not any(fnmatch.fnmatchcase(model, pattern) or fnmatch.fnmatchcase(model.removesuffix(":latest"), pattern)
               for pattern in client.models):
        raise Forbidden(f"client {client.name!r} may not use model {model!r}")


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
    from gateway.context import GATEWAY  # the context imports handlers; import at call time

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
        access.admit(client, path)
        access.enter(client)
    except (Forbidden, TooManyRequests) as exc:  # refused before any handler could count it
        reason = "rate_limited" if isinstance(exc, TooManyRequests) else "forbidden"
        gw.metrics.requests.labels(_endpoint_label(request), "none", "none", reason).inc()
        log.info("request.refused", client=client.name, path=path, reason=reason, error=exc.message)
        raise
    try:
        return await handler(request)
    finally:
        access.leave(client)


def _endpoint_label(request: web.Request) -> str:
    """The metrics label of a refused request: its route, never the raw path (client input, unbounded)."""
    resource = request.match_info.route.resource
    if resource is None:
        return "unknown"
    path = resource.canonical
    return path if path.startswith("/v1/") else path.removeprefix("/api/")
