"""A test worker that reads request bodies the way Ollama's Go server does, and says which model it served.

Go's encoding/json matches each object key to a struct field ignoring case, by Unicode simple
case folding (the Kelvin sign U+212A folds with k, the long s U+017F with s; Go pins U+0130 and
U+0131 to themselves), and the last key that matches a field wins. The simulator reads exact keys
like the gateway does, so only a worker like this one shows what a real Ollama would serve.

A real aiohttp app for 127.0.0.1:0: probes (/api/tags, /api/ps, /api/version), the inference and
show endpoints of /api and /v1, answered in Ollama's shapes with the served model named in each
answer and recorded in `served`. No model is loaded or evicted; only decoding is faithful.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from aiohttp import web

# The fields of Ollama's request structs that decide what is served (api/types.go, openai/openai.go).
FIELDS = {
    "/api/chat": ("model", "messages", "stream", "options", "keep_alive", "format", "tools", "think"),
    "/api/generate": ("model", "prompt", "system", "stream", "options", "keep_alive", "format", "raw", "images"),
    "/api/embed": ("model", "input", "options", "keep_alive", "truncate", "dimensions"),
    "/api/embeddings": ("model", "prompt", "options", "keep_alive"),
    "/api/show": ("model", "name", "system", "template", "verbose", "options"),
    "/v1/chat/completions": ("model", "messages", "stream", "max_tokens", "tools", "stream_options"),
    "/v1/completions": ("model", "prompt", "stream", "max_tokens"),
    "/v1/embeddings": ("model", "input", "dimensions", "encoding_format"),
}
STREAM_BY_DEFAULT = {"/api/chat", "/api/generate"}  # Go's *bool left nil: Ollama streams


PINNED = "\u0130\u0131"  # unicode.caseOrbit pins the Turkish i forms to themselves


def fold_rune(ch: str) -> str:
    """The smallest rune of `ch`'s simple case-fold orbit, as Go's foldRune gives it."""
    if ch in PINNED:
        return ch
    orbit, todo = {ch}, [ch]
    while todo:
        current = todo.pop()
        for other in (current.lower(), current.upper()):
            if len(other) == 1 and other not in orbit and other not in PINNED:
                orbit.add(other)
                todo.append(other)
    return min(orbit)


def go_fold(key: str) -> str:
    """foldName: ASCII upper-cased, every other rune folded to its orbit's smallest."""
    return "".join(ch.upper() if ch.isascii() else fold_rune(ch) for ch in key)


def go_decode(pairs: list[tuple[str, object]], fields: tuple[str, ...]) -> dict[str, object]:
    """The struct Go fills from an object's (key, value) pairs in order: exact names first, then
    case-folded ones; a later match overwrites an earlier one; unknown keys are dropped."""
    by_fold = {go_fold(name): name for name in fields}
    out: dict[str, object] = {}
    for key, value in pairs:
        name = key if key in fields else by_fold.get(go_fold(key))
        if name is not None:
            out[name] = value
    return out


def _short(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass
class GoLikeWorker:
    models: tuple[str, ...] = ("llama3.2:1b",)
    served: list[tuple[str, str]] = field(default_factory=list)  # (path, model) of every answer

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/api/tags", self.tags)
        app.router.add_get("/api/ps", self.ps)
        app.router.add_get("/api/version", self.version)
        app.router.add_get("/", self.root)
        for path in FIELDS:
            app.router.add_post(path, self.serve)
        return app

    async def root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.12.6"})

    def _entry(self, name: str) -> dict:
        return {"name": name, "model": name, "size": 1_300_000_000, "digest": "0" * 64,
                "modified_at": "2025-01-01T00:00:00Z", "details": {"format": "gguf", "family": "golike"}}

    async def tags(self, request: web.Request) -> web.Response:
        return web.json_response({"models": [self._entry(m) for m in self.models]})

    async def ps(self, request: web.Request) -> web.Response:
        return web.json_response({"models": []})

    async def serve(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        try:
            pairs = json.loads(await request.read(), object_pairs_hook=lambda p: p)
        except ValueError as exc:
            return web.json_response({"error": f"invalid JSON: {exc}"}, status=400)
        if not isinstance(pairs, list):
            return web.json_response({"error": "json: cannot unmarshal into Go value"}, status=400)
        req = go_decode(pairs, FIELDS[path])
        model = req.get("model") or req.get("name") or ""  # ShowHandler: name when model is empty
        found = next((m for m in self.models if isinstance(model, str) and m.lower() == _short(model).lower()), None)
        if found is None:
            return web.json_response({"error": f'model "{str(model)[:80]}" not found, try pulling it first'},
                                     status=404)
        self.served.append((path, found))
        stream = req.get("stream", path in STREAM_BY_DEFAULT) is True
        if stream:
            return await self._stream(request, path, found)
        return web.json_response(self._answer(path, found))

    def _answer(self, path: str, model: str) -> dict:
        text = f"served {model}"
        done = {"model": model, "created_at": "2025-01-01T00:00:00Z", "done": True, "done_reason": "stop",
                "total_duration": 1000, "eval_count": 2, "eval_duration": 500, "prompt_eval_count": 1}
        if path == "/api/chat":
            return {**done, "message": {"role": "assistant", "content": text}}
        if path == "/api/generate":
            return {**done, "response": text}
        if path == "/api/embed":
            return {"model": model, "embeddings": [[0.1, 0.2]]}
        if path == "/api/embeddings":
            return {"embedding": [0.1, 0.2]}
        if path == "/api/show":
            return {"modelfile": f"FROM {model}", "details": {"family": "golike"}, "model_info": {}}
        usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
        if path == "/v1/embeddings":
            return {"object": "list", "model": model, "usage": usage,
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}]}
        if path == "/v1/completions":
            return {"id": "cmpl-1", "object": "text_completion", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "text": text, "finish_reason": "stop"}], "usage": usage}
        return {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage}

    async def _stream(self, request: web.Request, path: str, model: str) -> web.StreamResponse:
        sse = path.startswith("/v1/")
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream" if sse else "application/x-ndjson"})
        await out.prepare(request)
        whole = self._answer(path, model)
        if sse:
            await out.write(b"data: " + json.dumps(whole).encode() + b"\n\ndata: [DONE]\n\n")
        else:
            await out.write(json.dumps(whole).encode() + b"\n")
        await out.write_eof()
        return out
