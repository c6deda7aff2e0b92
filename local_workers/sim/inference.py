"""The simulated worker's native generation endpoints, as Ollama answers them: /api/generate and
/api/chat (NDJSON streams whose headers wait for the first token, final fields in ns, load-only
and unload requests, tool calls, JSON formats), plus the helpers embed.py and openai.py share.

Residency and slots come from the engine, words and pacing from content.py. No gateway imports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import orjson
from aiohttp import web

from local_workers.sim.capabilities import capabilities, refusal, tool_call, wants_thinking
from local_workers.sim.content import Tokens, answer_length, count_tokens, paced
from local_workers.sim.engine import Busy, ModelGone, Resident, Runner, SimWorker
from local_workers.sim.models import SimModel, parse_keep_alive
from local_workers.sim.wire import (
    BUSY,
    NDJSON,
    SIM_WORKER,
    SimError,
    json_response,
    model_field,
    now_iso,
    read_json,
    want_stream,
)

MALFORMED = b'{"model": oops'


def requested_model(worker: SimWorker, data: dict) -> tuple[str, SimModel]:
    """(the name as the client spelled it, the model on disk) or SimError 400/404 as Ollama."""
    name = model_field(data)
    if not name:
        raise SimError(400, "model is required")
    model = worker.find(name)
    if model is None:
        raise SimError(404, f'model "{name}" not found, try pulling it first')
    return name, model


def refuse_unsupported(model: SimModel, name: str, data: dict, chat: bool) -> None:
    """SimError 400 as Ollama answers `think`, `tools` or `suffix` for a model without the
    capability (capabilities.py), before anything is loaded."""
    message = refusal(model, name, data, chat)
    if message:
        raise SimError(400, message)


def keep_alive_of(worker: SimWorker, data: dict) -> float:
    try:
        return parse_keep_alive(data.get("keep_alive"), worker.default_keep_alive_s)
    except ValueError as exc:
        raise SimError(400, str(exc)) from None


async def acquire(worker: SimWorker, model: SimModel, keep_alive_s: float, runner: Runner | None = None) -> Resident:
    try:
        return await worker.acquire(model, keep_alive_s, runner)
    except Busy:
        raise SimError(503, BUSY) from None
    except ModelGone:
        raise SimError(404, f'model "{model.name}" not found, try pulling it first') from None


def load_seconds(res: Resident, started: float) -> float:
    """Ollama's load_duration: time spent getting the model ready for this request."""
    return max(0.0, (res.ready_at or started) - started)


def drop_connection(request: web.Request, worker: SimWorker) -> None:
    """The worker process died: the socket closes with no (further) answer. Never returns."""
    worker.stats.dropped += 1
    if request.transport is not None:
        request.transport.close()
    raise asyncio.CancelledError()  # aiohttp then drops the request quietly, as on a client disconnect


def malformed_response() -> web.Response:
    return web.Response(body=MALFORMED, content_type="application/json")


async def generate(request: web.Request) -> web.StreamResponse:
    return await _completion(request, chat=False)


async def chat(request: web.Request) -> web.StreamResponse:
    return await _completion(request, chat=True)


async def _completion(request: web.Request, chat: bool) -> web.StreamResponse:
    worker = request.app[SIM_WORKER]
    data = await read_json(request)
    name, model = requested_model(worker, data)
    keep_alive_s = keep_alive_of(worker, data)
    empty = not (data.get("messages") if chat else data.get("prompt"))
    if not (empty and keep_alive_s == 0):  # an unload is never refused, as in Ollama's handlers
        refuse_unsupported(model, name, data, chat)
    runner = runner_of(worker, model, data.get("options"))
    if empty:
        return await _load_only(worker, model, name, keep_alive_s, chat, runner)
    started = time.monotonic()
    try:
        res = await acquire(worker, model, keep_alive_s, runner)
        try:
            answer = Answer(worker, res, name, data, chat, started)
            return await (answer.stream(request) if want_stream(data) else answer.whole(request))
        finally:
            worker.release(res)
    except (asyncio.CancelledError, ConnectionResetError):
        if worker.mode != "drop":
            worker.stats.cancelled += 1
        raise asyncio.CancelledError() from None


async def _load_only(worker: SimWorker, model: SimModel, name: str, keep_alive_s: float,
                     chat: bool, runner: Runner | None = None) -> web.Response:
    """An empty prompt only loads the model; with keep_alive 0 it unloads it instead."""
    if keep_alive_s == 0:
        worker.expire_after_use(model.name)
        reason = "unload"
    else:
        worker.release(await acquire(worker, model, keep_alive_s, runner))
        reason = "load"
    body: dict[str, object] = {"model": name, "created_at": now_iso()}
    body |= {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
    return json_response(body | {"done": True, "done_reason": reason})


def integer_option(options: dict, key: str) -> int | None:
    """An integer option as Ollama's Options.FromMap reads it: JSON numbers arrive as float64 and
    are truncated; anything else but null is a 400."""
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SimError(400, f'option "{key}" must be of type integer')
    return int(value)


def context_of(worker: SimWorker, model: SimModel, options: dict) -> int:
    """num_ctx as Ollama's scheduler settles it: the request's, else the default for the worker's
    VRAM (4096 below 23 GiB, 32768 below 47 GiB, else 262144), at least 4, at most the model's
    training context."""
    asked = integer_option(options, "num_ctx")
    if asked is None or asked <= 0:
        return worker.default_num_ctx(model)
    return min(max(4, asked), model.context_length)


def runner_of(worker: SimWorker, model: SimModel, options: object) -> Runner:
    """The runner options a request asks, as Ollama's needsReload compares them: num_ctx as
    settled, num_gpu (negative or absent: any), num_batch, main_gpu, use_mmap, num_thread,
    draft_num_predict with Ollama's defaults (512, unset, unset, 0, 4)."""
    given = options if isinstance(options, dict) else {}
    num_gpu = integer_option(given, "num_gpu")
    mmap = given.get("use_mmap")
    others = (integer_option(given, "num_batch") or 512, integer_option(given, "main_gpu"),
              mmap if isinstance(mmap, bool) else None, integer_option(given, "num_thread") or 0,
              integer_option(given, "draft_num_predict") or 4)
    return Runner(context_of(worker, model, given), -1 if num_gpu is None else num_gpu, others)


def prompt_tokens(count: int, num_ctx: int, shift: bool) -> int:
    """A prompt longer than the context: truncated with context shift (num_keep 4, then half the
    rest freed, as llm/llama_server.go does), else a 400 with Ollama's words."""
    if count < num_ctx:
        return count
    if not shift:
        raise SimError(400, "the prompt is longer than the context length currently available to the model; "
                            "shorten the prompt, adjust the context length in settings, or use a model with a "
                            "longer context length")
    return num_ctx - max((num_ctx - 4) // 2, 1)


THOUGHT = "The user wants a short answer; I will give one."  # what a thinking model thinks, every time


class Answer:
    """One generation: its tokens, the NDJSON line template, and the final fields."""

    def __init__(self, worker: SimWorker, res: Resident, name: str, data: dict, chat: bool, started: float) -> None:
        self.worker, self.res, self.name, self.chat, self.started = worker, res, name, chat, started
        self.load_s = load_seconds(res, started)
        text = _prompt_text(data, chat)
        self.tool_calls = _tool_calls(data) if chat else None
        options = given if isinstance(given := data.get("options"), dict) else {}
        num_ctx, shift = context_of(worker, res.model, options), data.get("shift") is not False
        self.prompt_count = prompt_tokens(count_tokens(text), num_ctx, shift)
        count, self.reason = answer_length(integer_option(options, "num_predict"), num_ctx, self.prompt_count, shift)
        # A thinking model asked to think reasons first, in Ollama's separate `thinking` field.
        thinks = wants_thinking(data.get("think")) and "thinking" in capabilities(res.model)
        self.thinking = THOUGHT if thinks else ""
        self._thought_due = bool(self.thinking)  # streamed once, on its own line before the first token
        self.tokens: Tokens | list[str]
        if self.tool_calls:
            self.tokens, self.reason = [""], "stop"
        else:
            self.tokens = Tokens(text, count, data.get("format"))
        self._head = b'{"model":' + orjson.dumps(name) + b',"created_at":"'
        self._mid = b'","message":{"role":"assistant","content":' if chat else b'","response":'
        self._tail = b'},"done":false}\n' if chat else b',"done":false}\n'

    def paced(self, request: web.Request):
        return paced(request, self.worker, self.res, self.tokens)

    def render(self, batch: list[str]) -> bytes:
        """NDJSON lines for tokens that fall due together (they share a timestamp); the thought
        first, on a line of its own, before the first of them."""
        thought = b""
        if self._thought_due:
            self._thought_due = False
            thought = orjson.dumps(self._piece("", thinking=self.thinking) | {"done": False}) + b"\n"
        if self.tool_calls:
            return thought + orjson.dumps(self._piece("", self.tool_calls) | {"done": False}) + b"\n"
        stamp = self._head + now_iso().encode() + self._mid
        return thought + b"".join(stamp + orjson.dumps(token) + self._tail for token in batch)

    def _piece(self, text: str, tool_calls: list | None = None, thinking: str = "") -> dict:
        out: dict = {"model": self.name, "created_at": now_iso()}
        if not self.chat:
            return out | {"response": text} | ({"thinking": thinking} if thinking else {})
        message: dict = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
        return out | {"message": message | {"tool_calls": tool_calls} if tool_calls else message}

    def final(self, text: str, tool_calls: list | None = None, thinking: str = "") -> dict:
        rate = self.worker.rate(self.res)
        prompt_s, eval_s = self.prompt_count / (rate * 10), len(self.tokens) / rate
        out = self._piece(text, tool_calls, thinking) | {"done": True, "done_reason": self.reason}
        if not self.chat:
            out["context"] = list(range(1, self.prompt_count + len(self.tokens) + 1))
        total_s = max(time.monotonic() - self.started, self.load_s + prompt_s + eval_s)
        return out | {"total_duration": int(total_s * 1e9), "load_duration": int(self.load_s * 1e9),
                      "prompt_eval_count": self.prompt_count, "prompt_eval_duration": max(1, int(prompt_s * 1e9)),
                      "eval_count": len(self.tokens), "eval_duration": max(1, int(eval_s * 1e9))}

    async def whole(self, request: web.Request) -> web.Response:
        parts: list[str] = []
        async for batch in self.paced(request):
            parts += batch
            if self.worker.mode == "drop" and len(parts) >= 2:
                drop_connection(request, self.worker)
        if self.worker.mode == "error":
            raise SimError(500, "simulated failure")
        odd = misbehaviour(request, self.worker)
        self.worker.stats.completed += odd is None
        return odd or json_response(self.final("".join(parts), self.tool_calls, self.thinking))

    async def stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": NDJSON})
        if await send_tokens(request, self.worker, resp, self.paced(request), self.render,
                             b'{"error":"simulated failure"}\n', MALFORMED + b"\n"):
            final = MALFORMED if self.worker.mode == "malformed" else orjson.dumps(self.final(""))
            await resp.write(final + b"\n")
            await resp.write_eof()
            self.worker.stats.completed += 1
        return resp


async def send_tokens(request: web.Request, worker: SimWorker, resp: web.StreamResponse,
                      batches: AsyncIterator[list[str]], render: Callable[[list[str]], bytes], failure: bytes,
                      garbage: bytes) -> bool:
    """Write token batches as they fall due, as the worker's mode has it. Headers go out with the
    first token, as Ollama sends them, so a failure before it is a plain error answer. False when
    the stream ended early with a failure line. Shared with the /v1 streams."""
    sent = 0
    async for batch in batches:
        mode = worker.mode
        if mode == "error" and not resp.prepared:
            raise SimError(500, "simulated failure")
        if not resp.prepared:
            await resp.prepare(request)
        if mode == "error":  # a stream that fails once started ends with one error line
            await resp.write(failure)
            await resp.write_eof()
            return False
        if mode == "drop":
            batch = batch[: max(0, 2 - sent)]
        if batch:
            await resp.write(garbage * len(batch) if mode == "malformed" else render(batch))
            sent += len(batch)
        if mode == "drop" and sent >= 2:
            drop_connection(request, worker)
    if not resp.prepared:
        await resp.prepare(request)
    if worker.mode == "drop":  # a short answer is cut before its last line
        drop_connection(request, worker)
    return True


def _prompt_text(data: dict, chat: bool) -> str:
    if not chat:
        return f"{data.get('system') or ''}{data.get('prompt') or ''}"
    messages = given if isinstance(given := data.get("messages"), list) else []
    return "\n".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))


def _tool_calls(data: dict) -> list[dict] | None:
    """The one call the model makes when offered tools (capabilities.tool_call says which, and with
    what arguments), or None."""
    tools, messages = data.get("tools"), data.get("messages")
    if not isinstance(tools, list) or not isinstance(messages, list):
        return None
    call = tool_call(tools, messages)
    return [call] if call else None


def misbehaviour(request: web.Request, worker: SimWorker) -> web.Response | None:
    """What the "drop" and "malformed" modes make of a whole (non-streamed) answer."""
    if worker.mode == "drop":
        drop_connection(request, worker)
    if worker.mode == "malformed":
        return malformed_response()
    return None
