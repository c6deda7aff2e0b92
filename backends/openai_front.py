"""Requests from OpenAI-API clients (/v1/*) as each worker kind takes them, and what the relay
needs to read their answers: the SSE error event that ends a cut stream, whole-event SSE
relaying, and token counts from `usage` / llama.cpp `timings`. Error bodies are worker_said.py's.

Every worker kind serves /v1/chat/completions, /v1/completions and /v1/embeddings itself, so
bodies pass through: Ollama workers get the client's own bytes, the others the same JSON under
the worker's own model id. Pure: no I/O and no policy. What a kind cannot honour raises
Unsupported so the gateway can try a worker that can, or answer 400.
"""

from __future__ import annotations

import re

import orjson

from backends.answers import loads_lenient
from backends.base import FrontRequest, UpstreamCall
from backends.streams import LineTooLong
from backends.translate import Unsupported
from backends.usage import Usage
from backends.worker_said import openai_error

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embeddings": "/v1/embeddings"}


def prepare(front: FrontRequest, model_id: str, kind: str) -> UpstreamCall:
    """The client's request for a worker of `kind`, on the worker's own /v1 endpoint."""
    path = PATHS.get(front.endpoint)
    if path is None:
        raise Unsupported(f"{front.path} is not supported by this worker")
    data = front.data
    n = data.get("n")
    # Ollama's /v1 answers one choice whatever `n` asks: refuse rather than answer short.
    if kind == "ollama" and isinstance(n, int) and n > 1:
        raise Unsupported(f"n = {n} is not supported: an Ollama worker answers one choice per request")
    changes: dict = {}
    if kind != "ollama" and data.get("model") != model_id:
        changes["model"] = model_id  # llama-server and OpenAI-style servers know the model by their own id
    if kind == "ollama" and data.get("max_completion_tokens") is not None and data.get("max_tokens") is None:
        changes["max_tokens"] = data["max_completion_tokens"]  # Ollama's /v1 documents max_tokens only
    body = orjson.dumps({**data, **changes}) if changes else front.body
    return UpstreamCall("POST", path, body, front="openai")


def sse_error(message: str, code: int = 502) -> bytes:
    """The SSE event that ends a stream a worker cut: the OpenAI clients raise it as an APIError."""
    return b"data: " + openai_error(message, code) + b"\n\n"


def usage_of(answer: object) -> Usage | None:
    """Generated tokens and timings from one answer or chunk; None when it carries neither."""
    if not isinstance(answer, dict):
        return None
    usage: dict = answer["usage"] if isinstance(answer.get("usage"), dict) else {}
    timings: dict = answer["timings"] if isinstance(answer.get("timings"), dict) else {}
    if not usage and not timings:
        return None
    tokens = timings.get("predicted_n", usage.get("completion_tokens"))
    predicted_ms, prompt_ms = timings.get("predicted_ms"), timings.get("prompt_ms")
    tokens = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None
    if not isinstance(predicted_ms, int | float) or not isinstance(prompt_ms, int | float):
        return Usage(tokens)
    return Usage(tokens, predicted_ms / 1000 if predicted_ms > 0 else None, (predicted_ms + prompt_ms) / 1000)


def whole_usage(body: bytes) -> Usage | None:
    try:
        return usage_of(loads_lenient(body))
    except ValueError:
        return None


_TYPE = re.compile(rb'"type"\s*:\s*"([a-z_.]{1,60})"')


def sse_parts(raw: bytes) -> tuple[bytes, bytes]:
    """One SSE event's name (its `event:` line, else the "type" its data starts with) and its data."""
    name, data = b"", b""
    for line in raw.split(b"\n"):
        if line.startswith(b"event:"):
            name = line[6:].strip()
        elif line.startswith(b"data:"):
            data = line[5:].strip()
    if not name and (found := _TYPE.search(data[:200])):
        name = found[1]
    return name, data


class ScannedSse:
    """A native SSE answer passed on in whole events (SseRelay), each batch of them shown to
    `_scan`, which notes what it must (the end, the usage) and may repair what it passes on."""

    def __init__(self) -> None:
        self._events = SseRelay()
        self.finished = False

    def feed(self, chunk: bytes) -> bytes:
        return self._scan(self._events.feed(chunk))

    def end(self) -> bytes:
        return self._scan(self._events.end())

    def _scan(self, out: bytes) -> bytes:
        raise NotImplementedError


class SseRelay:
    """Passes an SSE stream on in whole events, so a cut never leaves half an event on the client;
    remembers the last events that carried usage or timings, and whether the stream ended properly
    (`data: [DONE]` or an error event). Event contents are not parsed on the way."""

    def __init__(self, max_event: int = 16 * 1024 * 1024) -> None:
        self._pieces: list[bytes] = []  # an unfinished event, joined only once it ends (linear, not quadratic)
        self._size, self._tail, self._stats, self._max = 0, b"", b"", max_event
        self.finished = False

    def feed(self, chunk: bytes) -> bytes:
        seam = self._tail + chunk  # a blank line may straddle chunks
        if b"\n\n" not in seam and b"\r\n\r\n" not in seam:
            self._keep(chunk)
            return b""
        data = b"".join((*self._pieces, chunk)) if self._pieces else chunk
        lf, crlf = data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n")
        end = max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)
        out = data[:end]
        self._pieces, self._size, self._tail = [], 0, b""
        self._keep(data[end:])
        if out:
            self._note(out)
        return out

    def _keep(self, partial: bytes) -> None:
        if partial:
            self._pieces.append(partial)
            self._size += len(partial)
            self._tail = (self._tail + partial)[-3:]
        if self._size > self._max:
            raise LineTooLong(f"stream event longer than {self._max} bytes")

    def end(self) -> bytes:
        """A last event that lacked its blank line, completed."""
        rest = b"".join(self._pieces)
        self._pieces, self._size, self._tail = [], 0, b""
        if not rest.strip():
            return b""
        out = rest.rstrip(b"\r\n") + b"\n\n"
        self._note(out)
        return out

    def _note(self, out: bytes) -> None:
        if b'"usage"' in out or b'"timings"' in out:
            self._stats = out
        last = out.rstrip().replace(b"\r\n", b"\n").rsplit(b"\n\n", 1)[-1]
        payload = last.partition(b"data:")[2].strip()
        self.finished = payload == b"[DONE]" or payload.startswith(b'{"error"')

    def usage(self) -> Usage | None:
        for event in reversed(self._stats.replace(b"\r\n", b"\n").split(b"\n\n")):
            payload = event.partition(b"data:")[2].strip()
            if payload.startswith(b"{"):
                try:
                    found = usage_of(loads_lenient(payload))
                except ValueError:
                    continue
                if found is not None:
                    return found
        return None
