"""The worker the hop benchmarks proxy to: an nginx config that answers every Ollama and OpenAI
call from memory (S1), and a paced streaming worker in aiohttp + uvloop (S2): 64 chunks 5 ms
apart per answer, one write per chunk, as Ollama NDJSON or OpenAI SSE.

    python -m tests.perf.hop_upstream PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiohttp import web

MODEL = "m:latest"
CHUNKS, GAP_S = 64, 0.005
TAGS = {"models": [{"name": MODEL, "model": MODEL, "size": 1_300_000_000, "digest": "0" * 64,
                    "modified_at": "2026-11-24T00:00:00Z", "details": {"family": "llama", "format": "gguf"}}]}
PS = {"models": [{"name": MODEL, "model": MODEL, "size": 1_300_000_000, "size_vram": 1_300_000_000,
                  "digest": "0" * 64, "expires_at": "2099-01-01T00:00:00Z", "context_length": 4096}]}
CHAT = {"model": MODEL, "created_at": "2026-11-24T00:00:00Z",
        "message": {"role": "assistant", "content": "Hello! How can I help you today? " * 4}, "done": True,
        "done_reason": "stop", "total_duration": 1_000_000, "load_duration": 10_000, "prompt_eval_count": 12,
        "prompt_eval_duration": 100_000, "eval_count": 32, "eval_duration": 800_000}
OPENAI = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": MODEL,
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                       "finish_reason": "stop"}], "usage": {"prompt_tokens": 12, "completion_tokens": 8,
                                                            "total_tokens": 20}}
MODELS = {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 1, "owned_by": "library"}]}


def nginx_mock(port: int, root) -> str:
    def reply(body: dict | str) -> str:
        text = body if isinstance(body, str) else json.dumps(body)
        return f"default_type application/json; return 200 '{text}';"

    routes = {"/": reply("Ollama is running"), "/api/version": reply({"version": "0.12.6"}), "/api/tags": reply(TAGS),
              "/api/ps": reply(PS), "/api/chat": reply(CHAT), "/v1/chat/completions": reply(OPENAI),
              "/v1/models": reply(MODELS), "/health": reply({"status": "ok"})}
    locations = " ".join(f"location = {path} {{ {body} }}" for path, body in routes.items())
    return (f"daemon off; worker_processes 1; pid {root}/pid; error_log {root}/err crit;\n"
            f"events {{ worker_connections 4096; }}\n"
            f"http {{ access_log off; client_body_temp_path {root}; keepalive_requests 1000000;\n"
            f"  server {{ listen 127.0.0.1:{port}; client_body_buffer_size 64k; {locations} }} }}\n")


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not body.get("stream", True):
        return web.json_response(CHAT)
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    for i in range(CHUNKS):
        await asyncio.sleep(GAP_S)
        line = {"model": MODEL, "created_at": "2026-11-24T00:00:00Z", "done": False, "sent": time.time(),
                "message": {"role": "assistant", "content": f"tok{i} "}}
        await resp.write(json.dumps(line).encode() + b"\n")
    await resp.write(json.dumps({**CHAT, "message": {"role": "assistant", "content": ""},
                                 "eval_count": CHUNKS}).encode() + b"\n")
    await resp.write_eof()
    return resp


async def completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not body.get("stream"):
        return web.json_response(OPENAI)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(CHUNKS):
        await asyncio.sleep(GAP_S)
        event = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": MODEL, "sent": time.time(),
                 "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}]}
        await resp.write(b"data: " + json.dumps(event).encode() + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


def build() -> web.Application:
    app = web.Application()
    for path, body in (("/", "Ollama is running"), ("/api/version", {"version": "0.12.6"}), ("/api/tags", TAGS),
                       ("/api/ps", PS), ("/v1/models", MODELS), ("/health", {"status": "ok"})):
        app.router.add_get(path, lambda r, b=body: web.json_response(b) if isinstance(b, dict) else web.Response(text=b))
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/v1/chat/completions", completions)
    return app


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(build(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
