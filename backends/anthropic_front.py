"""Requests from Anthropic Messages clients (/v1/messages and /v1/messages/count_tokens: Claude Code,
the anthropic SDKs) as each worker kind takes them, Anthropic's error shape, and the relay of an
answer from a worker that speaks the Messages API itself.

Native where the worker serves the API: llama-server always (its /v1/messages and count_tokens; the
bundled build has both), Ollama from 0.14.0 (its /v1/messages; it never counts tokens). Everything
else is translated to the worker's /v1/chat/completions, which every kind serves, and its answer back
(backends/anthropic_answers.py). Pure: no I/O and no policy. What a kind cannot honour raises
Unsupported so the gateway can try a worker that can, or answer 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from backends.answers import loads_lenient
from backends.anthropic_answers import Translator, as_anthropic_error, event, new_id, stop_event
from backends.base import FrontRequest, UpstreamCall
from backends.openai_front import ScannedSse, sse_parts
from backends.translate import Unsupported
from backends.usage import Usage
from backends.versions import at_least
from backends.worker_said import message_in

OLLAMA_MESSAGES_SINCE = "0.14.0"  # the first Ollama release with /v1/messages (PR #13600)


def serves_messages(kind: str, version: str | None) -> bool:
    """Whether a worker of `kind` that reports `version` serves /v1/messages itself."""
    return kind == "llamacpp" or (kind == "ollama" and at_least(version, OLLAMA_MESSAGES_SINCE))


def prepare(front: FrontRequest, model_id: str, kind: str, version: str | None = None,
            native: bool = True) -> UpstreamCall:
    """The client's Messages request for a worker of `kind`: natively, or as a chat completion."""
    if front.endpoint == "count_tokens":
        if kind != "llamacpp":  # the front answers an estimate itself for the other kinds
            raise Unsupported("only llama-server workers count tokens")
        return UpstreamCall("POST", "/v1/messages/count_tokens", _own_model(front, model_id, kind),
                            front="anthropic", reply=Passthrough(front.model, generates=False))
    if front.endpoint != "messages":
        raise Unsupported(f"{front.path} is not supported by this worker")
    if native and serves_messages(kind, version):
        return UpstreamCall("POST", "/v1/messages", _own_model(front, model_id, kind), front="anthropic",
                            reply=Passthrough(front.model))
    body = chat_request(front.data, model_id, kind)
    return UpstreamCall("POST", "/v1/chat/completions", orjson.dumps(body), front="anthropic",
                        reply=Translator(front.model, estimate_tokens(front.data)))


def _own_model(front: FrontRequest, model_id: str, kind: str) -> bytes:
    """Ollama workers take the client's own bytes; llama-server knows the model by its own id."""
    if kind == "ollama" or front.data.get("model") == model_id:
        return front.body
    return orjson.dumps({**front.data, "model": model_id})


# -- the request as a chat completion -------------------------------------------------------------------

def chat_request(data: Mapping[str, Any], model_id: str, kind: str) -> dict[str, Any]:
    """An Anthropic Messages body as an OpenAI chat-completions body. Thinking settings, metadata,
    cache_control, documents and citations have no chat-completions field and are dropped, as Ollama's
    own translation drops them; the handler has checked the shapes."""
    messages = _system(data.get("system"))
    for message in data["messages"]:
        messages += _message(message, kind)
    body: dict[str, Any] = {"model": model_id, "messages": messages, "max_tokens": data["max_tokens"]}
    if data.get("stream") is True:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    for key in ("temperature", "top_p", "top_k"):
        if data.get(key) is not None:
            body[key] = data[key]
    if data.get("stop_sequences"):
        body["stop"] = data["stop_sequences"]
    if data.get("tools"):
        body["tools"] = [_tool(tool) for tool in data["tools"]]
    body |= _tool_choice(data.get("tool_choice"))
    return body


def _system(system: Any) -> list[dict[str, Any]]:
    text = system if isinstance(system, str) else "".join(
        b["text"] for b in system or () if b.get("type") == "text" and isinstance(b.get("text"), str))
    return [{"role": "system", "content": text}] if text else []


def _message(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """One Anthropic message as chat messages: a user turn's tool results first (as `tool` messages),
    then its text and images; an assistant turn's text with its tool calls."""
    role, content = message["role"], message["content"]
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        kind_of = block.get("type")
        if kind_of == "text" and isinstance(block.get("text"), str):
            parts.append({"type": "text", "text": block["text"]})
        elif kind_of == "image":
            parts.append(_image(block, kind))
        elif kind_of == "tool_use":
            calls.append({"id": block.get("id") or "", "type": "function", "function": {
                "name": block.get("name") or "", "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        elif kind_of == "tool_result":
            text, images = _tool_result(block.get("content"), kind)
            results.append({"role": "tool", "tool_call_id": block.get("tool_use_id") or "", "content": text})
            parts += images  # a tool message holds text only: its images go with the turn that follows
    out = results
    if parts or calls:
        turn: dict[str, Any] = {"role": role, "content": _content(parts)}
        if calls:
            turn["tool_calls"] = calls
        out = [*results, turn]
    return out


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text alone as one string (every server takes it; Ollama joins text blocks the same way), else parts."""
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _image(block: dict[str, Any], kind: str) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type') or 'image/png'};base64,{source.get('data') or ''}"
    elif source.get("type") == "url" and kind != "ollama":
        url = str(source.get("url") or "")
    else:  # Ollama's /v1 takes data URLs only, and its own /v1/messages base64 only
        raise Unsupported(f"invalid image source type: {str(source.get('type'))[:40]}. Only base64 images are "
                          "supported by this worker")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(content: Any, kind: str) -> tuple[str, list[dict[str, Any]]]:
    if isinstance(content, str):
        return content, []
    text, images = [], []
    for block in content if isinstance(content, list) else ():
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            text.append(block["text"])
        elif isinstance(block, dict) and block.get("type") == "image":
            images.append(_image(block, kind))
    return "".join(text), images


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object", "properties": {}}}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> dict[str, Any]:
    if not isinstance(choice, dict):
        return {}
    kind = choice.get("type")
    out: dict[str, Any] = {}
    if kind in ("auto", "none"):
        out["tool_choice"] = kind
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False
    return out


# -- count_tokens where the worker cannot count --------------------------------------------------------

def estimate_tokens(data: Mapping[str, Any]) -> int:
    """Input tokens as Ollama's own proxy estimates them (anthropic.EstimateCountTokens): the bytes of
    the system prompt, roles, text, thinking, tool blocks and tool definitions, over four."""
    total = _count(data.get("system"))
    given, tools = data.get("messages"), data.get("tools")
    messages: list = given if isinstance(given, list) else []
    for message in messages:
        if isinstance(message, dict):
            total += len(str(message.get("role") or "")) + _count(message.get("content"))
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict):
            total += sum(len(str(tool.get(k) or "").encode()) for k in ("name", "description"))
            total += len(orjson.dumps(tool["input_schema"])) if tool.get("input_schema") is not None else 0
    tokens = total // 4
    return 1 if tokens == 0 and (messages or data.get("system") is not None) else tokens


def _count(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content.encode())
    if not isinstance(content, list):
        return len(orjson.dumps(content))
    total = 0
    for block in content:
        if not isinstance(block, dict):
            continue
        total += sum(len(block[k].encode()) for k in ("text", "thinking") if isinstance(block.get(k), str))
        if block.get("type") in ("tool_use", "tool_result"):
            total += len(orjson.dumps(block))
    return total


# -- a worker that speaks the Messages API itself ------------------------------------------------------



class Passthrough(ScannedSse):
    """The Messages answer of a worker that serves /v1/messages itself (backends.base.FrontAnswer):
    its SSE passed on in whole events, their data unparsed but for the message_delta that carries the
    usage; each event's name says whether the stream has ended (`message_stop`, `error`). Two repairs:
    an error event in another API's shape (llama-server's) is re-wrapped in Anthropic's, and a stream
    that starts without message_start gets one (llama-server sends it with the first token's text
    only, so an answer whose first token is part of a character has none, and the SDKs' stream
    helpers cannot read a message never started). `model` names the message in that message_start;
    `generates=False` for count_tokens, which generates nothing."""

    def __init__(self, model: str = "", generates: bool = True) -> None:
        super().__init__()
        self._model, self._generates = model, generates
        self._begun = False  # an event that means anything has come
        self._delta = b""  # the message_delta event's data: its usage.output_tokens counts the answer
        self._tokens: int | None = None

    def _scan(self, out: bytes) -> bytes:
        """Notes what the events say; `finished` follows the latest event that means anything (a
        worker that goes on after message_stop has not finished)."""
        if not out:
            return out
        events = (out.replace(b"\r\n", b"\n") if b"\r" in out else out).split(b"\n\n")
        kept: list[bytes] = []
        changed = False
        for raw in events:
            name, data = sse_parts(raw)
            if (name or data) and name != b"ping":  # a comment or a ping means nothing
                if not self._begun and name not in (b"message_start", b"error"):
                    kept.append(self._start())
                    changed = True
                self._begun = True
                self.finished = name in (b"message_stop", b"error")
            if name == b"message_delta":
                self._delta = data
            if name == b"error" and not data.startswith(b'{"type":"error"'):
                raw, changed = stop_event(_error_words(data)).rstrip(b"\n"), True
            kept.append(raw)
        return b"\n\n".join(kept) if changed else out

    def _start(self) -> bytes:
        usage = {"input_tokens": 0, "output_tokens": 0}  # the worker's message_delta says the real counts
        return event("message_start", {"type": "message_start", "message": {
            "id": new_id("msg"), "type": "message", "role": "assistant", "content": [], "model": self._model,
            "stop_reason": None, "stop_sequence": None, "usage": usage}}).rstrip(b"\n")

    def usage(self) -> Usage | None:
        if self._tokens is not None or not self._delta:
            return Usage(self._tokens) if self._tokens is not None else None
        try:
            found = loads_lenient(self._delta)
        except ValueError:
            return None
        return Usage(_output_tokens(found))

    def whole(self, body: bytes) -> bytes:
        if self._generates:
            try:
                self._tokens = _output_tokens(loads_lenient(body))
            except ValueError:
                self._tokens = None
        return body

    def cut(self, message: str) -> bytes:
        return stop_event(message)

    def error(self, body: bytes, status: int) -> bytes:
        return as_anthropic_error(body, status)


def _error_words(data: bytes) -> str:
    try:
        return message_in(loads_lenient(data)) or "the worker failed mid-stream"
    except ValueError:
        return data[:500].decode("utf-8", "replace") or "the worker failed mid-stream"


def _output_tokens(answer: Any) -> int | None:
    usage = answer.get("usage") if isinstance(answer, dict) else None
    tokens = usage.get("output_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None
