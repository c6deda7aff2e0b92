"""Pure answer translation for the Anthropic front: a worker's OpenAI chat completion (whole JSON, or
its SSE chunks) as an Anthropic message (whole JSON, or its named SSE events: message_start, content
blocks for thinking, text and each tool call, message_delta with the stop reason and usage,
message_stop). A backends.base.FrontAnswer; backends/anthropic_front.py prepares the request.

Stateful per request only; no I/O. Tool-call arguments stream on as `input_json_delta` pieces as they
come, however the worker splits them; a call whose name has not come yet is held until it does.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from backends.answers import loads_lenient
from backends.openai_front import usage_of
from backends.streams import NdjsonSplitter
from backends.usage import Usage
from backends.worker_said import message_in

# Anthropic's error types by status (the anthropic SDK's ErrorObject union; 503 as Ollama maps it).
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
          503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error"}
# OpenAI finish_reason -> Anthropic stop_reason. A stop sequence that matched also says "stop" on chat
# completions, so it reads as end_turn, as Ollama's own translation has it.
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                 "content_filter": "refusal"}


def event(name: str, data: dict[str, Any]) -> bytes:
    """One Anthropic SSE event: the SDKs skip any event without its `event:` line."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def stop_event(message: str, kind: str = "api_error") -> bytes:
    """The error event that ends a stream mid-way; the SDKs raise it as an APIStatusError."""
    return event("error", {"type": "error", "error": {"type": kind, "message": message}})


def error_type(status: int) -> str:
    return _TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")


def anthropic_error(message: str, status: int) -> bytes:
    """Anthropic's error body, for the gateway's own errors and for workers' errors alike."""
    return orjson.dumps({"type": "error", "error": {"type": error_type(status), "message": message}})


def as_anthropic_error(body: bytes, status: int) -> bytes:
    """A worker's error answer in Anthropic's shape: kept when it already is (Ollama's own), re-wrapped
    when it is OpenAI-shaped (llama-server's), Ollama-shaped, HTML or plain text."""
    try:
        data = loads_lenient(body) if body.strip() else None
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(data, dict) and data.get("type") == "error" and isinstance(error, dict) \
            and isinstance(error.get("message"), str):
        return body
    message = message_in(data) or body[:2048].decode("utf-8", "replace").strip()[:500]
    return anthropic_error(message[:1000] or f"worker answered {status}", status)


def stop_reason(finish: object, called: bool) -> str:
    if called:
        return "tool_use"
    return _STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


class Translator:
    """One worker's chat completion as an Anthropic message named `model` (the name the client knows);
    `input_estimate` stands for the prompt's tokens in message_start, before the worker has said."""

    def __init__(self, model: str, input_estimate: int = 0) -> None:
        self.model, self.id = model, new_id("msg")
        self.finished = False
        self._estimate = input_estimate
        self._lines = NdjsonSplitter(max_line=16 * 1024 * 1024)
        self._started = False
        self._open: str | None = None  # the open content block: "text", "thinking" or "tool"
        self._index = -1  # the latest content block's index
        self._calls: dict[int, dict[str, Any]] = {}  # the worker's tool-call index -> {id, name, held, block}
        self._reason: str | None = None
        self._usage: dict = {}
        self._timings: dict = {}

    # -- streams --------------------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._line(line) for line in self._lines.feed(chunk))

    def end(self) -> bytes:
        out = b"".join(self._line(line) for line in self._lines.flush())
        if not self.finished and self._reason is not None:  # it said why it stopped, then no [DONE]: complete
            out += self._finish()
        return out

    def _line(self, line: bytes) -> bytes:
        if not line.startswith(b"data:") or self.finished:
            return b""  # comments, event names, keep-alives; nothing after the end
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return self._finish()
        chunk = loads_lenient(payload)
        if not isinstance(chunk, dict):
            return b""
        if "error" in chunk:
            self.finished = True
            return stop_event(message_in(chunk) or str(chunk["error"])[:500])
        return self._chunk(chunk)

    def _chunk(self, chunk: dict) -> bytes:
        self._usage = chunk.get("usage") or self._usage
        self._timings = chunk.get("timings") or self._timings
        out = self._start()
        choices = chunk.get("choices") or [{}]
        choice = choices[0]
        delta = choice.get("delta") or {}
        if thought := delta.get("reasoning_content") or delta.get("reasoning"):  # llama.cpp's / Ollama's name
            out += self._block("thinking") + self._delta({"type": "thinking_delta", "thinking": thought})
        if text := delta.get("content"):
            out += self._block("text") + self._delta({"type": "text_delta", "text": text})
        for call in delta.get("tool_calls") or ():
            out += self._call(call)
        self._reason = choice.get("finish_reason") or self._reason
        return out

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return event("message_start", {"type": "message_start", "message": {
            "id": self.id, "type": "message", "role": "assistant", "content": [], "model": self.model,
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": self._estimate, "output_tokens": 0}}})

    def _block(self, kind: str, start: dict | None = None) -> bytes:
        """Opens a block of `kind` unless one is open already (every tool call gets its own)."""
        if self._open == kind and kind != "tool":
            return b""
        out = self._close()
        self._index, self._open = self._index + 1, kind
        block = start or ({"type": "text", "text": ""} if kind == "text"
                          else {"type": "thinking", "thinking": "", "signature": ""})
        return out + event("content_block_start", {"type": "content_block_start", "index": self._index,
                                                   "content_block": block})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return event("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _delta(self, delta: dict, index: int | None = None) -> bytes:
        return event("content_block_delta", {"type": "content_block_delta",
                                             "index": self._index if index is None else index, "delta": delta})

    def _call(self, piece: dict) -> bytes:
        index = piece.get("index")
        index = index if isinstance(index, int) else len(self._calls)
        call = self._calls.setdefault(index, {"id": "", "name": "", "held": "", "block": None})
        function = piece.get("function") or {}
        call["id"] = call["id"] or piece.get("id") or ""
        call["name"] = call["name"] or function.get("name") or ""
        arguments = function.get("arguments") or ""
        call["held"] += arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
        out = b""
        if call["block"] is None:
            if not call["name"]:
                return b""  # held until its name comes: a tool_use block starts with its name
            out = self._block("tool", {"type": "tool_use", "id": call["id"] or new_id("toolu"), "name": call["name"],
                                       "input": {}})
            call["block"] = self._index
        if call["held"]:
            out += self._delta({"type": "input_json_delta", "partial_json": call["held"]}, call["block"])
            call["held"] = ""
        return out

    def _finish(self) -> bytes:
        if self.finished:
            return b""
        out = self._start() + self._close()
        called = any(call["block"] is not None for call in self._calls.values())
        prompt, generated = self._counts()
        out += event("message_delta", {"type": "message_delta",
                                       "delta": {"stop_reason": stop_reason(self._reason, called),
                                                 "stop_sequence": None},
                                       "usage": {"input_tokens": prompt, "output_tokens": generated}})
        self.finished = True
        return out + event("message_stop", {"type": "message_stop"})

    def _counts(self) -> tuple[int, int]:
        prompt = self._usage.get("prompt_tokens", self._timings.get("prompt_n", self._estimate))
        generated = self._usage.get("completion_tokens", self._timings.get("predicted_n", 0))
        return _int(prompt), _int(generated)

    def usage(self) -> Usage | None:
        return usage_of({"usage": self._usage, "timings": self._timings})

    def cut(self, message: str) -> bytes:
        return stop_event(message)

    def error(self, body: bytes, status: int) -> bytes:
        return as_anthropic_error(body, status)

    # -- whole answers --------------------------------------------------------------------------------
    def whole(self, body: bytes) -> bytes:
        answer = loads_lenient(body)
        if isinstance(answer, dict) and answer.get("error"):  # a 200 whose body is an error: a failed answer
            raise ValueError(f"worker answered 200 with an error: {str(message_in(answer))[:300]}")
        self._usage, self._timings = answer.get("usage") or {}, answer.get("timings") or {}
        choice = (answer.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        content: list[dict[str, Any]] = []
        if thought := message.get("reasoning_content") or message.get("reasoning"):
            content.append({"type": "thinking", "thinking": thought, "signature": ""})
        if text := _text(message.get("content")):
            content.append({"type": "text", "text": text})
        calls = [tool_use(call) for call in message.get("tool_calls") or ()]
        prompt, generated = self._counts()
        return orjson.dumps({"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                             "content": content + calls, "stop_reason": stop_reason(choice.get("finish_reason"),
                                                                                     bool(calls)),
                             "stop_sequence": None, "usage": {"input_tokens": prompt, "output_tokens": generated}})


def tool_use(call: dict) -> dict[str, Any]:
    """A chat tool call as a tool_use block; arguments that are not a JSON object are kept as `raw`."""
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments) if arguments.strip() else {}
        except orjson.JSONDecodeError:
            arguments = {"raw": arguments}
    return {"type": "tool_use", "id": call.get("id") or new_id("toolu"), "name": function.get("name") or "",
            "input": arguments if isinstance(arguments, dict) else {"raw": arguments}}


def _text(content: object) -> str:
    if isinstance(content, list):  # some servers answer content parts
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
