"""Requests from OpenAI-API clients (/v1/*) as each worker kind takes them, and what the relay
needs to read their answers: OpenAI-shaped error bodies and SSE error events, whole-event SSE
relaying, and token counts from `usage` / llama.cpp `timings`.

Every worker kind serves /v1/chat/completions, /v1/completions and /v1/embeddings itself, so
bodies pass through: Ollama workers get the client's own bytes, the others the same JSON under
the worker's own model id. Pure: no I/O and no policy. What a kind cannot honour raises
Unsupported so the gateway can try a worker that can, or answer 400.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from backends.answers import loads_lenient
from backends.base import FrontRequest, UpstreamCall
from backends.streams import LineTooLong
from backends.translate import Unsupported

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embeddings": "/v1/embeddings"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
                422: "invalid_request_error", 429: "rate_limit_error"}


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


def error_body(body: bytes, status: int) -> bytes:
    """A worker's error in OpenAI's shape: kept when it already is, wrapped when Ollama-shaped or not JSON."""
    try:
        data = loads_lenient(body) if body.strip() else None
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str) and {"type", "code"} <= error.keys():
        return body
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        return error_event_body(error["message"], status, _ERROR_TYPES.get(status, "api_error"))
    if isinstance(error, str) and error:
        message = error
    else:
        message = body.decode("utf-8", "replace").strip()[:500] or f"worker answered {status}"
    return error_event_body(message, status, _ERROR_TYPES.get(status, "api_error"))


def error_event_body(message: str, code: int, kind: str = "api_error") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "code": code}})


def sse_error(message: str, code: int = 502) -> bytes:
    """The SSE event that ends a stream a worker cut: the OpenAI clients raise it as an APIError."""
    return b"data: " + error_event_body(message, code) + b"\n\n"


@dataclass(frozen=True, slots=True)
class Usage:
    tokens: int | None = None
    eval_s: float | None = None  # decode time, when the worker reports it (llama.cpp timings)
    service_s: float | None = None  # prompt + decode time


def usage_of(answer: object) -> Usage | None:
    """Generated tokens and timings from one answer or chunk; None when it carries neither."""
    if not isinstance(answer, dict):
        return None
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
    timings = answer.get("timings") if isinstance(answer.get("timings"), dict) else {}
    if not usage and not timings:
        return None
    tokens = timings.get("predicted_n", usage.get("completion_tokens"))
    predicted_ms, prompt_ms = timings.get("predicted_ms"), timings.get("prompt_ms")
    numbers = isinstance(predicted_ms, int | float) and isinstance(prompt_ms, int | float)
    return Usage(tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None,
                 predicted_ms / 1000 if numbers and predicted_ms > 0 else None,
                 (predicted_ms + prompt_ms) / 1000 if numbers else None)


def whole_usage(body: bytes) -> Usage | None:
    try:
        return usage_of(loads_lenient(body))
    except ValueError:
        return None


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
