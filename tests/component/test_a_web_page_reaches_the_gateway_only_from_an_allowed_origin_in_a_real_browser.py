"""In a real headless Chromium: a page served from another loopback port (an origin in Ollama's defaults)
runs the npm `ollama` package's browser build against the gateway (list, chat whole and streamed, an
error it can read) and calls /v1 with the headers the OpenAI SDK sends; a page on a foreign origin
(`evil.localhost`, which Chromium resolves to loopback itself) can neither read the gateway nor make
it act: its no-preflight `text/plain` POSTs to /api/generate, /api/copy and /api/pull reach no worker.

Skips only when chromium, node/npm or the npm package are missing and CI_REQUIRE_BROWSER is not 1
(.ci/run installs them and sets it). The browser runs as an asyncio subprocess, never a blocking one:
the gateway and the page server it talks to serve from this test's own event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
from html import unescape

import pytest
from aiohttp import web

from tests.conftest import WorkerSpec
from tests.npm_clients import require_executable, require_node_modules

MODELS = "llama3.2:1b=1.3GiB,qwen:0.5b=0.4GiB"

CLIENT_PAGE = """<!doctype html><meta charset="utf-8"><title>client</title>
<script type="importmap">{"imports": {"whatwg-fetch": "/js/whatwg-fetch.mjs"}}</script>
<pre id="out">pending</pre>
<script type="module">
import { Ollama } from "/js/ollama.mjs";
const gateway = GATEWAY;
const ollama = new Ollama({ host: gateway });
const messages = [{ role: "user", content: "why is the sky blue?" }];
const out = {};
async function step(name, run) {
  try { out[name] = { ok: await run() }; }
  catch (e) { out[name] = { error: String(e && e.message || e), status: e && e.status_code || null }; }
}
await step("list", async () => (await ollama.list()).models.map(m => m.model).sort());
await step("chat", async () => {
  const r = await ollama.chat({ model: "llama3.2:1b", messages, options: { num_predict: 4 } });
  return { content: r.message.content, done: r.done };
});
if (!ONLY_LIST) {
  await step("stream", async () => {
    const parts = [];
    for await (const part of await ollama.chat({ model: "llama3.2:1b", messages, stream: true,
                                                 options: { num_predict: 4 } })) parts.push(part);
    const content = parts.map(p => p.message.content).join("");
    return { count: parts.length, done: parts[parts.length - 1].done, content };
  });
  await step("missing", async () => ollama.chat({ model: "nope:1b", messages }));
  await step("openai", async () => {
    const r = await fetch(gateway + "/v1/chat/completions", { method: "POST", body: JSON.stringify({
        model: "llama3.2:1b", messages, max_tokens: 3, stream: true }),
      headers: { "Content-Type": "application/json", "Authorization": "Bearer unused", "OpenAI-Beta": "x",
                 "X-Stainless-Lang": "js", "X-Stainless-OS": "Linux", "X-Stainless-Retry-Count": "0",
                 "X-Stainless-Runtime": "browser:chrome", "X-Stainless-Timeout": "600" } });
    const text = await r.text();
    return { status: r.status, requestId: r.headers.get("x-request-id"), done: text.trim().endsWith("data: [DONE]") };
  });
}
document.getElementById("out").textContent = JSON.stringify(out);
</script>"""

ATTACK_PAGE = """<!doctype html><meta charset="utf-8"><title>attack</title>
<script type="importmap">{"imports": {"whatwg-fetch": "/js/whatwg-fetch.mjs"}}</script>
<pre id="out">pending</pre>
<script type="module">
import { Ollama } from "/js/ollama.mjs";
const gateway = GATEWAY;
const out = {};
// A form-like POST needs no preflight: the browser sends it and hides only the answer from the page.
for (const [path, body] of [["/api/generate", { model: "llama3.2:1b", prompt: "x", stream: false }],
                            ["/api/copy", { source: "qwen:0.5b", destination: "llama3.2:1b" }],
                            ["/api/pull", { model: "evil/model" }]]) {
  try {
    const r = await fetch(gateway + path, { method: "POST", mode: "no-cors", body: JSON.stringify(body),
                                            headers: { "Content-Type": "text/plain" } });
    out[path] = r.type;
  } catch (e) { out[path] = "error: " + e.message; }
}
try { out.list = { ok: (await new Ollama({ host: gateway }).list()).models.length }; }
catch (e) { out.list = { error: String(e.message) }; }
try { const r = await fetch(gateway + "/api/tags"); out.read = { ok: r.status }; }
catch (e) { out.read = { error: String(e.message) }; }
document.getElementById("out").textContent = JSON.stringify(out);
</script>"""


@pytest.fixture
def chromium(tmp_path):
    exe = require_executable("chromium", "chromium-browser")

    async def run_page(url: str) -> dict:
        # --dump-dom writes the page when Chromium's virtual time budget runs out, and on a loaded
        # machine that can come before the page's fetches have answered: the page is then loaded
        # again (a fresh profile each time), at most three times, and judged on the first full run.
        for attempt in range(3):
            proc = await asyncio.create_subprocess_exec(
                exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                f"--user-data-dir={tmp_path / f'profile{attempt}'}", "--virtual-time-budget=30000", "--dump-dom",
                url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
            assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
            found = re.search(r'<pre id="out">(.*?)</pre>', out.decode(), re.S)
            if found and found[1] != "pending":
                return json.loads(unescape(found[1]))
        raise AssertionError(f"the page's script did not finish: {out.decode()[-1500:]}")

    return run_page


@pytest.fixture
def npm_modules():
    return require_node_modules()  # the browser needs only the package's files, installed with npm once


async def serve_pages(aiohttp_server, npm_modules, gateway_url: str, *, only_list: bool = False) -> int:
    """A second loopback server, another origin than the gateway's: the pages and the package's browser build."""
    scripts = {"ollama.mjs": npm_modules / "ollama" / "dist" / "browser.mjs",
               "whatwg-fetch.mjs": npm_modules / "whatwg-fetch" / "fetch.js"}

    def page(template: str):
        html = template.replace("GATEWAY", json.dumps(gateway_url)).replace("ONLY_LIST", json.dumps(only_list))

        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=html, content_type="text/html")
        return handler

    async def script(request: web.Request) -> web.Response:
        path = scripts.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.Response(body=path.read_bytes(), content_type="text/javascript")

    app = web.Application()
    app.router.add_get("/client.html", page(CLIENT_PAGE))
    app.router.add_get("/attack.html", page(ATTACK_PAGE))
    app.router.add_get("/js/{name}", script)
    return (await aiohttp_server(app)).port


async def test_a_page_on_another_loopback_port_uses_the_ollama_browser_client(start_fleet, chromium, npm_modules,
                                                                            aiohttp_server):
    fleet = await start_fleet(WorkerSpec("gpu0", MODELS))
    port = await serve_pages(aiohttp_server, npm_modules, fleet.url)
    assert f":{port}" not in fleet.url
    out = await chromium(f"http://127.0.0.1:{port}/client.html")
    assert out["list"] == {"ok": ["llama3.2:1b", "qwen:0.5b"]}, out
    assert out["chat"]["ok"]["done"] and out["chat"]["ok"]["content"], out
    stream = out["stream"]["ok"]
    assert stream["count"] == 5 and stream["done"] and stream["content"] == out["chat"]["ok"]["content"], out
    assert out["missing"]["status"] == 404 and "not found" in out["missing"]["error"], \
        "the page reads the gateway's error, not a bare 'Failed to fetch'"
    openai = out["openai"]["ok"]
    assert openai["status"] == 200 and openai["done"] and re.fullmatch(r"[0-9a-f]{32}", openai["requestId"]), out


async def test_a_page_on_a_foreign_origin_can_neither_read_the_gateway_nor_make_it_act(start_fleet, chromium,
                                                                                     npm_modules, aiohttp_server):
    fleet = await start_fleet(WorkerSpec("gpu0", MODELS), settings={"origins": "http://ui.localhost:*"})
    worker = fleet.workers["gpu0"]
    probed, disk = dict(worker.stats.requests), dict(worker.disk)
    port = await serve_pages(aiohttp_server, npm_modules, fleet.url, only_list=True)

    out = await chromium(f"http://evil.localhost:{port}/attack.html")
    assert out["/api/generate"] == out["/api/copy"] == out["/api/pull"] == "opaque", out  # the browser did send them
    assert worker.stats.requests == probed, "the gateway refused them: nothing reached the worker"
    assert worker.stats.loads == [] and worker.disk == disk, "nothing ran, was pulled or was overwritten"
    assert "Failed to fetch" in out["list"]["error"] and "Failed to fetch" in out["read"]["error"], out

    out = await chromium(f"http://ui.localhost:{port}/client.html")  # an origin BEACON_ORIGINS adds
    assert out["list"] == {"ok": ["llama3.2:1b", "qwen:0.5b"]} and out["chat"]["ok"]["done"], out
