"""The npm `ollama` package's node build, in `node`, pointed at the gateway as a JS app would point it
at Ollama: list, chat whole and streamed, embed, and an error it reads, with a client key sent through
its `headers` option. Node sends no Origin, so CORS never applies to it.

Skips only when node/npm or the npm package are missing and CI_REQUIRE_BROWSER is not 1 (.ci/run
installs them and sets it). node runs as an asyncio subprocess: the gateway serves from this loop.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.access import hash_key
from tests.conftest import WorkerSpec
from tests.npm_clients import require_executable, require_node_modules

MODELS = "llama3.2:1b=1.3GiB,all-minilm:latest=0.045GiB"
KEY = "node-app-key-0123456789abcdef"
CLIENTS = f'[[clients]]\nname = "node-app"\nkey_sha256 = "{hash_key(KEY)}"\n'

SCRIPT = """
import { Ollama } from OLLAMA_JS;
const [host, key] = process.argv.slice(2);
const ollama = new Ollama({ host, headers: { Authorization: `Bearer ${key}` } });
const messages = [{ role: "user", content: "why is the sky blue?" }];
const out = {};
async function step(name, run) {
  try { out[name] = { ok: await run() }; }
  catch (e) { out[name] = { error: String(e.message), status: e.status_code ?? null }; }
}
await step("list", async () => (await ollama.list()).models.map(m => m.model).sort());
await step("chat", async () => {
  const r = await ollama.chat({ model: "llama3.2:1b", messages, options: { num_predict: 4 } });
  return { content: r.message.content, done: r.done, eval_count: r.eval_count };
});
await step("stream", async () => {
  const parts = [];
  for await (const p of await ollama.chat({ model: "llama3.2:1b", messages, stream: true,
                                            options: { num_predict: 4 } })) parts.push(p);
  return { count: parts.length, done: parts.at(-1).done, content: parts.map(p => p.message.content).join("") };
});
await step("embed", async () => (await ollama.embed({ model: "all-minilm", input: ["first", "second"] }))
  .embeddings.map(e => e.length));
await step("missing", async () => ollama.chat({ model: "nope:1b", messages }));
await step("nokey", async () => new Ollama({ host }).list());
console.log(JSON.stringify(out));
"""


@pytest.fixture
def node():
    exe = require_executable("node")
    modules = require_node_modules()
    return exe, (modules / "ollama" / "dist" / "index.mjs").as_uri()


async def test_list_chat_stream_embed_and_errors_from_node(start_fleet, node, tmp_path):
    exe, module = node
    fleet = await start_fleet(WorkerSpec("gpu0", MODELS), config_extra=CLIENTS)
    script = tmp_path / "client.mjs"
    script.write_text(SCRIPT.replace("OLLAMA_JS", json.dumps(module)))
    proc = await asyncio.create_subprocess_exec(exe, str(script), fleet.url, KEY, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, stderr.decode(errors="replace")[-2000:]
    out = json.loads(stdout.decode().strip().splitlines()[-1])

    assert out["list"] == {"ok": ["all-minilm:latest", "llama3.2:1b"]}, out
    chat = out["chat"]["ok"]
    assert chat["done"] and chat["content"] and chat["eval_count"] == 4, out
    stream = out["stream"]["ok"]
    assert stream["count"] == 5 and stream["done"] and stream["content"] == chat["content"], out
    assert out["embed"]["ok"][0] > 0 and out["embed"]["ok"][0] == out["embed"]["ok"][1], out
    assert out["missing"]["status"] == 404 and "not found" in out["missing"]["error"], out
    assert out["nokey"]["status"] == 401 and "key" in out["nokey"]["error"], out
