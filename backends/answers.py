"""Pure answer translation: OpenAI-compatible and llama.cpp-native answers (SSE streams or
whole JSON) into Ollama's NDJSON lines and final fields (durations in ns, done_reason).

Stateful per request only (a translator object); no I/O. Bytes that are not valid UTF-8
and characters split across chunks pass through without crashing: SSE is split on line
ends (never inside a multi-byte character) and a bad line is decoded with replacement.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson

from backends.streams import NdjsonSplitter, error_line
from backends.upstream import worker_json

# What reading an answer of the wrong shape raises (`"choices": [1]`, a list where an object was due):
# the relay treats these as a malformed answer from the worker, never as a gateway error.
MALFORMED = (ValueError, AttributeError, TypeError, KeyError, IndexError)

_DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop", "eos": "stop", "word": "stop",
                 "limit": "length", "function_call": "stop"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def loads_lenient(raw: bytes) -> Any:
    try:
        return worker_json(raw)
    except orjson.JSONDecodeError:
        return worker_json(raw.decode("utf-8", "replace"))  # a worker emitted raw invalid UTF-8


def final_fields(timings: dict | None, usage: dict | None, reason: str | None, started: float) -> dict[str, Any]:
    timings, usage = timings or {}, usage or {}
    prompt_n = timings.get("prompt_n", usage.get("prompt_tokens", 0))
    predicted_n = timings.get("predicted_n", usage.get("completion_tokens", 0))
    return {"done": True, "done_reason": _DONE_REASONS.get(reason or "stop", "stop"),
            "total_duration": int((time.monotonic() - started) * 1e9), "load_duration": 0,
            "prompt_eval_count": int(prompt_n or 0), "prompt_eval_duration": int(timings.get("prompt_ms", 0) * 1e6),
            "eval_count": int(predicted_n or 0), "eval_duration": int(timings.get("predicted_ms", 0) * 1e6)}


def tool_calls_of(calls: list | None) -> list[dict] | None:
    if not calls:
        return None
    out = []
    for call in calls:
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            parsed = {"raw": arguments}
        out.append({"function": {"name": function.get("name", ""), "arguments": parsed}})
    return out


class Translator:
    """Turns one upstream answer into Ollama's shape for `endpoint` (chat or generate)."""

    def __init__(self, model: str, endpoint: str, native: bool = False) -> None:
        self.model, self.endpoint, self.native = model, endpoint, native
        self.started = time.monotonic()
        self._lines = NdjsonSplitter(max_line=16 * 1024 * 1024)
        self._reason: str | None = None
        self._timings: dict | None = None
        self._usage: dict | None = None
        self._calls: dict[int, dict] = {}
        self._ended = False

    # -- streams -----------------------------------------------------------------------
    def feed(self, chunk: bytes) -> bytes:
        out = bytearray()
        for line in self._lines.feed(chunk):
            out += self._event(line)
        return bytes(out)

    def end(self) -> bytes:
        out = bytearray()
        for line in self._lines.flush():
            out += self._event(line)
        if not self._ended:
            out += self._final()
        return bytes(out)

    def _event(self, line: bytes) -> bytes:
        if not line.startswith(b"data:") or self._ended:
            return b""  # comments, event names, keep-alives
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return self._final()
        event = loads_lenient(payload)
        if not isinstance(event, dict):
            return b""
        if "error" in event:
            self._ended = True
            error = event["error"]
            return error_line(error.get("message", str(error)) if isinstance(error, dict) else str(error))
        return self._native_event(event) if self.native else self._openai_event(event)

    def _openai_event(self, event: dict) -> bytes:
        self._usage = event.get("usage") or self._usage
        self._timings = event.get("timings") or self._timings
        choice = (event.get("choices") or [{}])[0]
        self._reason = choice.get("finish_reason") or self._reason
        delta = choice.get("delta") or {}
        for call in delta.get("tool_calls") or ():
            self._merge_call(call)
        text = delta.get("content") if "delta" in choice else choice.get("text")
        thinking = reasoning_of(delta)
        return self._piece(text or "", thinking=thinking) if text or thinking else b""

    def _native_event(self, event: dict) -> bytes:
        self._timings = event.get("timings") or self._timings
        out = self._piece(content) if (content := event.get("content")) else b""
        if event.get("stop"):
            self._reason = event.get("stop_type") or "stop"
            out += self._final()
        return out

    def _merge_call(self, call: dict) -> None:
        slot = self._calls.setdefault(call.get("index", 0), {"function": {"name": "", "arguments": ""}})
        function = call.get("function") or {}
        slot["function"]["name"] += function.get("name") or ""
        slot["function"]["arguments"] += function.get("arguments") or ""

    def _piece(self, text: str, done: bool = False, thinking: str | None = None) -> bytes:
        item: dict[str, Any] = {"model": self.model, "created_at": now_iso()}
        if self.endpoint == "chat":
            item["message"] = {"role": "assistant", "content": text}
            if thinking:
                item["message"]["thinking"] = thinking
        else:
            item["response"] = text
            if thinking:
                item["thinking"] = thinking
        item["done"] = done
        return orjson.dumps(item) + b"\n"

    def _final(self) -> bytes:
        if self._ended:
            return b""
        self._ended = True
        item = orjson.loads(self._piece("", done=True))
        calls = tool_calls_of(list(self._calls.values()))
        if calls and self.endpoint == "chat":
            item["message"]["tool_calls"] = calls
        item.update(final_fields(self._timings, self._usage, self._reason, self.started))
        return orjson.dumps(item) + b"\n"

    # -- whole answers -------------------------------------------------------------------
    def whole(self, body: bytes) -> bytes:
        answer = _not_an_error(loads_lenient(body))
        if self.native:
            text, reason = answer.get("content", ""), answer.get("stop_type") or "stop"
            calls, thinking = None, None
        else:
            choice = (answer.get("choices") or [{}])[0]
            message = choice.get("message") or {}
            text = message.get("content") if "message" in choice else choice.get("text")
            reason, calls = choice.get("finish_reason"), tool_calls_of(message.get("tool_calls"))
            thinking = reasoning_of(message)
        item = orjson.loads(self._piece(text or "", done=True, thinking=thinking))
        if calls and self.endpoint == "chat":
            item["message"]["tool_calls"] = calls
        item.update(final_fields(answer.get("timings"), answer.get("usage"), reason, self.started))
        return orjson.dumps(item)


def reasoning_of(part: Any) -> str | None:
    """The thinking an OpenAI-style message or delta carries apart from its content: llama-server's
    `reasoning_content` (its reasoning format separates it), or `reasoning` (vLLM, OpenRouter);
    Ollama's `thinking` field is where it goes."""
    if not isinstance(part, dict):
        return None
    found = part.get("reasoning_content") or part.get("reasoning")
    return found if isinstance(found, str) and found else None


def _not_an_error(answer: Any) -> Any:
    """A 200 whose body is an error is a failed answer, not an empty success."""
    if isinstance(answer, dict) and answer.get("error"):
        error = answer["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise ValueError(f"worker answered 200 with an error: {message}")
    return answer


def embed_answer(body: bytes, model: str, legacy: bool, started: float) -> bytes:
    answer = _not_an_error(loads_lenient(body))
    rows = sorted(answer.get("data") or [], key=lambda d: d.get("index", 0))
    vectors = [row.get("embedding") or [] for row in rows]
    if legacy:
        return orjson.dumps({"embedding": vectors[0] if vectors else []})
    usage = answer.get("usage") or {}
    total_ns = int((time.monotonic() - started) * 1e9)
    return orjson.dumps({"model": model, "embeddings": vectors, "total_duration": total_ns,
                         "load_duration": 0, "prompt_eval_count": usage.get("prompt_tokens", 0)})
