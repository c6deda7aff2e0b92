"""Non-streamed answers: held whole under a size cap ([server] max_answer_mib) and the attempt's
deadline, so a failure while reading still moves on to the next worker; an Ollama answer passed
through untouched that outgrows HOLD_BYTES is streamed on to the client as it arrives instead.

An answer streamed through is committed at its first byte, as a stream is: a failure after that
closes the client's connection mid-body (a JSON document has no room for an error line), which
every HTTP client reports as a broken answer. Translated and /v1 answers are parsed whole, so they
are always held, under the same cap. Never chooses a worker, never writes the snapshot.
"""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import orjson
from aiohttp import web

from backends import openai_front
from backends.answers import MALFORMED
from backends.base import UpstreamCall
from backends.upstream import AnswerTooLarge, describe, read_up_to
from gateway.relay import (
    ACCOUNTED,
    AttemptFailed,
    StreamTooLong,
    Watchdog,
    apply_final,
    read_final_fields,
    reply_headers,
    take_usage,
    write_quietly,
)

# Nearly every chat or generate answer fits: held whole, it can still fail over. Larger ones
# (embeddings of big batches, a long show) are not worth holding: they flow through.
HOLD_BYTES = 1024 * 1024
TAIL_BYTES = 4096  # where an answer streamed through keeps eval_count and the durations: Ollama writes them last
CAP = "[server] max_answer_mib"


async def answer(request: web.Request, resp: aiohttp.ClientResponse, call: UpstreamCall, outcome,
                 remaining_s: float, max_bytes: int, idle_s: float, late: str) -> web.StreamResponse:
    """The whole answer to the client, or AttemptFailed while nothing was sent. `late` says what a
    deadline that passes while reading means (which setting set it)."""
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise _too_large(max_bytes)
    passthrough = call.front == "ollama" and call.translator is None and call.whole is None and resp.status == 200
    started = time.monotonic()
    body, complete = await _read(resp, min(HOLD_BYTES, max_bytes) if passthrough else max_bytes, remaining_s, late)
    if not complete:
        if not passthrough:
            raise _too_large(max_bytes)
        left = max(0.1, remaining_s - (time.monotonic() - started))
        return await _stream_through(request, resp, body, outcome, left, max_bytes, idle_s)
    outcome.ttfb_s = time.monotonic() - outcome.started
    outcome.status, outcome.outcome = resp.status, "ok" if resp.status < 400 else "client_error"
    headers = reply_headers(resp, outcome)
    if call.front == "openai":
        body = _openai_whole(call, body, resp.status, outcome, headers)
    elif resp.status >= 400:  # passed-through errors too: a worker's HTML or NDJSON error is no Ollama error
        body, headers["Content-Type"] = _ollama_error(body, resp.status), "application/json"
    elif call.translator or call.whole:
        body = _translate_whole(call, body)
        headers["Content-Type"] = "application/json"
    if resp.status == 200 and outcome.endpoint in ACCOUNTED:
        read_final_fields(body, outcome)
    return web.Response(status=resp.status, body=body, headers=headers)


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


async def _stream_through(request: web.Request, resp: aiohttp.ClientResponse, held: bytes, outcome,
                          remaining_s: float, max_bytes: int, idle_s: float) -> web.StreamResponse:
    """The held start, then the rest as it arrives; within the attempt's deadline and the size cap."""
    outcome.ttfb_s = time.monotonic() - outcome.started
    out = web.StreamResponse(status=200, headers=reply_headers(resp, outcome))
    if resp.content_length is not None:
        out.content_length = resp.content_length
    await out.prepare(request)
    outcome.status = 200
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
        outcome.outcome = "client_gone"  # leaving `async with resp` closes upstream
        return out
    except (aiohttp.ClientError, TimeoutError, StreamTooLong):
        outcome.outcome = "cut"
        if request.transport is not None:  # no final chunk: the client sees a broken body, not a short one
            request.transport.close()
        return out
    if outcome.endpoint in ACCOUNTED:
        apply_final(tail_fields(tail), outcome)
    outcome.outcome = "ok"
    await write_quietly(out, b"", eof=True)
    return out


# A key at the top level of the JSON (not inside a string, where every quote is escaped) and its number.
_FIELD = re.compile(rb'(?<!\\)"(eval_count|load_duration|prompt_eval_duration|eval_duration|total_duration)"'
                    rb"\s*:\s*(\d{1,20})")


def tail_fields(tail: bytes) -> dict:
    """The final fields of an Ollama answer from its last bytes, without parsing the whole answer."""
    return {key.decode(): int(value) for key, value in _FIELD.findall(tail)}


def _openai_whole(call: UpstreamCall, body: bytes, status: int, outcome, headers: dict[str, str]) -> bytes:
    """A /v1 answer passes through; a worker's error is made OpenAI-shaped if it is not already."""
    if status >= 400:
        headers["Content-Type"] = "application/json"
        return openai_front.error_body(body, status)
    if status == 200 and call.path.endswith("completions"):  # embeddings count no generated tokens
        take_usage(openai_front.whole_usage(body), outcome)
    return body


def _translate_whole(call: UpstreamCall, body: bytes) -> bytes:
    try:
        return call.translator.whole(body) if call.translator else call.whole(body)
    except MALFORMED as exc:
        raise AttemptFailed("malformed", f"answer could not be read: {describe(exc)}") from None


def _ollama_error(body: bytes, status: int) -> bytes:
    """An OpenAI-shaped worker error as Ollama's `{"error": "..."}`."""
    try:
        error = orjson.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (orjson.JSONDecodeError, AttributeError):
        message = None
    text = body[:2048].decode("utf-8", "replace").strip()[:500] if message is None else ""
    return orjson.dumps({"error": str(message or text or f"worker answered {status}")[:1000]})
