"""What a worker reports about the work an answer cost: generated tokens and its own timings.

Read from an Ollama final answer (`eval_count`, the `*_duration` nanoseconds) and from OpenAI
`usage` / llama.cpp `timings` (backends/openai_front.py). Pure: no I/O, and a field a worker did
not report (or reported as something other than a number) is None, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from backends.upstream import worker_json


@dataclass(frozen=True, slots=True)
class Usage:
    tokens: int | None = None  # generated tokens
    eval_s: float | None = None  # decode time
    service_s: float | None = None  # prompt + decode time: the worker busy on this request alone
    load_s: float | None = None  # model load the request waited for
    queued_s: float | None = None  # what is left of Ollama's total_duration: waiting at the worker


NONE = Usage()

# A key at the top level of the JSON (not inside a string, where every quote is escaped) and its number.
_FIELD = re.compile(rb'(?<!\\)"(eval_count|load_duration|prompt_eval_duration|eval_duration|total_duration)"'
                    rb"\s*:\s*(\d{1,20})")


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def ollama_final(final: dict) -> Usage:
    """The accounting fields of an Ollama final answer (eval_count and the durations)."""
    count, load_ns = _int(final.get("eval_count")), _int(final.get("load_duration"))
    prompt_ns, eval_ns, total_ns = (_int(final.get(k)) for k in ("prompt_eval_duration", "eval_duration",
                                                                   "total_duration"))
    load_s = load_ns / 1e9 if load_ns is not None else None
    if prompt_ns is None or eval_ns is None:
        return Usage(count, load_s=load_s)
    queued_s = None
    if total_ns is not None and total_ns > 0:  # what is left of the total was waiting at the worker
        queued_s = max(0.0, (total_ns - prompt_ns - eval_ns - (load_ns or 0)) / 1e9)
    return Usage(count, eval_ns / 1e9 if eval_ns > 0 else None, (prompt_ns + eval_ns) / 1e9, load_s, queued_s)


def ollama_line(line: bytes) -> Usage:
    """The usage in an Ollama stream's final line (`"done": true`): parsed once per answer, not per chunk."""
    if b'"done":true' not in line.replace(b" ", b""):
        return NONE
    try:
        final = worker_json(line)
    except ValueError:  # not JSON, or too costly to parse: accounting goes without it
        return NONE
    return ollama_final(final) if isinstance(final, dict) else NONE


def ollama_tail(tail: bytes) -> Usage:
    """The usage of an Ollama answer from its last bytes, without parsing the whole answer (Ollama
    writes eval_count and the durations last)."""
    return ollama_final({key.decode(): int(value) for key, value in _FIELD.findall(tail)})
