"""CORS and the Origin check, as Ollama does them (gin-contrib/cors v1.7.2 as Ollama's routes.go sets it up).

A browser sends `Origin` on every cross-origin request, and a web page may POST `text/plain` or a form
cross-origin without asking first (no preflight): without this check any page a user visits could pull,
copy, delete or run models on a gateway on their machine. So a request whose Origin is neither the
gateway's own (`http(s)://<Host>`, the status page's) nor an allowed origin gets 403 in its front API's
shape and reaches no handler; an `OPTIONS` preflight from an allowed origin gets 204 with the methods and
the request headers the ollama, OpenAI and Anthropic SDKs send; every other answer to an allowed origin
carries `Access-Control-Allow-Origin`, set when the response is prepared, so streams and errors carry it
too. A request without Origin (every client that is not a browser) passes at the cost of one lookup.
`/admin/*` answers no cross-origin request at all: the defaults allow any local page (any localhost port),
and operating the fleet is the CLI's job, never a web page's.

Allowed: Ollama's defaults plus BEACON_ORIGINS, or OLLAMA_ORIGINS when BEACON_ORIGINS is unset.
Does not authenticate anyone and does not judge Host: a DNS-rebinding page is same-origin to the
browser, so it passes here and the Host check (gateway/hosts.py, which runs first) refuses it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from multidict import CIMultiDict

from gateway.errors import Forbidden

log = structlog.get_logger("gateway.cors")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Ollama's envconfig.AllowedOrigins(), in its order.
DEFAULT_ORIGINS = tuple(
    f"{scheme}://{host}{port}" for host in ("localhost", "127.0.0.1", "0.0.0.0")
    for port in ("", ":*") for scheme in ("http", "https")
) + ("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")
# What gin-contrib/cors accepts for an origin without a "*" (with AllowBrowserExtensions, as Ollama sets it).
_SCHEMES = ("http://", "https://", "chrome-extension://", "safari-extension://", "moz-extension://",
            "ms-browser-extension://")
# Ollama's AllowHeaders, then what the OpenAI and Anthropic JS SDKs add (x-stainless-helper, the org and
# project headers, x-api-key, anthropic-*), and X-Request-ID, which the gateway honours.
ALLOW_HEADERS = ",".join((
    "Authorization", "Content-Type", "User-Agent", "Accept", "X-Requested-With",
    "Openai-Beta", "Openai-Organization", "Openai-Project",
    *(f"X-Stainless-{name}" for name in (
        "Arch", "Async", "Custom-Poll-Interval", "Helper", "Helper-Method", "Lang", "Os", "Package-Version",
        "Poll-Helper", "Retry-Count", "Runtime", "Runtime-Version", "Timeout")),
    "X-Api-Key", "Anthropic-Version", "Anthropic-Beta", "Anthropic-Dangerous-Direct-Browser-Access",
    "X-Request-Id",
))
ALLOW_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"  # gin-contrib/cors's default
MAX_AGE_S = "43200"  # gin-contrib/cors's default, 12 h (Chromium caps it at 2 h)
# Not in Ollama: browser clients may read these (SDK retries honour Retry-After; X-Request-ID for support).
EXPOSE_HEADERS = "Retry-After,X-Request-Id"
_ALLOWED = web.RequestKey("cors_allow_origin", str)
_REFUSED = ("this origin may not call the gateway from a browser: allowed are Ollama's defaults (http(s)://localhost, "
            "127.0.0.1 and 0.0.0.0 on any port, app://, file://, tauri://, vscode-webview://, vscode-file://) and "
            "the origins in BEACON_ORIGINS (or OLLAMA_ORIGINS)")
_ADMIN_REFUSED = "the admin API answers no cross-origin request: call it with beacon-gateway's commands or curl"


def parse_origins(text: str) -> tuple[str, ...]:
    """A comma list of origins as Ollama reads OLLAMA_ORIGINS, checked as gin-contrib/cors checks it at start.
    Raises ValueError naming the first bad entry (bounded: it is an operator's, but may be long)."""
    # A browser's Origin never ends in "/": Ollama keeps "http://x:3000/" and never matches it; we drop the "/".
    entries = [entry.strip().lower().removesuffix("/") for entry in text.strip().strip("\"'").split(",")]
    for entry in filter(None, entries):
        shown = entry if len(entry) <= 80 else entry[:80] + "..."
        if entry.count("*") > 1:
            raise ValueError(f"origin {shown!r} has more than one '*'")
        if "*" not in entry and not entry.startswith(_SCHEMES):
            raise ValueError(f"origin {shown!r} must contain '*' or start with one of {', '.join(_SCHEMES)}")
    return tuple(filter(None, entries))


class Origins:
    """Which Origin values may call the gateway: exact entries in a set, each "*" entry a prefix and a suffix."""

    def __init__(self, extra: tuple[str, ...] = ()) -> None:
        entries = (*extra, *DEFAULT_ORIGINS)
        self.allow_all = "*" in entries
        self.exact = frozenset(entry for entry in entries if "*" not in entry)
        self.wildcards = tuple(tuple(entry.split("*")) for entry in entries if "*" in entry)

    def allows(self, origin: str) -> bool:
        if self.allow_all or origin in self.exact:
            return True
        return any(origin.startswith(prefix) and origin.endswith(suffix) and len(origin) >= len(prefix) + len(suffix)
                   for prefix, suffix in self.wildcards)


def cors_middleware(origins: Origins) -> Callable:
    """The middleware: 403 for a foreign origin, 204 for an allowed preflight, a mark for on_prepare else."""
    allow_value = "*" if origins.allow_all else None  # gin answers "*" rather than the origin once "*" is listed

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:
            return await handler(request)
        host = request.headers.get("Host", "")
        if origin in (f"http://{host}", f"https://{host}"):  # same origin: the status page's own fetches
            return await handler(request)
        if request.path.startswith("/admin/"):
            log.info("request.refused", reason="origin", path="/admin", origin=origin[:80])
            raise Forbidden(_ADMIN_REFUSED)
        if not origins.allows(origin):
            log.info("request.refused", reason="origin", origin=origin[:80])  # bounded: Origin is client text
            raise Forbidden(_REFUSED)
        allow = allow_value or origin
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=preflight_headers(allow))
        request[_ALLOWED] = allow
        return await handler(request)

    return middleware


def preflight_headers(allow: str) -> CIMultiDict:
    headers = CIMultiDict({"Access-Control-Allow-Origin": allow, "Access-Control-Allow-Methods": ALLOW_METHODS,
                           "Access-Control-Allow-Headers": ALLOW_HEADERS, "Access-Control-Max-Age": MAX_AGE_S})
    if allow != "*":
        for name in ("Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"):
            headers.add("Vary", name)
    return headers


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """aiohttp's on_response_prepare: runs before the head is sent, whole answers and streams alike."""
    allow = request.get(_ALLOWED)
    if allow is None:
        return
    response.headers["Access-Control-Allow-Origin"] = allow
    response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    if allow != "*":
        response.headers.add("Vary", "Origin")
