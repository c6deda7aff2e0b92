"""Checks of Anthropic Messages bodies (/v1/messages, /v1/messages/count_tokens) before any worker sees
them: a malformed request is a 400 in Anthropic's shape (gateway/errors.py shapes it by path), never a
worker's 500 (llama-server answers a missing `messages` with one).

Pure: reads a parsed body, raises BadRequest naming the field, returns the model the client named.
What Ollama's own /v1/messages checks (model, max_tokens > 0, messages non-empty) is checked the
same way; unknown fields are ignored as Ollama ignores them. Only shapes are checked: whether a
worker kind can honour a field (an image by URL) is decided when the request is prepared for it.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import BadRequest
from gateway.handlers import fields

ROLES = ("user", "assistant")
TOOL_CHOICES = ("auto", "any", "tool", "none")


def messages(data: dict[str, Any]) -> str:
    model = fields.model(data)
    limit = data.get("max_tokens")
    if limit is None:
        raise BadRequest("max_tokens: field required")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise BadRequest("max_tokens is required and must be positive")
    fields.boolean(data, "stream")
    _conversation(data)
    fields.numbers(data, "temperature", "top_p")
    top_k, stop = data.get("top_k"), data.get("stop_sequences")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)):
        raise BadRequest("top_k must be an integer")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise BadRequest("stop_sequences must be a list of strings")
    return model


def count_tokens(data: dict[str, Any]) -> str:
    model = fields.model(data)
    _conversation(data)
    return model


def _conversation(data: dict[str, Any]) -> None:
    """What both endpoints read: system, messages, tools, tool_choice."""
    _system(data.get("system"))
    for i, message in enumerate(fields.messages(data)):
        _message(i, message)
    _tools(data.get("tools"))
    _tool_choice(data.get("tool_choice"))


def _system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list) or not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in system):
        raise BadRequest("system must be a string or a list of content blocks")
    if any(b["type"] == "text" and not isinstance(b.get("text"), str) for b in system):
        raise BadRequest("system: a text block needs its text as a string")


def _message(i: int, message: Any) -> None:
    if not isinstance(message, dict):
        raise BadRequest(f"messages.{i}: must be an object")
    if message.get("role") not in ROLES:
        raise BadRequest(f"messages.{i}.role: must be 'user' or 'assistant'")
    content = message.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise BadRequest(f"messages.{i}.content: must be a string or a list of content blocks")
    for j, block in enumerate(content):
        _block(f"messages.{i}.content.{j}", block)


def _block(where: str, block: Any) -> None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise BadRequest(f"{where}: a content block must be an object with a type")
    kind = block["type"]
    if kind == "text" and not isinstance(block.get("text"), str):
        raise BadRequest(f"{where}.text: must be a string")
    if kind == "image":
        _image(where, block.get("source"))
    if kind == "tool_use":
        if not isinstance(block.get("id"), str) or not block["id"]:
            raise BadRequest(f"{where}: tool_use block missing required 'id' field")
        if not isinstance(block.get("name"), str) or not block["name"]:
            raise BadRequest(f"{where}: tool_use block missing required 'name' field")
        if block.get("input") is not None and not isinstance(block["input"], dict):
            raise BadRequest(f"{where}.input: must be an object")
    if kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str):
            raise BadRequest(f"{where}.tool_use_id: must be a string")
        inner = block.get("content")
        if inner is not None and not isinstance(inner, str):
            if not isinstance(inner, list):
                raise BadRequest(f"{where}.content: must be a string or a list of content blocks")
            for k, part in enumerate(inner):
                _block(f"{where}.content.{k}", part)


def _image(where: str, source: Any) -> None:
    if not isinstance(source, dict):
        raise BadRequest(f"{where}: invalid image source")
    if source.get("type") == "base64":
        if not isinstance(source.get("data"), str) or not isinstance(source.get("media_type"), str):
            raise BadRequest(f"{where}.source: a base64 image needs media_type and data as strings")
    elif source.get("type") == "url":
        if not isinstance(source.get("url"), str):
            raise BadRequest(f"{where}.source.url: must be a string")
    else:
        raise BadRequest(f"{where}.source.type: must be 'base64' or 'url'")


def _tools(tools: Any) -> None:
    for i, tool in enumerate(fields.listed({"tools": tools}, "tools")):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            raise BadRequest(f"tools.{i}: must be an object with a name")
        schema = tool.get("input_schema")
        if schema is not None and not isinstance(schema, dict):
            raise BadRequest(f"tools.{i}.input_schema: must be an object")
        if tool.get("description") is not None and not isinstance(tool["description"], str):
            raise BadRequest(f"tools.{i}.description: must be a string")


def _tool_choice(choice: Any) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in TOOL_CHOICES:
        raise BadRequest(f"tool_choice.type: must be one of {', '.join(TOOL_CHOICES)}")
    if choice["type"] == "tool" and not (isinstance(choice.get("name"), str) and choice["name"]):
        raise BadRequest("tool_choice.name: required when tool_choice.type is 'tool'")
