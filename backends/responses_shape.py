"""What a Response is made of, for answers translated from a worker's chat completion: the Response
object (its id, status and the request fields it echoes), its output items (message, reasoning,
function_call), its usage from chat `usage` or llama.cpp `timings`, and a whole chat completion as a
Response. Stream events are responses_stream.py's.

Pure: no I/O and no policy. A length stop is `completed`, as Ollama and llama-server say it (STATUS).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson

from backends.answers import loads_lenient
from backends.openai_front import usage_of
from backends.usage import Usage

# A length stop says `completed`, as Ollama (>= 0.13.3) and llama-server say it themselves: the same
# request must read the same whichever worker answers it, and the openai SDK's responses.stream()
# raises on OpenAI's `response.incomplete` ("Didn't receive a response.completed event").
STATUS = "completed"


class Shape:
    """One answer's Response object: its id and the request fields a Response echoes, for a whole
    answer (`whole`) and for the lifecycle events of a stream (responses_stream.py)."""

    def __init__(self, model: str, request: dict[str, Any]) -> None:
        self.model, self.request = model, request
        self.hex = secrets.token_hex(12)
        self.id = f"resp_{self.hex}"
        self.created_at = int(time.time())

    def item_id(self, prefix: str, index: int) -> str:
        return f"{prefix}_{self.hex}_{index}"

    def response(self, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None = None,
                 error: dict[str, Any] | None = None) -> dict[str, Any]:
        asked = self.request
        fmt = (asked.get("text") or {}).get("format") if isinstance(asked.get("text"), dict) else None
        reasoning = asked.get("reasoning") if isinstance(asked.get("reasoning"), dict) else None
        return {"id": self.id, "object": "response", "created_at": self.created_at, "status": status,
                "completed_at": int(time.time()) if status == "completed" else None, "error": error,
                "incomplete_details": None, "model": self.model, "instructions": asked.get("instructions"),
                "output": output, "usage": usage, "tools": asked.get("tools") or [],
                "tool_choice": asked.get("tool_choice", "auto"),
                "parallel_tool_calls": asked.get("parallel_tool_calls", True),
                "temperature": asked.get("temperature"), "top_p": asked.get("top_p"),
                "max_output_tokens": asked.get("max_output_tokens"), "previous_response_id": None,
                "text": {"format": fmt if isinstance(fmt, dict) else {"type": "text"}},
                "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}
                if reasoning else None, "truncation": "disabled", "store": False, "background": False,
                "metadata": asked.get("metadata") or {}}

    def whole(self, body: bytes) -> tuple[bytes, Usage | None]:
        """A whole chat completion as a Response object, and what it cost."""
        answer = loads_lenient(body)
        if not isinstance(answer, dict) or answer.get("error"):
            raise ValueError("worker answered 200 with an error or with no chat completion")
        choice = (answer.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        output: list[dict[str, Any]] = []
        if thinking := reasoning_of(message):
            output.append(reasoning_item(self.item_id("rs", 0), thinking))
        calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
        text = message.get("content") if isinstance(message.get("content"), str) else ""
        if text or not calls:
            output.append(message_item(self.item_id("msg", len(output)), text))
        for call in calls:
            function = call.get("function") or {}
            arguments = function.get("arguments")
            arguments = arguments if isinstance(arguments, str) else orjson.dumps(arguments or {}).decode()
            output.append(call_item(self.item_id("fc", len(output)), call.get("id") or new_call_id(),
                                    function.get("name") or "", arguments or "{}"))
        usage = usage_object(answer.get("usage"), answer.get("timings"))
        return orjson.dumps(self.response(STATUS, output, usage)), accounted(answer)


def reasoning_of(delta: dict[str, Any]) -> str:
    """A model's thinking: llama-server says reasoning_content, Ollama's /v1 reasoning."""
    for key in ("reasoning_content", "reasoning"):
        if isinstance(delta.get(key), str) and delta[key]:
            return delta[key]
    return ""


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str | None, status: str = "completed") -> dict[str, Any]:
    content = [text_part(text)] if text is not None else []
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def reasoning_item(item_id: str, text: str | None) -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": text}] if text is not None else []
    return {"id": item_id, "type": "reasoning", "summary": summary}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def usage_object(usage: Any, timings: Any) -> dict[str, Any] | None:
    """Chat `usage` (or llama.cpp's `timings`) as a Response's usage; None when the worker said neither."""
    usage = usage if isinstance(usage, dict) else {}
    timings = timings if isinstance(timings, dict) else {}
    if not usage and not timings:
        return None
    given = _count(usage.get("prompt_tokens", timings.get("prompt_n")))
    made = _count(usage.get("completion_tokens", timings.get("predicted_n")))
    cached = _count((usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
    thought = _count((usage.get("completion_tokens_details") or {}).get("reasoning_tokens"))
    return {"input_tokens": given, "output_tokens": made, "total_tokens": given + made,
            "input_tokens_details": {"cached_tokens": cached}, "output_tokens_details": {"reasoning_tokens": thought}}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def accounted(answer: dict[str, Any]) -> Usage | None:
    """The gateway's own accounting of one chat answer or chunk: as for /v1 chat (openai_front.usage_of)."""
    return usage_of(answer)
