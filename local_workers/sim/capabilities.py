"""What a simulated model can do, as its namesake in Ollama's library does: the `/api/show`
capabilities, the refusals Ollama answers a request that asks for more, and the arguments of a
simulated tool call, filled from the tool's JSON schema.

The library's facts (ollama.com/library pages and their templates): llama3.1/3.2/3.3, qwen2.5,
mistral and mixtral call tools; qwen3, deepseek-r1 and gpt-oss call tools and think; qwen2.5-coder
calls tools and fills in the middle (its `-base` tags only fill in); starcoder2, codestral,
deepseek-coder-v2 and codellama's `code` tags fill in; llava, llama3.2-vision, qwen2.5vl and gemma3
(but gemma3:1b and :270m, text only) see images; nomic-embed-text, all-minilm, mxbai-embed-large
and the like only embed; llama3, llama2, gemma, gemma2 and phi3 only complete. A name the library
does not have (the made-up models tests use) completes and calls tools, as the simulator serves it.

Ollama's order is kept: completion, vision (from the model file), then what the template adds:
tools, insert, thinking. Pure values: no server, no state, no gateway or backends imports.
"""

from __future__ import annotations

import re
from typing import Any

from local_workers.sim.models import SimModel

ORDER = ("vision", "tools", "insert", "thinking")
UNLISTED = frozenset({"tools"})  # what a name the library does not have can do in the simulator
LIBRARY: dict[str, frozenset[str]] = {
    **dict.fromkeys(("llama3.1", "llama3.2", "llama3.3", "qwen2.5", "mistral", "mistral-nemo", "mixtral"),
                    frozenset({"tools"})),
    **dict.fromkeys(("qwen3", "deepseek-r1", "gpt-oss"), frozenset({"tools", "thinking"})),
    "qwen2.5-coder": frozenset({"tools", "insert"}),
    **dict.fromkeys(("starcoder2", "codestral", "deepseek-coder-v2"), frozenset({"insert"})),
    **dict.fromkeys(("llava", "llama3.2-vision", "qwen2.5vl", "gemma3"), frozenset({"vision"})),
    **dict.fromkeys(("llama3", "llama2", "gemma", "gemma2", "phi3", "tinyllama", "codellama"), frozenset()),
}
EMBEDDING_ONLY = frozenset({"nomic-embed-text", "all-minilm", "mxbai-embed-large", "bge-m3", "bge-large",
                            "snowflake-arctic-embed", "snowflake-arctic-embed2", "granite-embedding"})
THINK_LEVELS = ("high", "medium", "low", "max")
_DEPTH = 8  # how deep a tool's schema is followed; deeper required values are null
_FORMATS = {"date": "1970-01-01", "date-time": "1970-01-01T00:00:00Z", "time": "00:00:00",
            "email": "user@example.com", "uri": "https://example.com", "url": "https://example.com",
            "uuid": "00000000-0000-0000-0000-000000000000"}
_WORD = re.compile(r"[\w-]+")


def capabilities(model: SimModel) -> list[str]:
    """The model's `/api/show` capabilities."""
    base, _, tag = model.name.rpartition(":")  # stored names are normalised: always tagged
    if base in EMBEDDING_ONLY or model.is_embedding:
        return ["embedding"]
    extra = _by_tag(base, tag, LIBRARY.get(base, UNLISTED))
    return ["completion", *(c for c in ORDER if c in extra)]


def template(can: list[str]) -> str:
    """A Go template in the style of the library's chatml ones, holding what Ollama reads the
    capabilities from (`.Tools`, `.Suffix`, `<think>`): clients such as LiteLLM read it too."""
    if "completion" not in can:
        return "{{ .Prompt }}"
    fim = "{{- if .Suffix }}<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}<|fim_middle|>\n{{- else }}"
    parts = [fim] if "insert" in can else []
    if "tools" in can:
        parts.append("{{- if .Tools }}<|im_start|>system\n# Tools\n{{- range .Tools }}\n{{ . }}\n{{- end }}<|im_end|>\n"
                     "{{ end }}")
    parts.append("{{- range .Messages }}<|im_start|>{{ .Role }}\n")
    if "thinking" in can:
        parts.append("{{- if .Thinking }}<think>{{ .Thinking }}</think>\n{{ end }}")
    if "tools" in can:
        parts.append("{{- range .ToolCalls }}<tool_call>{{ .Function }}</tool_call>{{ end }}")
    parts.append("{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n")
    return "".join(parts) + ("{{- end }}" if "insert" in can else "")


def _by_tag(base: str, tag: str, extra: frozenset[str]) -> frozenset[str]:
    """Tags of one library model that differ from the rest of it."""
    if base == "gemma3" and tag.split("-")[0] in ("1b", "270m"):
        return frozenset()
    if base == "qwen2.5-coder" and "base" in tag:
        return frozenset({"insert"})
    if base == "codellama" and re.match(r"(7b-|13b-)?code\b", tag):  # CodeLlama's 7B and 13B code models
        return frozenset({"insert"})
    return extra


def wants_thinking(think: Any) -> bool:
    """api.ThinkValue.Bool(): true, or a level string."""
    return think is True or think in THINK_LEVELS


def refusal(model: SimModel, name: str, data: dict, chat: bool) -> str | None:
    """Ollama's 400 message for a chat or generate request the model cannot serve, or None; `name`
    as the client spelled it. Thinking is checked first, as Ollama's handlers do."""
    can = capabilities(model)
    if wants_thinking(data.get("think")) and "thinking" not in can:
        return f'"{name}" does not support thinking'
    if "completion" not in can:
        return f'"{name}" does not support {"chat" if chat else "generate"}'
    wanted = [c for c, asked in (("tools", chat and data.get("tools")), ("insert", not chat and data.get("suffix")))
              if asked and c not in can]
    return f"{full_name(name)} does not support {' '.join(wanted)}" if wanted else None


def full_name(name: str) -> str:
    """A model name with Ollama's defaults filled in (model.ParseName(...).String()):
    registry.ollama.ai/library/NAME:latest."""
    *path, last = name.split("/")
    last = last if ":" in last else f"{last}:latest"
    if not path:
        path = ["registry.ollama.ai", "library"]
    elif len(path) == 1:
        path = ["registry.ollama.ai", *path]
    return "/".join([*path, last])


def tool_call(tools: list, messages: list) -> dict | None:
    """The call the simulated model makes: with tools offered and the user speaking last, it calls
    the first tool whose name the user's last message contains, else the first tool, with every
    required argument filled from the tool's parameter schema (see `value_for`)."""
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    if not tools or last.get("role") != "user":
        return None
    functions = [f for t in tools if isinstance(t, dict) and isinstance(f := t.get("function"), dict)]
    said = str(last.get("content") or "")
    chosen = next((f for f in functions if f.get("name") and str(f["name"]).lower() in said.lower()),
                  functions[0] if functions else {})
    words = _WORD.findall(said)
    return {"function": {"name": chosen.get("name") or "tool",
                         "arguments": arguments_for(chosen.get("parameters"), words[-1] if words else "")}}


def arguments_for(parameters: Any, word: str, depth: int = 0) -> dict:
    """A tool's arguments (or any object): its schema's required properties, each as `value_for`
    fills it, and no others."""
    schema = parameters if isinstance(parameters, dict) else {}
    properties = given if isinstance(given := schema.get("properties"), dict) else {}
    required = given if isinstance(given := schema.get("required"), list) else []
    return {k: value_for(properties.get(k), k, word, depth + 1) for k in required if isinstance(k, str)}


def value_for(schema: Any, key: str, word: str, depth: int) -> Any:
    """A value that satisfies a JSON schema's type, deterministically: its `const`, `default`, first
    `enum` value or first example when it has one; an object gets its required properties (only
    those), an array one item, a number its minimum (else 1, capped by its maximum), a boolean
    true, a string its format's example or else the last word of the user's message (else the
    property's name). `anyOf`/`oneOf` take their first choice; past _DEPTH levels, null."""
    if not isinstance(schema, dict):
        return word or key or "value"  # a property with no schema: any string will do
    if depth > _DEPTH:
        return None
    for given in ("const", "default"):
        if given in schema:
            return schema[given]
    for listed in ("enum", "examples"):
        if isinstance(schema.get(listed), list) and schema[listed]:
            return schema[listed][0]
    for choice in ("anyOf", "oneOf"):
        if isinstance(schema.get(choice), list) and schema[choice]:
            return value_for(schema[choice][0], key, word, depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        return arguments_for(schema, word, depth)
    if kind == "array":
        return [value_for(schema.get("items"), key, word, depth + 1)]
    if kind in ("integer", "number"):
        return _number(schema, kind)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _FORMATS.get(str(schema.get("format")), word or key or "value")


def _type_of(schema: dict) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    return "object" if "properties" in schema else "array" if "items" in schema else "string"


def _number(schema: dict, kind: str) -> int | float:
    low, above, high = (_numeric(schema.get(k)) for k in ("minimum", "exclusiveMinimum", "maximum"))
    value = low if low is not None else above + 1 if above is not None else 1
    if high is not None and value > high:
        value = high
    return int(value) if kind == "integer" else float(value)


def _numeric(value: Any) -> int | float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
