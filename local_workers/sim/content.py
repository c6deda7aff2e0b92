"""What the simulated worker says: deterministic tokens chosen by a hash of the prompt (JSON when a
format is asked for), how many of them the context allows, deterministic unit embedding vectors,
and token pacing at the worker's rate.

Tokens are made as they are sent, never a whole answer ahead: what a client asks for costs
memory only as far as the context lets the answer run. No routing, no residency: the engine
decides where and when, this decides what and how fast.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct
import time
from collections.abc import AsyncIterator, Iterator
from itertools import chain, islice

import orjson
from aiohttp import web

from local_workers.sim.engine import Resident, SimWorker

WORDS = ("the", "sky", "is", "blue", "because", "light", "scatters", "in", "air", "and", "short", "waves",
         "bend", "more", "than", "long", "ones", "so", "we", "see", "it", "every", "day", "here", "now", "bright")
DEFAULT_TOKENS = 24  # where the simulated model stops by itself (its end-of-sequence)
OPEN_ENDED_CONTEXTS = 10  # Ollama bounds an open-ended answer at 10 contexts (llm/llama_server.go, boundedNumPredict)
NO_PACING = 100_000.0  # tokens/s at or above which streams are not paced at all
_MIN_SLEEP = 0.001  # below this, tokens go out in a burst instead of one timer each
_BATCH = 64  # at most this many tokens per write
_SPACED = tuple(" " + w for w in WORDS)
_MASK = 2**64 - 1


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).digest(), "big")


def words(text: str, n: int) -> Iterator[str]:
    """n tokens like " sky", the same for the same prompt, made one at a time."""
    state = _seed(text)
    for _ in range(n):
        # a fixed generator seeded by the prompt: same prompt, same words, on every worker and run
        state = (state * 6364136223846793005 + 1442695040888963407) & _MASK
        yield _SPACED[(state >> 33) % len(_SPACED)]


class Tokens:
    """An answer's tokens: their count now, the tokens themselves as they are iterated. With a
    format ("json" or a schema) the joined text is valid JSON."""

    def __init__(self, text: str, n: int, fmt: object) -> None:
        self._text, self._n, self._fmt = text, n, fmt
        self._key = _first_string_property(fmt) if fmt else None
        self.count = n if not fmt or (self._key is not None and n >= 2) else 1

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[str]:
        if not self._fmt:
            return words(self._text, self._n)
        if self._key is None:  # a schema with nothing to put words in: one token carries the whole object
            return iter([orjson.dumps(_filled(self._fmt)).decode()])
        head, _, tail = orjson.dumps({**_filled(self._fmt), self._key: "\0"}).decode().partition("\\u0000")
        if self._n < 2:
            return iter([head + tail])
        return chain([head], (w.strip() + " " for w in words(self._text, self._n - 2)), [tail])


def answer_length(num_predict: int | None, num_ctx: int, prompt_tokens: int, shift: bool) -> tuple[int, str]:
    """(tokens to generate, done_reason) as Ollama's context allows. num_predict None or negative
    is open-ended: the model stops by itself (DEFAULT_TOKENS) unless the bound comes first. The
    bound: with context shift (Ollama's default) OPEN_ENDED_CONTEXTS contexts; without it, what
    is left of the context after the prompt (then the answer ends with done_reason "length")."""
    ceiling = OPEN_ENDED_CONTEXTS * num_ctx if shift else max(0, num_ctx - prompt_tokens)
    if num_predict is None or num_predict < 0:
        return (DEFAULT_TOKENS, "stop") if ceiling >= DEFAULT_TOKENS else (ceiling, "length")
    return min(num_predict, ceiling), "length"


def _first_string_property(fmt: object) -> str | None:
    if not isinstance(fmt, dict) or not isinstance(fmt.get("properties"), dict) or not fmt["properties"]:
        return "answer"
    for key, spec in fmt["properties"].items():
        if isinstance(spec, dict) and spec.get("type", "string") == "string":
            return key
    return None


def _filled(fmt: object) -> dict:
    """A value for every property of a schema, by type, so the object has the schema's shape."""
    if not isinstance(fmt, dict) or not isinstance(fmt.get("properties"), dict):
        return {}
    samples = {"integer": 42, "number": 4.2, "boolean": True, "array": [], "object": {}, "null": None}
    return {k: samples.get(_type_of(v), "") for k, v in fmt["properties"].items()}


def _type_of(schema: object) -> str:
    kind = schema.get("type") if isinstance(schema, dict) else None
    return kind if isinstance(kind, str) else ""  # a list of types, or none: no sample


def count_tokens(text: str) -> int:
    return max(1, len(text.split()))


def vector(text: str, dims: int) -> list[float]:
    """A unit vector of `dims` floats from a hash of `text`: equal texts, equal vectors."""
    raw = hashlib.shake_256(text.encode("utf-8", "replace")).digest(dims * 4)
    values = [v / 2**31 - 1.0 for v in struct.unpack(f"<{dims}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def connection_gone(request: web.Request) -> bool:
    """True once the client's connection is closed (aiohttp drops the transport)."""
    return request.transport is None or request.transport.is_closing()


async def paced(request: web.Request, worker: SimWorker, res: Resident,
                tokens: Tokens | list[str]) -> AsyncIterator[list[str]]:
    """Yield the tokens in batches as they fall due at the copy's current rate: one by one when
    paced, many at once when the rate is too high to pace (a fast stream then costs one write per
    batch, not per token). Stalls while the worker hangs; raises ConnectionResetError once the
    client has gone (also when the server does not cancel handlers on disconnect)."""
    due, i, total, source = time.monotonic(), 0, len(tokens), iter(tokens)
    while i < total:
        if not worker.unhung.is_set():
            await worker.unhung.wait()
            due = time.monotonic()
        rate = worker.rate(res)
        if rate >= NO_PACING:
            take = _BATCH
            await asyncio.sleep(0)
        else:
            step, take = 1.0 / rate, 1
            due += step
            delay = due - time.monotonic()
            await asyncio.sleep(delay if delay >= _MIN_SLEEP else 0)
            horizon = time.monotonic() + _MIN_SLEEP  # tokens due within a timer tick go out together
            while i + take < total and due + step <= horizon and take < _BATCH:
                due += step
                take += 1
        if connection_gone(request):
            raise ConnectionResetError("client went away")
        yield list(islice(source, take))
        i += take
