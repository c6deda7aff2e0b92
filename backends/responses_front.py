"""Requests from OpenAI Responses clients (`POST /v1/responses`: the openai SDKs' responses.*, Codex-style
agents) as each worker kind takes them, and the relay of an answer from a worker that serves the API itself.

Native where the worker serves it well: Ollama from 0.13.3, its answer passed through (Passthrough).
Everything else is translated to the worker's /v1/chat/completions, which every kind serves, and its
answer back (responses_shape.py, responses_stream.py). Pure: no I/O and no policy.

The gateway is stateless: what needs a stored response or file (`previous_response_id`, `conversation`,
`item_reference`, `file_id`) is refused by the front's checks (gateway/handlers/responses.py) or here,
with Unsupported. The rest is mapped as Ollama's own Responses layer maps it (openai/responses.go), so a
request reads the same to the model whether a worker translates it or serves /v1/responses itself.
"""

from __future__ import annotations

from typing import Any

import orjson

from backends.answers import loads_lenient
from backends.base import FrontRequest, UpstreamCall
from backends.openai_front import ScannedSse, sse_parts
from backends.responses_stream import ResponsesStream
from backends.translate import Unsupported
from backends.usage import Usage
from backends.versions import at_least
from backends.worker_said import as_openai_error

PATH = "/v1/responses"
OLLAMA_RESPONSES_SINCE = "0.13.3"  # the first Ollama release with /v1/responses (PR #13351)
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "summary_text", "refusal"})


def serves_responses(kind: str, version: str | None) -> bool:
    """Whether a worker of `kind` that reports `version` is sent /v1/responses itself. llama-server has the
    route too (PR #18486), but its stream events lack `output_index`, `content_index` and `sequence_number`
    (llama.cpp 0c1e570, the bundled build), and the openai SDK's responses.stream() fails on them
    ("TypeError: list indices must be integers or slices, not NoneType"; tests/real shows it): it is
    translated, as OpenAI-compatible servers are."""
    return kind == "ollama" and at_least(version, OLLAMA_RESPONSES_SINCE)


def prepare(front: FrontRequest, model_id: str, kind: str, version: str | None = None,
            native: bool = True) -> UpstreamCall:
    """The client's Responses request for a worker of `kind`: natively, or as a chat completion."""
    if front.endpoint != "responses":
        raise Unsupported(f"{front.path} is not supported by this worker")
    if native and serves_responses(kind, version):
        return UpstreamCall("POST", PATH, front.body, front="responses", reply=Passthrough())
    data = dict(front.data)
    return UpstreamCall("POST", "/v1/chat/completions", orjson.dumps(chat_request(data, model_id)),
                        front="responses", reply=ResponsesStream(front.model, data))


# -- the request as a chat completion ----------------------------------------------------------

def chat_request(data: dict[str, Any], model_id: str) -> dict[str, Any]:
    """A Responses request as the /v1/chat/completions body a worker takes for `model_id`."""
    body: dict[str, Any] = {"model": model_id, "messages": messages_of(data)}
    if data.get("stream") is True:
        body["stream"], body["stream_options"] = True, {"include_usage": True}
    tools = [_tool(t) for t in data.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"]
    if tools:  # hosted tools (web_search, file_search, ...) have no worker to run them: left out, as llama-server does
        body["tools"] = tools
        if (choice := _tool_choice(data.get("tool_choice"))) is not None:
            body["tool_choice"] = choice
        if isinstance(data.get("parallel_tool_calls"), bool):
            body["parallel_tool_calls"] = data["parallel_tool_calls"]
    if data.get("max_output_tokens") is not None:
        body["max_tokens"] = data["max_output_tokens"]
    for key in ("temperature", "top_p"):
        if data.get(key) is not None:
            body[key] = data[key]
    fmt = (data.get("text") or {}).get("format")
    if isinstance(fmt, dict) and (response_format := _response_format(fmt)):
        body["response_format"] = response_format
    effort = (data.get("reasoning") or {}).get("effort")
    if isinstance(effort, str):
        body["reasoning_effort"] = effort  # llama-server, Ollama /v1 and OpenAI-style servers read it
    return body


def messages_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """`instructions` and `input` as chat messages: a function_call joins the assistant message
    before it (consecutive calls become one message's tool_calls), its output becomes a tool message."""
    messages: list[dict[str, Any]] = []
    if isinstance(data.get("instructions"), str) and data["instructions"]:
        messages.append({"role": "system", "content": data["instructions"]})
    given = data.get("input")
    if isinstance(given, str):
        return [*messages, {"role": "user", "content": given}]
    for item in given or ():
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item))
        elif kind == "function_call":
            _add_call(messages, item)
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item.get("call_id", ""),
                             "content": _tool_output(item.get("output"))})
        elif kind != "reasoning":  # a model's past reasoning is not part of a chat prompt: dropped
            raise Unsupported(f"input items of type {kind!r} are not supported by this worker")
    return messages


def _message(item: dict[str, Any]) -> dict[str, Any]:
    role = ROLES.get(item.get("role", "user"), "user")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    parts = [_part(p) for p in content or ()]
    if not any(p["type"] == "image_url" for p in parts):
        return {"role": role, "content": "".join(p["text"] for p in parts)}  # text joins as Ollama joins it
    return {"role": role, "content": parts}


def _part(part: Any) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in _TEXT_PARTS:
        return {"type": "text", "text": str(part.get("text") or part.get("refusal") or "")}
    if kind == "input_image":
        if not isinstance(part.get("image_url"), str):
            raise Unsupported("input_image needs an image_url (a data: URL); the gateway keeps no files for file_id")
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise Unsupported(f"content parts of type {kind!r} are not supported by this worker")


def _add_call(messages: list[dict[str, Any]], item: dict[str, Any]) -> None:
    arguments = item.get("arguments")
    call = {"id": item.get("call_id") or item.get("id") or "", "type": "function",
            "function": {"name": item.get("name", ""),
                         "arguments": arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()}}
    if messages and messages[-1]["role"] == "assistant":
        messages[-1].setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})


def _tool_output(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        parts = [_part(p) for p in output]
        if any(p["type"] != "text" for p in parts):
            raise Unsupported("a function_call_output with images is not supported by chat workers")
        return "".join(p["text"] for p in parts)
    return orjson.dumps(output).decode()


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = {"name": tool.get("name", ""), "parameters": tool.get("parameters") or {"type": "object",
                                                                                       "properties": {}}}
    if tool.get("description"):
        function["description"] = tool["description"]
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        return "required" if choice.get("mode") == "required" else "auto"
    return None  # a hosted tool's choice: the chat default (auto) stands


def _response_format(fmt: dict[str, Any]) -> dict[str, Any] | None:
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema: dict[str, Any] = {"name": fmt.get("name") or "response", "schema": fmt.get("schema") or {}}
        if isinstance(fmt.get("strict"), bool):
            schema["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": schema}
    return None


# -- a worker that serves the Responses API itself ------------------------------------------------

_ENDS = (b"response.completed", b"response.incomplete", b"response.failed", b"error")


class Passthrough(ScannedSse):
    """The Responses answer of a worker that serves /v1/responses itself (backends.base.FrontAnswer): its
    SSE passed on in whole events, unparsed but for the first (whose response id a cut's response.failed
    names) and the one that ends the stream (completed, incomplete, failed or error), whose
    response.usage says what the answer cost. Events are counted so a cut's own carry on the numbering."""

    def __init__(self) -> None:
        super().__init__()
        self._id: str | None = None
        self._count = 0
        self._last = b""  # the data of the event that ended the stream
        self._tokens: int | None = None

    def _scan(self, out: bytes) -> bytes:
        if not out:
            return out
        text = out.replace(b"\r\n", b"\n")
        self._count += text.count(b"\n\n")
        if self._id is not None and not any(end in out for end in _ENDS):
            return out
        for raw in text.split(b"\n\n"):
            name, data = sse_parts(raw)
            if self._id is None and name == b"response.created":
                self._id = _response_id(data)
            if name in _ENDS:
                self.finished, self._last = True, data
        return out

    def usage(self) -> Usage | None:
        if self._tokens is not None or not self._last:
            return Usage(self._tokens) if self._tokens is not None else None
        try:
            found = loads_lenient(self._last)
        except ValueError:
            return None
        return _usage(found.get("response") if isinstance(found, dict) else None)

    def whole(self, body: bytes) -> bytes:
        try:
            found = _usage(loads_lenient(body))
        except ValueError:
            found = None
        self._tokens = found.tokens if found else None
        return body

    def cut(self, message: str) -> bytes:
        error = {"code": "server_error", "message": message}
        out = sse_event("error", {**error, "param": None, "sequence_number": self._count})
        if self._id is None:
            return out
        failed = {"id": self._id, "object": "response", "status": "failed", "error": error}
        return out + sse_event("response.failed", {"sequence_number": self._count + 1, "response": failed})

    def error(self, body: bytes, status: int) -> bytes:
        return as_openai_error(body, status)


def sse_event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def _response_id(data: bytes) -> str | None:
    try:
        found = loads_lenient(data)
    except ValueError:
        return None
    response = found.get("response") if isinstance(found, dict) else None
    given = response.get("id") if isinstance(response, dict) else None
    return given[:200] if isinstance(given, str) else None  # a worker's word, bounded


def _usage(response: Any) -> Usage | None:
    """Generated tokens from a worker's own Response object."""
    usage = response.get("usage") if isinstance(response, dict) else None
    tokens = usage.get("output_tokens") if isinstance(usage, dict) else None
    return Usage(tokens) if isinstance(tokens, int) and not isinstance(tokens, bool) else None
