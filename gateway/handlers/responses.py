"""OpenAI's Responses API front (`POST /v1/responses`): the openai SDKs' responses.create / .stream and
Codex-style agents.

Inference takes the same path as every front (handlers/inference.py: router, admission, proxy with
failover, metrics, one request.done line); backends/responses_front.py decides per worker whether it
gets the request natively or translated to chat completions. Here the body is only checked, before any
worker sees it: a malformed request is an OpenAI-shaped 400 naming the field, never a worker's 500.
Only shapes are checked: whether a worker can take an item or part of a type (say `input_file`) is the
backend's to decide when it prepares the request, so another worker may still serve it.

The gateway is stateless and stores no responses: `previous_response_id`, `conversation`,
`item_reference` input and `background` need a stored response and are refused, rather than ignored
as Ollama ignores them (a model answering without the conversation it was pointed at answers wrongly).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.errors import BadRequest
from gateway.handlers import fields
from gateway.handlers.inference import Read, serve
from gateway.handlers.openai_input import FORMATS
from gateway.state import Snapshot

ROLES = frozenset({"user", "assistant", "system", "developer"})
STATELESS = "the gateway stores no responses (each request stands alone): send the whole conversation in input"


async def create(request: web.Request) -> web.StreamResponse:
    return await serve(request, request.path, "responses", read)


def read(data: dict, snap: Snapshot) -> Read:
    model = check(data)
    limit = data.get("max_output_tokens")
    return Read("responses", model, limit if isinstance(limit, int) else snap.config.routing.default_num_predict,
                data.get("stream") is True)


def check(data: dict[str, Any]) -> str:
    """The model the request names, once its shape is one a worker can take."""
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required" if model in (None, "") else "model must be a string")
    for key in ("previous_response_id", "conversation"):
        if data.get(key) is not None:
            raise BadRequest(f"{key} is not supported: {STATELESS}")
    if data.get("background") is True:
        raise BadRequest(f"background is not supported: {STATELESS}")
    _input(data.get("input"))
    if data.get("instructions") is not None and not isinstance(data["instructions"], str):
        raise BadRequest("instructions must be a string")
    _tools(data.get("tools"))
    _settings(data)
    return model


def _input(given: Any) -> None:
    if isinstance(given, str):
        return
    if not isinstance(given, list) or not given:
        raise BadRequest("input must be a string or a non-empty list of input items")
    for i, item in enumerate(given):
        if not isinstance(item, dict):
            raise BadRequest(f"input[{i}] must be an object")
        kind = item.get("type", "message")
        if kind == "item_reference":
            raise BadRequest(f"input[{i}]: item_reference is not supported: {STATELESS}")
        if not isinstance(kind, str):
            raise BadRequest(f"input[{i}].type must be a string")
        if kind == "message":
            _message(i, item)
        elif kind in ("function_call", "function_call_output") and not isinstance(item.get("call_id"), str):
            raise BadRequest(f"input[{i}].call_id must be a string")
        if kind == "function_call" and not (isinstance(item.get("name"), str) and item["name"]
                                            and isinstance(item.get("arguments"), str)):
            raise BadRequest(f"input[{i}]: a function_call needs a name and its arguments as a JSON string")
        if kind == "function_call_output" and not isinstance(item.get("output"), str | list):
            raise BadRequest(f"input[{i}].output must be a string or a list of content parts")


def _message(i: int, item: dict[str, Any]) -> None:
    if item.get("role") not in ROLES:
        raise BadRequest(f"input[{i}].role must be one of {', '.join(sorted(ROLES))}")
    content = item.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not all(isinstance(p, dict) and isinstance(p.get("type"), str)
                                                for p in content):
        raise BadRequest(f"input[{i}].content must be a string or a list of content parts with a type")


def _tools(tools: Any) -> None:
    for i, tool in enumerate(fields.listed({"tools": tools}, "tools")):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise BadRequest(f"tools[{i}] must be an object with a type")
        if tool["type"] == "function" and not (isinstance(tool.get("name"), str) and tool["name"]):
            raise BadRequest(f"tools[{i}]: a function tool needs a name")
        if tool["type"] == "function" and not isinstance(tool.get("parameters") or {}, dict):
            raise BadRequest(f"tools[{i}].parameters must be a JSON schema object")


def _settings(data: dict[str, Any]) -> None:
    fields.boolean(data, "stream")
    fields.positive_int(data, "max_output_tokens")
    fields.numbers(data, "temperature", "top_p")
    choice = data.get("tool_choice")
    if choice is not None and choice not in ("auto", "none", "required") and not isinstance(choice, dict):
        raise BadRequest('tool_choice must be "auto", "none", "required" or an object')
    for key in ("text", "reasoning"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise BadRequest(f"{key} must be an object")
    fmt = (data.get("text") or {}).get("format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") not in FORMATS):
        raise BadRequest(f"text.format.type must be one of {', '.join(sorted(FORMATS))}")
    if isinstance(fmt, dict) and fmt["type"] == "json_schema" and not isinstance(fmt.get("schema"), dict):
        raise BadRequest("text.format.schema must be a JSON schema object")
