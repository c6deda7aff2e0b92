"""Pure request translation: Ollama's /api/chat, /api/generate, /api/embed(dings) bodies into
the OpenAI-compatible and llama.cpp-native bodies that llama-server and OpenAI-style servers take.

No I/O and no policy. What cannot be honoured raises Unsupported with a message that says
why, so the gateway can try a worker that can, or answer 400.
"""

from __future__ import annotations

from typing import Any

import orjson

# Ollama option -> OpenAI-compatible field (llama-server reads these on /v1 and /completion)
_SAMPLING = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p", "seed": "seed",
             "stop": "stop", "repeat_penalty": "repeat_penalty", "presence_penalty": "presence_penalty",
             "frequency_penalty": "frequency_penalty", "typical_p": "typical_p", "repeat_last_n": "repeat_last_n"}
# Set when a worker starts (llama-server -c, --parallel, -ngl ...), not per request: accepted and left alone.
SERVER_SETTINGS = frozenset({"num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", "use_mmap", "numa",
                             "low_vram", "vocab_only", "use_mlock", "num_keep", "penalize_newline"})


class Unsupported(ValueError):
    """This worker kind cannot honour the request as Ollama would; another kind might."""


def options_of(data: dict, native: bool) -> dict[str, Any]:
    options = data.get("options")
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise Unsupported("options must be an object")
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key in _SAMPLING:
            out[_SAMPLING[key]] = value
        elif key == "num_predict":
            out["n_predict" if native else "max_tokens"] = value
        elif key not in SERVER_SETTINGS:
            raise Unsupported(f"option {key!r} is not supported by this worker")
    return out


def response_format(fmt: Any, native: bool) -> dict[str, Any]:
    """Ollama `format` ("json" or a JSON schema) as a JSON constraint."""
    if fmt in (None, ""):
        return {}
    if fmt == "json":
        return {"json_schema": {}} if native else {"response_format": {"type": "json_object"}}
    if isinstance(fmt, dict):
        if native:
            return {"json_schema": fmt}
        return {"response_format": {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}}
    raise Unsupported('format must be "json" or a JSON schema object')


def chat_body(data: dict, model_id: str) -> dict[str, Any]:
    messages = data.get("messages")
    if messages is None:
        messages = []
    if not isinstance(messages, list):
        raise Unsupported("messages must be a list")
    body: dict[str, Any] = {"model": model_id, "messages": [_message(m) for m in messages],
                            "stream": data.get("stream", True) is not False}
    if body["stream"]:
        body["stream_options"] = {"include_usage": True}
    if data.get("tools"):
        body["tools"] = data["tools"]
    body.update(options_of(data, native=False))
    body.update(response_format(data.get("format"), native=False))
    body.update(thinking(data.get("think")))
    return body


def thinking(think: Any) -> dict[str, Any]:
    """Ollama's `think` for an OpenAI-style chat endpoint: a level ("high", "medium", "low", as
    gpt-oss takes it) is `reasoning_effort`; true or false turn the template's thinking on or off
    (`chat_template_kwargs.enable_thinking`, which llama-server passes to templates such as
    Qwen3's). The thinking comes back apart from the content (`reasoning_content`), as `thinking`."""
    if isinstance(think, str) and think in ("high", "medium", "low"):
        return {"reasoning_effort": think}
    if isinstance(think, bool):
        return {"chat_template_kwargs": {"enable_thinking": think}}
    return {}


def _message(message: Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise Unsupported("each message must be an object")
    role, content = message.get("role", "user"), message.get("content") or ""
    out: dict[str, Any] = {"role": role, "content": content}
    images = message.get("images")
    if images:
        parts = [{"type": "text", "text": content}] if content else []
        parts += [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{img}"}} for img in images]
        out["content"] = parts
    if message.get("tool_calls"):
        out["tool_calls"] = [_tool_call(i, call) for i, call in enumerate(message["tool_calls"])]
    if role == "tool" and message.get("tool_name"):
        out["name"] = message["tool_name"]
    return out


def _tool_call(index: int, call: Any) -> dict[str, Any]:
    function = call.get("function", {}) if isinstance(call, dict) else {}
    arguments = function.get("arguments", {})
    return {"id": f"call_{index}", "type": "function",
            "function": {"name": function.get("name", ""),
                         "arguments": arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()}}


def generate_body(data: dict, model_id: str, native_raw: bool) -> tuple[str, dict[str, Any]]:
    """(upstream path, body). Raw prompts go to a plain completion; others get the model's chat
    template, as Ollama applies it (system, then the prompt as the user turn)."""
    if data.get("template"):
        raise Unsupported("a custom template cannot be applied by this worker; send raw: true with a formatted prompt")
    if data.get("suffix"):
        raise Unsupported("suffix (fill-in-the-middle) is not supported by this worker")
    if data.get("context"):
        raise Unsupported("context continuation is not supported by this worker; send the conversation to /api/chat")
    if data.get("images") and data.get("raw"):
        raise Unsupported("images need the chat template; send them without raw")
    stream = data.get("stream", True) is not False
    if data.get("raw"):
        prompt = data.get("prompt") or ""
        if native_raw:
            body = {"prompt": prompt, "stream": stream, **options_of(data, native=True)}
            body.update(response_format(data.get("format"), native=True))
            return "/completion", {"model": model_id, **body}
        body = {"model": model_id, "prompt": prompt, "stream": stream, **options_of(data, native=False)}
        return "/v1/completions", body
    messages = [{"role": "system", "content": data["system"]}] if data.get("system") else []
    user: dict[str, Any] = {"role": "user", "content": data.get("prompt") or ""}
    if data.get("images"):
        user["images"] = data["images"]
    chat = chat_body({**data, "messages": messages + [user]}, model_id)
    return "/v1/chat/completions", chat


def embed_body(data: dict, model_id: str, legacy: bool) -> dict[str, Any]:
    inputs = data.get("prompt", "") if legacy else data.get("input", [])
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise Unsupported("input must be a string or a list of strings")
    body: dict[str, Any] = {"model": model_id, "input": inputs, "encoding_format": "float"}
    if isinstance(data.get("dimensions"), int):
        body["dimensions"] = data["dimensions"]
    return body
