"""backends/worker_said.py: a worker's error message in Ollama's, OpenAI's and llama.cpp's shapes, or
its HTML and plain text; read from the first bytes only, whatever the bytes are; and OpenAI's error
envelope with one status-to-type table for the gateway's own /v1 errors and workers' errors alike.
The reads are from a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.test_utils import TestServer

from backends.worker_said import (
    ERROR_DETAIL_BYTES,
    as_ollama_error,
    as_openai_error,
    error_detail,
    error_start,
    message_of,
    openai_error,
    openai_type,
)
from gateway.errors import error_body

OLLAMA = b'{"error":"model \\"x\\" not found, try pulling it first"}'
OPENAI = b'{"error":{"message":"bad temperature","type":"invalid_request_error","param":null,"code":null}}'
LLAMACPP = b'{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}'
HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
PLAIN = b"upstream connect error\n"
NOT_UTF8 = b'{"error":"caf\xe9 is not a model"}'  # Latin-1: a worker that does not write UTF-8
OVER_CAP = orjson.dumps({"error": "x" * ERROR_DETAIL_BYTES})


@pytest.fixture
async def worker():
    """A worker that answers 500 with whatever body the test puts in `bodies` under a path."""
    bodies: dict[str, bytes] = {}

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=500, body=bodies[request.path])

    app = web.Application()
    app.router.add_get("/{name}", answer)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:

        async def said(body: bytes, read=error_detail) -> str:
            path = f"/{len(bodies)}"
            bodies[path] = body
            async with session.get(server.make_url(path)) as resp:
                return await read(resp)

        yield said


@pytest.mark.parametrize(("body", "detail"), [
    (OLLAMA, '500 model "x" not found, try pulling it first'),
    (OPENAI, "500 bad temperature"),
    (LLAMACPP, "500 Loading model"),
    (HTML, "answered 500"),
    (PLAIN, "answered 500"),
    (b"", "answered 500"),
    (b'{"error":""}', "answered 500"),
    (b'{"error":{"message":42}}', "answered 500"),
    (b'[{"error":"not at the top"}]', "answered 500"),
])
async def test_a_failed_answer_is_its_status_and_the_workers_own_message(worker, body, detail):
    assert await worker(body) == detail


async def test_a_message_is_cut_to_300_characters(worker):
    assert await worker(orjson.dumps({"error": "y" * 1000})) == "500 " + "y" * 300


async def test_a_body_over_the_read_cap_is_read_no_further_and_says_only_its_status(worker):
    assert len(OVER_CAP) > ERROR_DETAIL_BYTES
    assert await worker(OVER_CAP) == "answered 500"
    assert await worker(OVER_CAP, lambda resp: error_start(resp, 50)) == '{"error":"' + "x" * 40


async def test_a_body_that_is_not_utf8_still_gives_its_message(worker):
    assert await worker(NOT_UTF8) == "500 caf\ufffd is not a model"
    assert await worker(b"\xff\xfe<html>", error_start) == "\ufffd\ufffd<html>"


async def test_a_message_split_across_chunks_is_read_whole():
    loop = asyncio.get_running_loop()
    wire = BaseProtocol(loop)
    wire.connection_made(asyncio.Transport())  # an open connection whose bytes the test feeds itself
    content = aiohttp.StreamReader(wire, 2**16, loop=loop)
    content.feed_data(OLLAMA[:10])  # the rest comes only once the first part was read

    def rest() -> None:
        content.feed_data(OLLAMA[10:])
        content.feed_eof()

    loop.call_soon(rest)
    answer = type("Answer", (), {"status": 404, "content": content})()  # the two fields error_detail reads
    assert await error_detail(answer) == '404 model "x" not found, try pulling it first'


def test_the_workers_message_is_found_in_each_shape():
    assert message_of(OLLAMA) == 'model "x" not found, try pulling it first'
    assert message_of(OPENAI) == "bad temperature"
    assert message_of(LLAMACPP) == "Loading model"
    assert message_of(NOT_UTF8) == "caf\ufffd is not a model"
    for said_nothing in (HTML, PLAIN, b"", b"  \n", b"null", b'{"detail":"x"}', b'{"error":[1]}'):
        assert message_of(said_nothing) is None, said_nothing


def test_a_workers_error_becomes_ollamas_shape_whatever_it_came_in():
    def ollama(body: bytes, status: int = 500) -> str:
        return orjson.loads(as_ollama_error(body, status))["error"]

    assert ollama(OLLAMA) == 'model "x" not found, try pulling it first'
    assert ollama(OPENAI) == "bad temperature" and ollama(LLAMACPP) == "Loading model"
    assert ollama(HTML) == HTML.decode() and ollama(PLAIN) == "upstream connect error"
    assert ollama(b"", 502) == "worker answered 502" and ollama(b'{"error":""}', 400) == "worker answered 400"
    assert ollama(orjson.dumps({"error": "z" * 5000})) == "z" * 1000
    assert ollama(b"<p>" + b"w" * 5000) == "<p>" + "w" * 497


def test_a_workers_error_becomes_openais_shape_and_one_already_in_it_is_kept():
    kept = b'{"error":{"message":"bad","type":"invalid_request_error","code":400}}'
    assert as_openai_error(kept, 400) is kept and as_openai_error(OPENAI, 400) is OPENAI
    assert as_openai_error(LLAMACPP, 503) is LLAMACPP
    assert orjson.loads(as_openai_error(OLLAMA, 404)) == {"error": {
        "message": 'model "x" not found, try pulling it first', "type": "invalid_request_error", "code": 404}}
    assert orjson.loads(as_openai_error(b'{"error":{"message":"bad temperature"}}', 400))["error"] == {
        "message": "bad temperature", "type": "invalid_request_error", "code": 400}  # no type, no code: wrapped
    assert orjson.loads(as_openai_error(HTML, 500))["error"]["message"] == HTML.decode()
    assert orjson.loads(as_openai_error(b"", 401))["error"] == {
        "message": "worker answered 401", "type": "authentication_error", "code": 401}


@pytest.mark.parametrize(("status", "kind"), [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
    (404, "invalid_request_error"), (405, "invalid_request_error"), (408, "invalid_request_error"),
    (409, "invalid_request_error"), (413, "invalid_request_error"), (415, "invalid_request_error"),
    (422, "invalid_request_error"), (429, "rate_limit_error"), (500, "api_error"), (502, "api_error"),
    (503, "service_unavailable"), (504, "api_error"),
])
def test_one_table_types_every_v1_error_the_gateway_or_a_worker_answers(status, kind):
    envelope = {"error": {"message": "m", "type": kind, "code": status}}
    assert openai_type(status) == kind
    assert orjson.loads(openai_error("m", status)) == envelope
    assert orjson.loads(error_body("/v1/chat/completions", status, "m")) == envelope  # the gateway's own
    assert orjson.loads(as_openai_error(b'{"error":"m"}', status)) == envelope  # a worker's
