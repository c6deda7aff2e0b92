"""Hostile requests on every front endpoint: wrong types, huge numbers, NaN literals, deep nesting,
invalid UTF-8, NUL bytes, enormous strings, odd model names, wrong headers, odd methods.

For each example: no 500, an error in the front API's shape, an answer within BOUND_S, no task or
pooled connection left over, and the gateway still serves a normal request.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from hypothesis import assume, example, given
from hypothesis import strategies as st

from tests.fuzz.conftest import FUZZ, MODEL, TOKEN, Baseline, assert_front_shape, call, raw_call, still_serves

DIGEST = "sha256:" + "a" * 64
MSGS = [{"role": "user", "content": "x"}]
# (method, path, a valid body): each example breaks one of them
ENDPOINTS = [
    ("POST", "/api/generate", {"model": MODEL, "prompt": "x", "stream": False, "options": {"num_predict": 2}}),
    ("POST", "/api/chat", {"model": MODEL, "messages": MSGS, "stream": False, "options": {"num_predict": 2}}),
    ("POST", "/api/embed", {"model": "all-minilm", "input": "x"}),
    ("POST", "/api/embeddings", {"model": "all-minilm", "prompt": "x"}),
    ("POST", "/api/show", {"model": MODEL}),
    ("POST", "/api/pull", {"model": "fuzz:1", "stream": False}),
    ("POST", "/api/push", {"model": MODEL, "stream": False}),
    ("POST", "/api/create", {"model": "fuzz:2", "from": MODEL, "stream": False}),
    ("POST", "/api/copy", {"source": MODEL, "destination": "fuzz:3"}),
    ("DELETE", "/api/delete", {"model": "fuzz:3"}),
    ("POST", f"/api/blobs/{DIGEST}", {"blob": "bytes"}),
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": MSGS, "max_tokens": 2}),
    ("POST", "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 2}),
    ("POST", "/v1/embeddings", {"model": "all-minilm", "input": "x"}),
    ("POST", "/admin/explain", {"model": MODEL, "prompt_tokens": 3}),
    ("POST", "/admin/workers/gpu0/warm", {"model": MODEL}),
    ("POST", "/admin/workers/oai0/unload", {"model": MODEL}),
    ("POST", "/admin/reload", {}),
]

ODD_NAMES = st.sampled_from([
    "", " ", "../../etc/passwd", "..", "/", "a" * 5000, "模型:最新", "😀", ":", "a:b:c", "a b", "ctl\x01\x7f",
    "nul\x00", "\n", "llama3.2", "LLAMA3.2:1B", "llama3.2:1b:", ":latest", "hf.co/org/m:q4", "%2e%2e", "\ud7ff",
]) | st.text(max_size=40)

HUGE = st.sampled_from([1e308, -1e308, 2**64, -(2**64), 2**63, 2**1000, -0.0, 0, -1, 5e-324, 1.7976931348623157e308])
SCALARS = st.none() | st.booleans() | st.integers() | HUGE | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=30)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=3), max_leaves=8)
FIELDS = st.sampled_from(["model", "name", "prompt", "messages", "input", "options", "stream", "format", "keep_alive",
                          "max_tokens", "max_completion_tokens", "n", "stop", "temperature", "tools", "response_format",
                          "stream_options", "source", "destination", "from", "session", "prompt_tokens",
                          "num_predict", "encoding_format", "dimensions", "images", "raw", "system", "template"])

LIMIT = int(0.25 * 1024 * 1024)
KNOWN_BODIES = [
    b"", b" ", b"\n\n", b"null", b"[]", b"0", b'"model"', b"NaN", b"Infinity", b"-Infinity",
    b'{"model": NaN}', b'{"model": "llama3.2:1b", "options": {"num_predict": Infinity}}',
    b'{"model": "llama3.2:1b", "max_tokens": 1e308}', b'{"model": "llama3.2:1b", "max_tokens": -0}',
    b'{"model": "llama3.2:1b", "options": {"num_predict": 18446744073709551616}}',
    b'{"model": "llama3.2:1b", "prompt_tokens": 18446744073709551616}',
    b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    b'{"model": "llama3.2:1b", "prompt": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    b'{"model": "\xff\xfe"}', b'{"model": "llama3.2:1b", "prompt": "\xc3\x28"}', b"\xef\xbb\xbf{}",
    b'{"model": "llama3.2:1b\x00"}', b'{"model": "llama3.2:1b"}\x00', b"\x00" * 64,
    b'{"model": "llama3.2:1b", "model": 7}', b'{"model": "llama3.2:1b",}', b"{'model': 'x'}",
    b'{"model": "llama3.2:1b", "prompt": "' + b"x" * (LIMIT - 100) + b'", "stream": false}',
    b'{"model": "llama3.2:1b", "prompt": "' + b"x" * (LIMIT + 10) + b'"}',
    b'{"model": "llama3.2:1b", "prompt": "\\ud800"}', b'{"model": "\\u0000"}',
]
RAW_BODIES = st.sampled_from(KNOWN_BODIES)
CONTENT_TYPES = st.sampled_from(["application/json", "text/plain", None, "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x", "application/json; charset=latin-1", "*/*"])


def dumps(value: object) -> bytes:
    """Python's JSON, not orjson: it writes integers past 64 bits, as a hostile client would."""
    return json.dumps(value).encode()


@st.composite
def bodies(draw, template: dict) -> bytes:
    how = draw(st.sampled_from(["field", "model", "raw", "extra", "whole"]))
    data = dict(template)
    if how == "field":
        data[draw(FIELDS)] = draw(JSON)
    elif how == "model":
        data[draw(st.sampled_from(["model", "name", "source", "destination"]))] = draw(ODD_NAMES)
    elif how == "raw":
        return draw(RAW_BODIES)
    elif how == "extra":
        data.update(draw(st.dictionaries(st.text(max_size=10), JSON, max_size=4)))
    else:
        return dumps(draw(JSON))
    return dumps(data)


def headers_for(path: str, content_type: str | None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {TOKEN}"} if path.startswith("/admin/") else {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


async def judged(fleet, method: str, path: str, body: bytes | None, content_type: str | None = "application/json"):
    base = Baseline(fleet)
    reply = await call(fleet.url, method, path, body, headers_for(path, content_type))
    assert_front_shape(path, reply)
    await base.settled(f"{method} {path}")
    await still_serves(fleet)
    return reply


@FUZZ
@given(data=st.data())
async def test_hostile_bodies_on_every_endpoint(fleet, data):
    method, path, template = data.draw(st.sampled_from(ENDPOINTS), label="endpoint")
    body = data.draw(bodies(template), label="body")
    if path == "/api/delete":  # deleting the model every other example serves is not hostile input
        assume(b"llama3.2" not in body.lower())
    content_type = data.draw(CONTENT_TYPES, label="content_type")
    await judged(fleet, method, path, body, content_type)


@FUZZ
@given(name=ODD_NAMES, where=st.sampled_from(["v1model", "blob_head", "blob_post", "admin_worker"]))
async def test_odd_names_in_paths(fleet, name, where):
    encoded = quote(name, safe="")
    assume(encoded)
    method, path, body = {
        "v1model": ("GET", f"/v1/models/{encoded}", None),
        "blob_head": ("HEAD", f"/api/blobs/{encoded}", None),
        "blob_post": ("POST", f"/api/blobs/{encoded}", b"x"),
        "admin_worker": ("POST", f"/admin/workers/{encoded}/drain", b""),
    }[where]
    reply = await judged(fleet, method, path, body)
    if where == "admin_worker" and reply.status == 200:  # an odd name that is a real worker: put it back
        await call(fleet.url, "POST", f"/admin/workers/{encoded}/undrain", b"", headers_for("/admin/", None))


PATHS = ["/", "/api/version", "/api/tags", "/api/ps", "/api/generate", "/api/chat", "/api/embed", "/api/show",
         "/api/pull", "/api/delete", f"/api/blobs/{DIGEST}", "/v1/chat/completions", "/v1/models", "/v1/models/x",
         "/health", "/metrics", "/status", "/admin/explain", "/admin/reload", "/nowhere", "/api/../api/tags",
         "/v1/", "/api/generate/"]


@FUZZ
@given(method=st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "POST", "TRACE", "PROPFIND"]),
       path=st.sampled_from(PATHS))
async def test_odd_methods(fleet, method, path):
    await judged(fleet, method, path, None, None)


# Framing that lies: the head says one thing, the body another. Errors aiohttp's own HTTP parser raises
# (a malformed head) are answered before any handler runs, so only our own answers are held to the shape.
LIES = st.sampled_from([
    b"Content-Length: 100\r\n\r\n{}",  # promises more than it sends: the body timer ends it
    b"Content-Length: 1\r\n\r\n{}",  # sends more than it promised
    b"Content-Length: -5\r\n\r\n{}",
    b"Content-Length: abc\r\n\r\n{}",
    b"Content-Length: 99999999999999999999999\r\n\r\n{}",
    b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}",  # a chunked body that never ends
    b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"Content-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}",
    b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
    b"Content-Length: 2\r\nX-Request-ID: \x01\x02\r\n\r\n{}",
    b"Content-Length: 2\r\nX-Session-Id: " + b"s" * 8000 + b"\r\n\r\n{}",
    b"Content-Length: 2\r\nAuthorization: Bearer " + b"t" * 8000 + b"\r\n\r\n{}",
    b"Content-Length: " + str(LIMIT + 1).encode() + b"\r\n\r\n{}",
])


@FUZZ
@given(method=st.sampled_from([b"POST", b"GET", b"DELETE", b"BREW", b"post", b"P\x00ST"]),
       path=st.sampled_from([b"/api/generate", b"/v1/chat/completions", b"/admin/explain", b"/api/delete", b"*",
                             f"/api/blobs/{DIGEST}".encode(), b"/api/gen\xffrate"]),
       lie=LIES)
# regressions: a body claiming gzip that is not gzip was a 500
@example(method=b"POST", path=b"/api/generate", lie=b"Content-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}")
@example(method=b"POST", path=f"/api/blobs/{DIGEST}".encode(),
         lie=b"Content-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}")
async def test_lying_heads(fleet, method, path, lie):
    base = Baseline(fleet)
    auth = b"Authorization: Bearer " + TOKEN.encode() + b"\r\n" if path.startswith(b"/admin") else b""
    raw = method + b" " + path + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + auth + lie
    answer = await raw_call(fleet.url, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert not head.startswith(b"HTTP/1.1 500"), answer[:300]
    if b"application/json" in head and head[9:10] == b"4":
        error = json.loads(body[: body.rfind(b"}") + 1])["error"]
        assert error if not path.startswith(b"/v1") else error["message"]
    await base.settled("a lying head")
    await still_serves(fleet)


async def test_every_known_hostile_body_on_every_endpoint(fleet):
    """The hand-picked hostile bodies, each on every endpoint: no draw left to chance."""
    for method, path, _ in ENDPOINTS:
        for body in KNOWN_BODIES:
            if path == "/api/delete" and b"llama3.2" in body.lower():
                continue
            await judged(fleet, method, path, body)
