"""Non-streamed answers: held whole under a size cap ([server] max_answer_mib) and the attempt's
deadline, so a failure while reading still moves on to the next worker; an Ollama answer passed
through untouched that outgrows HOLD_BYTES is streamed on to the client as it arrives instead.

An answer streamed through is committed at its first byte, as a stream is: a failure after that
closes the client's connection mid-body (a JSON document has no room for an error line), which
every HTTP client reports as a broken answer. Translated answers and those of the other fronts
(/v1, Anthropic's) go through the front's reply (backends.base.FrontAnswer): they are always held,
under the same cap. Never chooses a worker, never writes the snapshot.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from backends.answers import MALFORMED
from backends.base import FrontAnswer, UpstreamCall
from backends.fronts import reply_of, route_missing
from backends.upstream import AnswerTooLarge, read_up_to
from backends.usage import NONE, Usage, ollama_line, ollama_tail
from backends.worker_said import as_ollama_error, describe
from gateway.outcome import Asked, Ended, Relayed, timer
from gateway.relay import ACCOUNTED, AttemptFailed, StreamTooLong, Watchdog, reply_headers, write_quietly

# Nearly every chat or generate answer fits: held whole, it can still fail over. Larger ones
# (embeddings of big batches, a long show) are not worth holding: they flow through.
HOLD_BYTES = 1024 * 1024
TAIL_BYTES = 4096  # where an answer streamed through keeps eval_count and the durations: Ollama writes them last
CAP = "[server] max_answer_mib"


async def answer(request: web.Request, resp: aiohttp.ClientResponse, call: UpstreamCall, asked: Asked, worker: str,
                 remaining_s: float, max_bytes: int, idle_s: float, late: str) -> Relayed:
    """The whole answer to the client, or AttemptFailed while nothing was sent. `late` says what a
    deadline that passes while reading means (which setting set it)."""
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise _too_large(max_bytes)
    passthrough = call.front == "ollama" and call.translator is None and call.whole is None and resp.status == 200
    started = timer()
    body, complete = await _read(resp, min(HOLD_BYTES, max_bytes) if passthrough else max_bytes, remaining_s, late)
    if not complete:
        if not passthrough:
            raise _too_large(max_bytes)
        left = max(0.1, remaining_s - (timer() - started))
        return await _stream_through(request, resp, body, asked, worker, left, max_bytes, idle_s)
    if route_missing(call, resp.status, body):  # nothing sent yet: the proxy asks it again, translated
        raise AttemptFailed("no_route", f"has no {call.path} (answered 404): translating for it", 404)
    ttfb_s = timer() - asked.started
    headers = reply_headers(resp, asked.request_id, worker)
    usage, reply = NONE, reply_of(call)
    if reply is not None:
        body, usage = _front_whole(reply, body, resp.status, headers)
    elif resp.status >= 400:  # passed-through errors too: a worker's HTML or NDJSON error is no Ollama error
        body, headers["Content-Type"] = as_ollama_error(body, resp.status), "application/json"
    elif call.translator or call.whole:
        body = _translate_whole(call, body)
        headers["Content-Type"] = "application/json"
    if resp.status == 200 and reply is None and asked.endpoint in ACCOUNTED:
        usage = ollama_line(body)  # an Ollama-shaped answer (passed through or translated) ends with its usage
    ended = Ended.OK if resp.status < 400 else Ended.CLIENT_ERROR
    return Relayed(web.Response(status=resp.status, body=body, headers=headers), resp.status, ttfb_s, ended, usage)


async def _read(resp: aiohttp.ClientResponse, limit: int, remaining_s: float, late: str) -> tuple[bytes, bool]:
    try:
        async with asyncio.timeout(remaining_s):
            return await read_up_to(resp, limit)
    except TimeoutError:
        raise AttemptFailed("timeout", late) from None
    except aiohttp.ClientError as exc:
        raise AttemptFailed("dropped", f"answer cut short: {describe(exc)}") from None


def _too_large(max_bytes: int) -> AttemptFailed:
    return AttemptFailed("too_large", describe(AnswerTooLarge(max_bytes, CAP)))


async def _stream_through(request: web.Request, resp: aiohttp.ClientResponse, held: bytes, asked: Asked,
                          worker: str, remaining_s: float, max_bytes: int, idle_s: float) -> Relayed:
    """The held start, then the rest as it arrives; within the attempt's deadline and the size cap."""
    ttfb_s = timer() - asked.started
    out = web.StreamResponse(status=200, headers=reply_headers(resp, asked.request_id, worker))
    if resp.content_length is not None:
        out.content_length = resp.content_length
    await out.prepare(request)
    size, tail, chunk = 0, b"", held
    try:
        with Watchdog(idle_s, remaining_s) as watchdog:
            while chunk:
                size += len(chunk)
                if size > max_bytes:
                    raise AnswerTooLarge(max_bytes, CAP)
                await out.write(chunk)
                tail = (tail + chunk[-TAIL_BYTES:])[-TAIL_BYTES:]
                watchdog.fed()
                chunk = await resp.content.readany()
    except ConnectionResetError:
        return Relayed(out, 200, ttfb_s, Ended.CLIENT_GONE)  # leaving `async with resp` closes upstream
    except (aiohttp.ClientError, TimeoutError, StreamTooLong):
        if request.transport is not None:  # no final chunk: the client sees a broken body, not a short one
            request.transport.close()
        return Relayed(out, 200, ttfb_s, Ended.CUT)
    await write_quietly(out, b"", eof=True)
    return Relayed(out, 200, ttfb_s, Ended.OK, ollama_tail(tail) if asked.endpoint in ACCOUNTED else NONE)


def _front_whole(reply: FrontAnswer, body: bytes, status: int, headers: dict[str, str]) -> tuple[bytes, Usage]:
    """A front's answer in its shape (passed through or translated); a worker's error in the front's
    error shape whatever shape it came in."""
    if status >= 400:
        headers["Content-Type"] = "application/json"
        return reply.error(body, status), NONE
    try:  # any other status is a 2xx (relay.refuse turned 3xx away): the answer, as the front shapes it
        return reply.whole(body), reply.usage() or NONE
    except MALFORMED as exc:
        raise AttemptFailed("malformed", f"answer could not be read: {describe(exc)}") from None


def _translate_whole(call: UpstreamCall, body: bytes) -> bytes:
    try:
        if call.translator is not None:
            return call.translator.whole(body)
        assert call.whole is not None  # answer() translates only calls that carry one of the two
        return call.whole(body)
    except MALFORMED as exc:
        raise AttemptFailed("malformed", f"answer could not be read: {describe(exc)}") from None
