"""The front APIs other than Ollama's, by name (FrontRequest.api): which module prepares a request for
each worker kind, and the reply the OpenAI front's answers go through when its call names none.

One table, so a new front plugs in with one line here: its module's
`prepare(front, model_id, kind, version) -> UpstreamCall` returns the call with `front` set to its
name and `reply` set to its backends.base.FrontAnswer (a native passthrough or a translator).
Pure: no I/O and no policy.
"""

from __future__ import annotations

from collections.abc import Callable

from backends import anthropic_front, openai_front, responses_front
from backends.base import FrontAnswer, FrontRequest, UpstreamCall
from backends.translate import Unsupported
from backends.usage import Usage
from backends.worker_said import as_openai_error

Prepare = Callable[[FrontRequest, str, str, str | None, bool], UpstreamCall]

PREPARE: dict[str, Prepare] = {
    "openai": lambda front, model_id, kind, version, native: openai_front.prepare(front, model_id, kind),
    "anthropic": anthropic_front.prepare,
    "responses": responses_front.prepare,
}
NATIVE_PATHS = frozenset({"/v1/messages", "/v1/responses"})  # a front's own route on a worker


def prepare(front: FrontRequest, model_id: str, kind: str, version: str | None, native: bool = True) -> UpstreamCall:
    """`front` (of any API but Ollama's) for a worker of `kind` that reports `version`; `native`
    False: translated even where the kind and version say the worker serves the front's own route
    (it answered that it has none)."""
    found = PREPARE.get(front.api)
    if found is None:
        raise Unsupported(f"{front.path} is not supported by this worker")
    return found(front, model_id, kind, version, native)


def route_missing(call: UpstreamCall, status: int, body: bytes) -> bool:
    """Whether a worker sent its front's own route answered that it has no such route: the 404 of
    llama-server's router ("File Not Found", builds before late 2025 lack /v1/messages) or of
    Ollama's gin ("404 page not found", versions before the route). A model the worker does not
    know is a 404 too, in the front's JSON shape: that one is the client's answer, not this."""
    if status != 404 or call.path not in NATIVE_PATHS or call.front not in ("anthropic", "responses"):
        return False
    text = body[:512].strip()
    return text == b"404 page not found" or b'"File Not Found"' in text


def reply_of(call: UpstreamCall) -> FrontAnswer | None:
    """What the relay feeds the answer through: the call's own reply, the OpenAI front's SSE relay,
    or None on the Ollama front (bytes passed through, or the call's Ollama translator)."""
    if call.reply is not None:
        return call.reply
    if call.front == "openai":
        return OpenAIReply(counts=call.path.endswith("completions"))  # embeddings count no generated tokens
    return None


class OpenAIReply:
    """A /v1 OpenAI answer passed through: SSE in whole events (openai_front.SseRelay), a whole answer
    as it came, a worker's error OpenAI-shaped if it is not already. `counts`: the answer generates."""

    def __init__(self, counts: bool) -> None:
        self._relay = openai_front.SseRelay()
        self._counts = counts
        self._whole: Usage | None = None
        self._streamed = False

    @property
    def finished(self) -> bool:
        return self._relay.finished

    def feed(self, chunk: bytes) -> bytes:
        self._streamed = True
        return self._relay.feed(chunk)

    def end(self) -> bytes:
        return self._relay.end()

    def usage(self) -> Usage | None:
        return self._relay.usage() if self._streamed else self._whole

    def cut(self, message: str) -> bytes:
        return openai_front.sse_error(message)

    def whole(self, body: bytes) -> bytes:
        self._whole = openai_front.whole_usage(body) if self._counts else None
        return body

    def error(self, body: bytes, status: int) -> bytes:
        return as_openai_error(body, status)
