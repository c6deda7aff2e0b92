"""What a llama.cpp or OpenAI-compatible worker's model can do, as Ollama's `/api/show` lists it
(`capabilities`): completion, tools, vision, thinking, embedding, insert.

Ollama decides from the model it holds (server/images.go `Capabilities()`): `embedding` instead of
`completion` when the GGUF has a pooling type; `vision` when it has a vision block count or a
projector; `tools` when the chat template mentions `tools` or `tool_call`; `thinking` when it holds
`<think>` and `</think>` (or splits prior answers at `</think>` and never names `reasoning_content`);
`insert` when the Go template uses `.Suffix`. The rules here follow it as far as a worker tells:

- llama-server (`GET /props`): `tools` from `chat_template_caps.supports_tools` (which llama-server
  works out by running the template), else from the template text as Ollama reads it; `thinking`
  from the template text as Ollama reads it, or `enable_thinking` in it, or
  `chat_template_caps.supports_reasoning_effort` (gpt-oss); `vision` from `modalities.vision`.
- an OpenAI-compatible server tells nothing: `tools` is taken as given (vLLM, LM Studio, LocalAI and
  llama-cpp-python's server all take `tools`, and one that cannot answers the request with an
  error the client sees, where a missing `tools` makes clients refuse without asking), `vision`
  when the id names a vision model.
- either kind: `embedding` alone when the model's id (or file) names an embedding model, since
  neither `/props` nor `/v1/models` says whether the model pools; never `insert`, because the
  gateway refuses `suffix` for these kinds (backends.translate).

Pure functions over what the worker said: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_EMBEDDING = re.compile(r"embed|minilm|(?<![a-z])(bge|e5|gte|mpnet)(?![a-z])", re.IGNORECASE)
_VISION = re.compile(r"vision|llava|pixtral|moondream|minicpm-v|(?<![a-z])vl(?![a-z])", re.IGNORECASE)


def looks_like_embedding(*names: str) -> bool:
    """A model id or file that names an embedding model (nomic-embed-text, all-MiniLM, bge-m3, e5, gte)."""
    return any(_EMBEDDING.search(name) for name in names if name)


def llamacpp_capabilities(props: Mapping[str, Any], model_id: str) -> list[str]:
    """From llama-server's `/props` for the model (see the module docstring)."""
    if looks_like_embedding(model_id, str(props.get("model_path") or "")):
        return ["embedding"]
    template = "\n".join(t for t in (props.get("chat_template"), props.get("chat_template_tool_use"))
                         if isinstance(t, str))
    caps = given if isinstance(given := props.get("chat_template_caps"), dict) else {}
    modalities = given if isinstance(given := props.get("modalities"), dict) else {}
    tools = caps["supports_tools"] if isinstance(caps.get("supports_tools"), bool) else template_has_tools(template)
    thinking = (template_has_thinking(template) or "enable_thinking" in template
                or caps.get("supports_reasoning_effort") is True)
    found = {"vision": modalities.get("vision") is True, "tools": tools, "thinking": thinking}
    return ["completion", *(name for name, has in found.items() if has)]


def openai_capabilities(model_id: str) -> list[str]:
    """For a model of an OpenAI-compatible server, which tells nothing (see the module docstring)."""
    if looks_like_embedding(model_id):
        return ["embedding"]
    return ["completion", *(["vision"] if _VISION.search(model_id) else []), "tools"]


def template_has_tools(template: str) -> bool:
    """Ollama's chatTemplateHasToolSupport."""
    return "tools" in template or "tool_call" in template


def template_has_thinking(template: str) -> bool:
    """Ollama's chatTemplateHasThinkingSupport."""
    if "<think>" in template and "</think>" in template:
        return True
    splits = "content.split('</think>')" in template or 'content.split("</think>")' in template
    return splits and "reasoning_content" not in template and "<SPECIAL_12>" not in template
