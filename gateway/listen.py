"""The address a server listens on: check it before slow start-up work, and turn a bind failure
into one line that says what is wrong and what to do (`--listen HOST:PORT`).

No serving here (runner.py binds); only sockets that are opened and closed again at once.
"""

from __future__ import annotations

import errno
import socket


class CannotListen(Exception):
    """The address cannot be bound. str() is one line: what is wrong and what to do."""

    def __init__(self, text: str, in_use: bool = False) -> None:
        super().__init__(text)
        self.in_use = in_use  # another socket holds it (rather than: no such address, no permission)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def cannot_listen(host: str, port: int, exc: OSError) -> CannotListen:
    address = format_address(host, port)
    if exc.errno == errno.EADDRINUSE:
        who = "by Ollama itself, perhaps" if port == 11434 else "another program listens there"
        why = f"the address is already in use ({who})"
        todo = f"stop it or choose another address, e.g. --listen {format_address(host, _free_near(host, port))}"
    elif exc.errno == errno.EACCES:
        why = "permission denied (ports below 1024 need privileges)"
        todo = f"choose a higher port, e.g. --listen {format_address(host, 11500)}"
    elif isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        why = "this machine has no such address"
        todo = f"use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface), e.g. --listen 127.0.0.1:{port}"
    else:
        why = (exc.strerror or type(exc).__name__).lower()
        todo = "choose another address with --listen HOST:PORT"
    return CannotListen(f"cannot listen on {address}: {why}; {todo}", in_use=exc.errno == errno.EADDRINUSE)


def _bind_each(host: str, port: int) -> None:
    """Bind (and release) every address `host` resolves to, as the site will; OSError if one fails."""
    for family, kind, proto, _, address in socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE):
        with socket.socket(family, kind, proto) as sock:
            # as asyncio binds a site: TIME_WAIT is no clash, and IPv6 sockets leave IPv4 alone
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)


def _free_near(host: str, port: int) -> int:
    """A port to suggest: the first free one just above `port`."""
    for candidate in range(port + 1, min(port + 32, 65536)):
        try:
            _bind_each(host, candidate)
            return candidate
        except OSError:
            continue
    return 11500


def check_listen(host: str, port: int) -> None:
    """Raise CannotListen now if (host, port) cannot be bound, before slow start-up work is done."""
    try:
        _bind_each(host, port)
    except OSError as exc:
        raise cannot_listen(host, port, exc) from None
