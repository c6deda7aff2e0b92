"""An Authorization header whose bytes are not UTF-8 is a wrong key like any other: 401 in the
front's own shape on /api/*, /v1/*, /metrics (BEACON_METRICS_TOKEN) and /admin/* (BEACON_ADMIN_TOKEN),
never a 500, and the gateway keeps serving. The bytes go on the wire as sent, through a raw socket."""

import asyncio
import json

import pytest

from gateway.access import hash_key
from tests.conftest import WorkerSpec

KEY, ADMIN, METRICS = "app-key-0123456789abcdef", "admin-token-0123456789", "metrics-token-0123456789"
CLIENTS = f"""
[[clients]]
name = "app"
key_sha256 = "{hash_key(KEY)}"
"""
BAD_VALUES = [b"Bearer \xff\xfe", b"Bearer " + KEY.encode() + b"\x80", b"\xc3\x28 " + KEY.encode(),
              b"Bearer \xed\xa0\x80"]  # a lone surrogate, encoded
ROUTES = [
    ("POST", "/api/generate", b'{"model": "llama3.2:1b", "prompt": "x", "stream": false}'),
    ("GET", "/api/tags", b""),
    ("POST", "/v1/chat/completions", b'{"model": "llama3.2:1b", "messages": [{"role": "user", "content": "x"}]}'),
    ("GET", "/v1/models", b""),
    ("GET", "/metrics", b""),
    ("POST", "/admin/explain", b'{"model": "llama3.2:1b"}'),
    ("POST", "/admin/workers/gpu0/drain", b""),
]


async def raw_request(url: str, method: str, path: str, authorization: bytes, body: bytes) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n".encode()
                     + b"Authorization: " + authorization + b"\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload


@pytest.fixture
async def fleet(start_fleet):
    return await start_fleet(WorkerSpec("gpu0"), config_extra=CLIENTS, admin_token=ADMIN,
                             settings={"metrics_token": METRICS})


@pytest.mark.parametrize("value", BAD_VALUES)
async def test_every_guarded_route_answers_401_in_its_own_shape(fleet, value):
    answers = {path: await raw_request(fleet.url, method, path, value, body) for method, path, body in ROUTES}
    assert {path: status for path, (status, _) in answers.items()} == dict.fromkeys(answers, 401)
    for path, (_, payload) in answers.items():
        error = json.loads(payload)["error"]
        assert (error["message"] and error["type"] == "authentication_error") if path.startswith("/v1/") else error
    assert not fleet.gateway.holder.current.workers["gpu0"].drained


async def test_the_right_tokens_still_pass_and_the_gateway_keeps_serving(fleet):
    for method, path, body in ROUTES[:-1]:  # not the drain: it would take the only worker out
        token = ADMIN if path.startswith("/admin/") else METRICS if path == "/metrics" else KEY
        status, payload = await raw_request(fleet.url, method, path, b"Bearer " + token.encode(), body)
        assert status == 200, (path, payload[:300])
