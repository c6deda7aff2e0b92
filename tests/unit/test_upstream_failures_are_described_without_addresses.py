"""Every way a call to a worker can fail is described without the worker's address: aiohttp's own
texts carry host and port ("Connect call failed ('10.0.0.5', 11434)") or the URL, and these
descriptions reach clients' 502/503 bodies, stream error lines and /health."""

import socket

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from backends.upstream import AnswerTooLarge, UpstreamRedirect
from backends.worker_said import describe

WORKER = URL("http://user:pw@10.0.0.5:11434/api/chat")
INFO = aiohttp.RequestInfo(WORKER, "POST", CIMultiDictProxy(CIMultiDict()), WORKER)
KEY = aiohttp.client_reqrep.ConnectionKey("10.0.0.5", 11434, False, True, None, None, None)


@pytest.mark.parametrize(("exc", "says"), [
    (aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(111, "Connect call failed ('10.0.0.5', 11434)")),
     "cannot connect: Connection refused"),
    (aiohttp.ClientConnectorError(KEY, OSError(113, "Connect call failed ('10.0.0.5', 11434)")),
     "cannot connect: No route to host"),
    (aiohttp.ClientConnectorDNSError(KEY, socket.gaierror(-2, "Name or service not known")),
     "cannot connect: Name or service not known"),
    (aiohttp.ConnectionTimeoutError(f"Connection timeout to host {WORKER}"), "connect timed out"),
    (aiohttp.ServerTimeoutError(f"Timeout on reading data from socket {WORKER}"), "timed out"),
    (aiohttp.ClientOSError(104, "Connection reset by peer ('10.0.0.5', 11434)"), "Connection reset by peer"),
    (aiohttp.ServerDisconnectedError(), "ServerDisconnectedError"),
    (aiohttp.ClientResponseError(INFO, (), status=500, message="boom"), "answered 500"),
    (UpstreamRedirect(INFO, (), status=307, message="redirect"), "answered 307: a redirect"),
    (AnswerTooLarge(256 * 1024, "[health] max_probe_kib"), "answer larger than 256 KiB ([health] max_probe_kib)"),
    (aiohttp.InvalidURL(WORKER), "InvalidURL"),
    (aiohttp.ClientPayloadError("Response payload is not completed"), "ClientPayloadError"),
    (TimeoutError(), "timed out"),
])
def test_a_failure_says_what_happened_and_never_where(exc, says):
    text = describe(exc)
    assert says in text
    for address in ("10.0.0.5", "11434", "user", "pw", "http://"):
        assert address not in text, text
