"""The JSON keys Ollama's Go server decodes per front endpoint, and the one check that refuses a key
Go would match case-insensitively while the gateway reads it exactly.

Go's encoding/json matches an object key to a struct field ignoring case (the last match wins),
so `{"model": "allowed", "Model": "other"}` is served as `other` while access control judged
`allowed`. `check_keys` refuses (400, naming the key) any key that folds onto a field of the
endpoint's Go structs, or one the gateway itself reads, unless it is spelled exactly; a worker
then reads exactly the fields the gateway judged. Pure: no I/O; keys are never echoed whole.

Map-typed fields (`options`, `files`, `parameters`, tool-call `arguments`) are matched exactly by
Go (`Options.FromMap` looks keys up in a map), and `format`, `response_format.json_schema.schema`
and tool parameter schemas hold the client's own keys: none of them is looked inside.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import BadRequest


@dataclass(frozen=True, slots=True)
class Struct:
    """A Go struct as its decoder sees it: field name -> the struct its value decodes into (a list
    value: a list of those), or None when the value is decoded whole (scalar, map, raw JSON, any)."""

    fields: Mapping[str, Struct | None]
    folded: Mapping[str, str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "folded", {name.lower(): name for name in self.fields})


def struct(*leaves: str, **nested: Struct | None) -> Struct:
    return Struct({**dict.fromkeys(leaves), **nested})


def merged(*parts: Struct, **nested: Struct | None) -> Struct:
    fields: dict[str, Struct | None] = {}
    for part in parts:
        fields.update(part.fields)
    return Struct({**fields, **nested})


# api/types.go (ollama/ollama). `name` is read by the gateway on every /api endpoint (older clients
# send it instead of `model`), so its variants are refused there too.
_TOOL_CALL = struct("id", function=struct("index", "name", "arguments"))
_MESSAGE = struct("role", "content", "thinking", "images", "tool_name", "tool_call_id", tool_calls=_TOOL_CALL)
_TOOL = struct("type", "items", function=struct("name", "description", "parameters"))
_RUN = struct("model", "name", "stream", "format", "keep_alive", "options", "think", "truncate", "shift",
              "_debug_render_only", "logprobs", "top_logprobs")
_GENERATE = merged(_RUN, struct("prompt", "suffix", "system", "template", "context", "raw", "images"))
_CHAT = merged(_RUN, messages=_MESSAGE, tools=_TOOL)
_TRANSFER = struct("model", "name", "insecure", "username", "password", "stream")
_CREATE = struct("model", "name", "stream", "quantize", "quantization", "draft_quantize", "from", "remote_host",
                 "files", "draft_files", "adapters", "template", "license", "system", "parameters", "renderer",
                 "parser", "requires", "info",
                 "modelfile", "path",  # what Ollama before 0.5 read
                 messages=_MESSAGE)

# openai/openai.go: Ollama's /v1 structs, plus what the gateway reads there (max_completion_tokens, n).
_V1_TOOL_CALL = struct("id", "index", "type", function=struct("name", "arguments"))
_V1_MESSAGE = struct("role", "content", "reasoning", "name", "tool_call_id", tool_calls=_V1_TOOL_CALL)
_V1_RUN = struct("model", "stream", "max_tokens", "max_completion_tokens", "n", "seed", "stop", "temperature",
                 "frequency_penalty", "presence_penalty", "top_p", "logprobs", "_debug_render_only",
                 stream_options=struct("include_usage"))
_V1_CHAT = merged(_V1_RUN, struct("reasoning_effort", "top_logprobs"), messages=_V1_MESSAGE, tools=_TOOL,
                  reasoning=struct("effort"), response_format=struct("type", json_schema=struct("schema")))
_V1_COMPLETION = merged(_V1_RUN, struct("prompt", "suffix"))
# openai/responses.go: an input item is one of several structs by its type; their fields together.
_V1_RESPONSES_TOOL = struct("type", "name", "description", "strict", "parameters", "tools")
_V1_RESPONSES = struct(
    "model", "background", "conversation", "include", "instructions", "max_output_tokens", "temperature",
    "top_p", "truncation", "stream", "previous_response_id",
    input=struct("id", "type", "role", "call_id", "name", "arguments", "output", "encrypted_content",
                 content=struct("type", "text", "detail", "file_id", "image_url", "file_data", "file_url", "filename"),
                 summary=struct("type", "text")),
    reasoning=struct("effort", "generate_summary", "summary"),
    text=struct(format=struct("type", "name", "schema", "strict")), tools=_V1_RESPONSES_TOOL)
# anthropic/anthropic.go: MessagesRequest (Ollama 0.14+ serves /v1/messages; `system` and tool-result
# `content` are `any`, decoded as maps and read exactly).
_A_BLOCK = struct("type", "text", "citations", "id", "name", "input", "tool_use_id", "content", "is_error",
                  "thinking", "signature", source=struct("type", "media_type", "data", "url"))
_ANTHROPIC = struct("model", "max_tokens", "system", "stream", "temperature", "top_p", "top_k", "stop_sequences",
                    messages=struct("role", content=_A_BLOCK),
                    tools=struct("type", "name", "description", "input_schema", "max_uses"),
                    tool_choice=struct("type", "name", "disable_parallel_tool_use"),
                    thinking=struct("type", "budget_tokens"), metadata=struct("user_id"),
                    output_config=struct("effort"))

FIELDS: Mapping[str, Struct] = {
    "/api/generate": _GENERATE,
    "/api/chat": _CHAT,
    "/api/embed": struct("model", "name", "input", "keep_alive", "truncate", "dimensions", "options"),
    "/api/embeddings": struct("model", "name", "prompt", "keep_alive", "options"),
    "/api/show": struct("model", "name", "system", "template", "verbose", "options"),
    "/api/pull": _TRANSFER,
    "/api/push": _TRANSFER,
    "/api/create": _CREATE,
    "/api/copy": struct("source", "destination"),
    "/api/delete": struct("model", "name"),
    "/v1/chat/completions": _V1_CHAT,
    "/v1/completions": _V1_COMPLETION,
    "/v1/embeddings": struct("model", "input", "dimensions", "encoding_format"),
    "/v1/responses": _V1_RESPONSES,
    "/v1/messages": _ANTHROPIC,
}

# Go folds each rune to the smallest rune of its simple case-fold orbit (encoding/json foldName).
# The only non-ASCII runes whose orbit holds an ASCII letter are the Kelvin sign U+212A (with K, k)
# and the long s U+017F (with S, s); Go pins dotless i (U+0131) and capital I with dot (U+0130) to
# themselves (unicode.caseOrbit), so they match nothing. Every field name is ASCII, so this is the
# whole of Go's matching for them.
_TO_ASCII = {0x212A: "k", 0x017F: "s"}


def _names(fields: Struct) -> set[str]:
    return set(fields.fields).union(*(_names(n) for n in fields.fields.values() if n is not None))


_LONGEST = max(len(name) for fields in FIELDS.values() for name in _names(fields))


def go_fold(key: str) -> str | None:
    """The key as Go compares it with an ASCII field name, or None when it matches no ASCII name."""
    if len(key) > _LONGEST:  # no field is longer: nothing to fold, however long the key
        return None
    folded = key.translate(_TO_ASCII)
    return folded.lower() if folded.isascii() else None


def check_keys(data: dict[str, Any], path: str) -> None:
    """400 when a key of the body folds (as Go folds) onto a field of `path`'s Go structs but is not
    spelled exactly. Exact duplicates are fine: orjson and Go both keep the last one."""
    fields = FIELDS.get(path)
    if fields is not None:
        _check(data, fields, "")


def _check(obj: dict[str, Any], fields: Struct, where: str) -> None:
    for key, value in obj.items():
        if key in fields.fields:
            nested = fields.fields[key]
            if nested is not None:
                _nested(value, nested, f"{where}.{key}" if where else key)
            continue
        fold = go_fold(key)
        name = fields.folded.get(fold) if fold is not None else None
        if name is not None:
            place = f" in {where}" if where else ""
            raise BadRequest(f"key {ascii(key)}{place} would be read by Ollama as {name!r}: "  # a field's length
                             f"spell it exactly {name!r} (keys that differ only in case are refused)")


def _nested(value: Any, fields: Struct, where: str) -> None:
    if isinstance(value, dict):
        _check(value, fields, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict):
                _check(item, fields, f"{where}[{i}]")
