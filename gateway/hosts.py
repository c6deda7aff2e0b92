"""The Host check against DNS rebinding: listening on a loopback address, answer only requests
whose Host header names this machine, with 403 otherwise, as Ollama does (allowedHostsMiddleware).

A web page on an attacker's domain can re-point that domain's name to 127.0.0.1 and then drive a
loopback listener from the visitor's browser; its requests still carry `Host: attacker.example`.
A local client sends a local name or address. Allowed: an empty Host, `localhost`, this machine's
name, names ending in .localhost, .local or .internal, loopback, private and unspecified
addresses, and the names in BEACON_ALLOWED_HOSTS (`*` there turns the check off). On any other
listen address the gateway is meant to be reached by other names and there is no check.
Does not authenticate anyone. /health/live answers any Host: it says only "alive", and liveness
probes must not depend on the name they use.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from gateway.errors import Forbidden
from gateway.settings import Settings

log = structlog.get_logger("gateway.hosts")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOCAL_SUFFIXES = (".localhost", ".local", ".internal")
# Go's netip.Addr.IsPrivate (RFC 1918 and RFC 4193), which is narrower than Python's is_private.
_PRIVATE = tuple(ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_REFUSED = ("this gateway listens on a loopback address and answers only requests whose Host header names this "
            "machine (localhost, a .localhost/.local/.internal name, a loopback or private address); "
            "to allow another name, add it to BEACON_ALLOWED_HOSTS")


def host_check(settings: Settings) -> list:
    """The middleware list entry: the check when the gateway listens on loopback, else nothing."""
    extra = settings.extra_hosts
    if "*" in extra or not listens_on_loopback(settings.host_port[0]):
        return []
    machine = socket.gethostname().lower()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if request.path != "/health/live" and not allowed_host(host, machine, extra):
            log.info("request.refused", reason="host", host=host[:80])  # bounded: Host is client text
            raise Forbidden(_REFUSED)
        return await handler(request)

    return [middleware]


def listens_on_loopback(host: str) -> bool:
    """Whether the listen address is loopback; a name is resolved once, at start, as the bind will be."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    address = _address(name)
    if address is not None:
        return address.is_loopback
    try:
        found = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False  # the bind will fail with its own message
    addresses = [_address(str(entry[4][0])) for entry in found]
    return bool(addresses) and all(a is not None and a.is_loopback for a in addresses)


def allowed_host(header: str, machine: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether a request's Host header names this machine (see the module's docstring)."""
    host = hostname(header).lower().rstrip(".")
    address = _address(host)
    if address is not None:
        return address.is_loopback or address.is_unspecified or any(address in net for net in _PRIVATE) \
            or host in extra
    if host in ("", "localhost", machine) or host.endswith(LOCAL_SUFFIXES):
        return True
    return any(host == name or (name.startswith("*.") and host.endswith(name[1:])) for name in extra)


def hostname(header: str) -> str:
    """The Host header without its port: `name:port`, `[v6]:port`, `[v6]`, a bare v6 address or a name."""
    if header.startswith("["):
        end = header.find("]")
        return header[1:end] if end > 0 else header
    if header.count(":") == 1:
        return header.partition(":")[0]
    return header


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.partition("%")[0])  # a v6 zone (fe80::1%eth0) is not part of it
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # as Go's netip does before IsLoopback / IsPrivate
    return address
