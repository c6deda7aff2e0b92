"""`beacon-gateway demo`: a local fleet (two simulated GPU workers, one CPU worker, and a real
llama-server worker when a llama-server binary and the `gguf` package are found) and the
gateway in front, until Ctrl-C.

Writes the config it generated to a temporary folder so people can read and copy it. Every way
out (Ctrl-C, SIGTERM or SIGHUP at any moment, an address in use, bad BEACON_* settings, a
llama-server that will not start) stops what was started and removes that folder: each thing
started is registered for cleanup the moment it exists. On the default address, when it is taken
(Ollama itself listens on 11434 on many machines), the demo takes a free port and says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import structlog

from gateway import listen, logs, runner
from gateway.app import build_app
from gateway.config import load_config
from gateway.serve import load_settings
from gateway.settings import DEFAULT_LISTEN, Settings, split_listen
from local_workers import llamaserver
from local_workers.sim import SimWorker, build_sim_app, parse_models

log = structlog.get_logger("gateway.demo")

FLEET = (
    # name, tier, models, VRAM GiB, tokens/s (GPU ~20x CPU, as measured on an H100 host)
    ("gpu0", "gpu", "llama3.2:1b=1.3GiB,qwen2.5:7b=4.7GiB,nomic-embed-text=0.27GiB", 8, 400.0),
    ("gpu1", "gpu", "llama3.2:1b=1.3GiB,llama3.1:8b=4.9GiB,nomic-embed-text=0.27GiB", 8, 400.0),
    ("cpu0", "cpu", "llama3.2:1b=1.3GiB", 0, 20.0),
)


def demo(listen_at: str | None) -> int:
    """`listen_at` None: the default address, or a free port when that one is taken."""
    try:
        host, port = split_listen(listen_at or DEFAULT_LISTEN)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    settings = load_settings(listen=listen.format_address(host, port))  # before anything starts
    if settings is None:
        return 2
    logs.configure("console", settings.log_level)
    try:
        # SIGHUP too: a closed terminal must not leave llama-server or the folder behind
        runner.run(lambda: _main(settings, host, port, fixed=listen_at is not None),
                   stop_on=(signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    except listen.CannotListen as exc:
        print(f"beacon-gateway demo: {exc}", file=sys.stderr)
        return 1
    return 0


def _port_to_use(host: str, port: int, fixed: bool) -> int:
    """The port asked for; 0 (any free one) when the default one is taken and none was asked for."""
    try:
        listen.check_listen(host, port)
        return port
    except listen.CannotListen as exc:
        if fixed or not exc.in_use:
            raise
    print(f"{listen.format_address(host, port)} is in use (Ollama itself, perhaps): the demo takes a free port "
          "instead (--listen HOST:PORT chooses one).", flush=True)
    return 0


async def _main(settings: Settings, host: str, port: int, fixed: bool) -> None:
    port = _port_to_use(host, port, fixed)  # first: the slow start of llama-server is wasted on a taken port
    async with contextlib.AsyncExitStack() as started:
        folder = Path(tempfile.mkdtemp(prefix="beacon-demo-"))
        started.callback(shutil.rmtree, folder, ignore_errors=True)  # the generated config and the tiny model
        workers_toml = []
        llama = await _real_llama_worker(folder)
        if llama is not None:
            started.push_async_callback(llama.close)
            workers_toml.append(f'[[workers]]\nname = "llama0"\nurl = "{llama.url}"\nkind = "llamacpp"\n'
                                'tier = "cpu"\n')
        workers_toml += await _simulated_workers(started)
        config_path = folder / "config.toml"
        config_path.write_text(_CONFIG_HEAD + "\n".join(workers_toml))
        settings = settings.model_copy(update={"config": str(config_path)})
        gateway_runner, bound = await runner.start(build_app(settings, load_config(config_path)), host, port)
        started.push_async_callback(gateway_runner.cleanup)
        address = listen.format_address(host, bound)
        print(_HELP.format(url=f"http://{address}", host=address, config=config_path), flush=True)
        print(_LLAMA_HELP.format(url=f"http://{address}") if llama is not None else _NO_LLAMA_HELP, flush=True)
        await runner.until_signalled()


async def _simulated_workers(started: contextlib.AsyncExitStack) -> list[str]:
    """Start the simulated fleet on free loopback ports; their [[workers]] tables."""
    tables = []
    for name, tier, models, vram_gib, rate in FLEET:
        worker = SimWorker(name=name, models=parse_models(models), vram_bytes=vram_gib * 1024**3, tier=tier,
                           tokens_per_s=rate)
        app_runner, bound = await runner.start(build_sim_app(worker), "127.0.0.1", 0)
        started.push_async_callback(app_runner.cleanup)
        tables.append(f'[[workers]]\nname = "{name}"\nurl = "http://127.0.0.1:{bound}"\nkind = "ollama"\n'
                      f'tier = "{tier}"\n' + (f"vram_gib = {vram_gib}\n" if vram_gib else ""))
    return tables


async def _real_llama_worker(folder: Path):
    """A real llama-server serving a tiny random-weight model, when the binary and gguf are here."""
    exe = llamaserver.binary()
    if exe is None:
        if os.environ.get("BEACON_LLAMA_SERVER"):
            log.warning("demo.no_llama_server", reason="BEACON_LLAMA_SERVER does not name a file")
        return None
    try:
        from local_workers.tinygguf import make_tiny_llama

        model = make_tiny_llama(folder / "tiny-llama.gguf", name="tiny-llama")
        return await llamaserver.start_server(exe, folder, model=model, alias="tiny-llama", parallel=2)
    except (ImportError, RuntimeError, OSError) as exc:
        first, _, rest = f"{type(exc).__name__}: {exc}".partition("\n")
        log.warning("demo.no_llama_server", reason=first, output=rest[-2000:] or None,
                    next="the demo runs without llama0")
        return None


_CONFIG_HEAD = """# Generated by `beacon-gateway demo`: three simulated workers on loopback.
[models."llama3.2:1b"]
aliases = ["default"]

[health]
interval_s = 1

"""

_HELP = """
beacon-gateway demo is running at {url}
  fleet: gpu0, gpu1 (simulated GPUs, 400 tokens/s) and cpu0 (CPU, 20 tokens/s)
  config: {config} (in a temporary folder, removed when the demo stops)

Try:
  curl {url}/api/tags
  curl {url}/api/chat -d '{{"model": "llama3.2:1b", "messages": [{{"role": "user", "content": "hi"}}]}}'
  curl {url}/api/generate -d '{{"model": "default", "prompt": "why is the sky blue?", "stream": false}}'
  curl {url}/api/ps
  curl {url}/v1/messages -d '{{"model": "llama3.2:1b", "max_tokens": 64, "messages": [{{"role": "user", "content": "hi"}}]}}'
  curl {url}/v1/responses -d '{{"model": "llama3.2:1b", "input": "hi"}}'
  ANTHROPIC_BASE_URL={url} claude      (Claude Code, if installed; see the README for its model settings)
  curl {url}/health           (open {url}/status in a browser)
  OLLAMA_HOST={host} ollama run llama3.2:1b        (the ollama CLI, if installed)
  OLLAMA_HOST={host} python -c "import ollama; print(ollama.chat('llama3.2:1b', [{{'role': 'user', 'content': 'hi'}}]))"
  beacon-gateway status --url {url}

Ctrl-C stops everything.
"""

_LLAMA_HELP = """  llama0 is a real llama-server (CPU) serving tiny-llama, a random-weight model (gibberish text):
  curl {url}/api/generate -d '{{"model": "tiny-llama", "prompt": "hello", "stream": false}}'
"""

_NO_LLAMA_HELP = ("  (no llama-server found: run `bash .ci/build-llama-server` and install the test extras "
                  "to add a real llama.cpp worker)\n")
