"""Checks of OpenAI request bodies (/v1/chat/completions, /v1/completions, /v1/embeddings)
before any worker sees them: a malformed request is a 400 OpenAI-shaped, never a worker's 500.

Pure: reads a parsed body, raises BadRequest naming the field, returns the model the client
named. Only shapes are checked; whether a worker kind can honour a field (say `n`) is decided
by the backend when the request is prepared, so another kind may still serve it.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import BadRequest
from gateway.handlers import fields

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
FORMATS = frozenset({"text", "json_object", "json_schema"})


def chat(data: dict[str, Any]) -> str:
    model = fields.model(data)
    for i, message in enumerate(fields.messages(data)):
        _message(i, message)
    _tools(data.get("tools"))
    _generation(data)
    return model


def completion(data: dict[str, Any]) -> str:
    model = fields.model(data)
    prompt = data.get("prompt")
    if not (isinstance(prompt, str) or _strings_or_tokens(prompt)):
        raise BadRequest("prompt must be a string, a list of strings or a list of token ids")
    _generation(data)
    return model


def embedding(data: dict[str, Any]) -> str:
    model = fields.model(data)
    given = data.get("input")
    if not ((isinstance(given, str) and given) or _strings_or_tokens(given)):
        raise BadRequest("input must be a non-empty string, a list of strings or a list of token ids")
    if data.get("encoding_format") not in (None, "float", "base64"):
        raise BadRequest('encoding_format must be "float" or "base64"')
    fields.positive_int(data, "dimensions")
    return model


def max_tokens(data: dict[str, Any]) -> int | None:
    limit = data.get("max_completion_tokens")
    return limit if limit is not None else data.get("max_tokens")


def _message(i: int, message: Any) -> None:
    if not isinstance(message, dict):
        raise BadRequest(f"messages[{i}] must be an object")
    if message.get("role") not in ROLES:
        raise BadRequest(f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}")
    content = message.get("content")
    if content is not None and not isinstance(content, str | list):
        raise BadRequest(f"messages[{i}].content must be a string, a list of parts or null")
    calls = message.get("tool_calls")
    if calls is not None and not (isinstance(calls, list) and all(isinstance(c, dict) for c in calls)):
        raise BadRequest(f"messages[{i}].tool_calls must be a list of objects")


def _tools(tools: Any) -> None:
    for i, tool in enumerate(fields.listed({"tools": tools}, "tools")):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise BadRequest(f"tools[{i}] must be an object with function.name")


def _generation(data: dict[str, Any]) -> None:
    """Fields chat and completions share."""
    fields.boolean(data, "stream")
    stream = data.get("stream")
    options = data.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise BadRequest("stream_options must be an object")
        if stream is not True:
            raise BadRequest("stream_options is only allowed when stream is true")
    for key in ("n", "max_tokens", "max_completion_tokens"):
        fields.positive_int(data, key)
    stop = data.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise BadRequest("stop must be a string or a list of strings")
    fields.numbers(data, "temperature", "top_p", "presence_penalty", "frequency_penalty")
    _response_format(data.get("response_format"))


def _response_format(fmt: Any) -> None:
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") not in FORMATS:
        raise BadRequest(f"response_format.type must be one of {', '.join(sorted(FORMATS))}")
    if fmt["type"] == "json_schema":
        schema = fmt.get("json_schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("schema", {}), dict):
            raise BadRequest("response_format.json_schema must be an object with a schema object")


def _strings_or_tokens(value: Any) -> bool:
    """A non-empty list of strings, of token ids, or of token-id lists."""
    if not isinstance(value, list) or not value:
        return False
    if all(isinstance(v, str) for v in value):
        return True
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return True
    return all(isinstance(v, list) and v and all(isinstance(t, int) for t in v) for v in value)
