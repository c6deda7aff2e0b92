"""The `beacon-gateway` command: serve, demo, check-config, status, the admin commands (drain,
undrain, reload, warm, unload, explain) and sim-worker.

Parses arguments and hands off; each subcommand's work lives in its own module.
Exit codes: 0 success, 2 bad config or usage, 1 anything else that failed.
"""

from __future__ import annotations

import argparse

from gateway.settings import DEFAULT_LISTEN


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:  # Ctrl-C before a command took its signals over: no traceback
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="beacon-gateway", description="An Ollama-compatible LLM gateway.")
    sub = parser.add_subparsers(metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="routing config TOML (default: $BEACON_CONFIG or config.toml)")
    serve.add_argument("--listen", help=f"HOST:PORT to listen on (default: $BEACON_LISTEN or {DEFAULT_LISTEN})")
    serve.add_argument("--processes", type=int, default=1, metavar="N",
                       help="gateway processes on the one port, sharing live state through Redis "
                            "($BEACON_REDIS_URL, or a private redis-server); default 1")
    serve.set_defaults(func=_serve)

    check = sub.add_parser("check-config", help="validate a routing config; exit 2 listing every error")
    check.add_argument("path")
    check.set_defaults(func=_check_config)

    demo = sub.add_parser("demo", help="start simulated GPU and CPU workers and the gateway in front")
    demo.add_argument("--listen", help=f"gateway address (default {DEFAULT_LISTEN}, or a free port when that is taken)")
    demo.set_defaults(func=_demo)

    status = sub.add_parser("status", help="print the workers of a running gateway")
    status.add_argument("--url", default=f"http://{DEFAULT_LISTEN}", help="gateway URL")
    status.add_argument("--token", help="metrics or admin token, for the workers where /health hides them "
                                        "(default: $BEACON_METRICS_TOKEN, then $BEACON_ADMIN_TOKEN)")
    status.set_defaults(func=_status)

    _bench_command(sub)

    hashing = sub.add_parser("hash-key", help="print the key_sha256 of a client API key read from stdin")
    hashing.set_defaults(func=_hash_key)

    _admin_commands(sub)

    sim = sub.add_parser("sim-worker", help="run a simulated Ollama worker")
    from local_workers.sim.cli import add_sim_arguments

    add_sim_arguments(sim)
    sim.set_defaults(func=_sim_worker)
    return parser


def _admin_commands(sub) -> None:
    """Commands that act through the admin API of a running gateway."""
    def add(name: str, help_text: str, *positional: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text)
        for arg in positional:
            cmd.add_argument(arg)
        cmd.add_argument("--url", default=f"http://{DEFAULT_LISTEN}", help="gateway URL")
        cmd.add_argument("--token", help="admin token (default: $BEACON_ADMIN_TOKEN)")
        cmd.set_defaults(func=_admin, command=name)
        return cmd

    add("drain", "stop sending new requests to a worker; in-flight ones finish", "worker")
    add("undrain", "let a drained worker take requests again", "worker")
    add("reload", "reload the routing config file now")
    add("warm", "load a model on a worker", "worker", "model")
    add("unload", "unload a model from a worker", "worker", "model")
    add("explain", "show where a request for a model would go now, and why", "model")


def _admin(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    from gateway.admin_client import call

    worker = getattr(args, "worker", None)
    named = f"/admin/workers/{quote(str(worker), safe='')}/{args.command}"
    path = {"reload": "/admin/reload", "explain": "/admin/explain"}.get(args.command, named)
    body = {"model": args.model} if getattr(args, "model", None) else None
    return call(args.url, path, args.token, body)


def _bench_command(sub) -> None:
    bench = sub.add_parser("bench", help="load-test an Ollama- or OpenAI-API address (the gateway or a worker)")
    bench.add_argument("--url", help="base URL (default: $OLLAMA_BASE_URL, $OLLAMA_HOST or http://127.0.0.1:11434)")
    bench.add_argument("--api", choices=("ollama", "openai"), default="ollama")
    bench.add_argument("--endpoint", choices=("chat", "generate"), default="chat", help="Ollama endpoint")
    bench.add_argument("--model", action="append", help="model to ask for; repeat to mix models")
    bench.add_argument("--prompt-words", type=int, default=32)
    bench.add_argument("--num-predict", type=int, default=128, help="tokens to generate per request")
    bench.add_argument("--no-stream", dest="stream", action="store_false")
    load = bench.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=int, default=8, help="closed loop: clients in parallel (default 8)")
    load.add_argument("--rate", type=float, help="open loop: requests per second (Poisson arrivals)")
    bench.add_argument("--requests", type=int, help="stop after this many (default 100 without --duration)")
    bench.add_argument("--duration", type=float, help="stop after this many seconds")
    bench.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    bench.add_argument("--api-key", default=None, help="client key (default: $BEACON_API_KEY)")
    bench.add_argument("--seed", type=int, default=1)
    bench.add_argument("--progress", action="store_true", help="show progress even when not on a terminal")
    bench.add_argument("--json", help="write the report as JSON here")
    bench.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    import os
    import sys

    from gateway import bench

    if args.concurrency < 1 or (args.rate is not None and args.rate <= 0) or (args.requests or 1) < 1:
        print("--concurrency, --rate and --requests must be positive", file=sys.stderr)
        return 2
    options = bench.Options(url=args.url or bench.default_url(), api=args.api, endpoint=args.endpoint,
                            models=tuple(args.model or ["llama3.2:1b"]), prompt_words=args.prompt_words,
                            num_predict=args.num_predict, stream=args.stream, concurrency=args.concurrency,
                            rate=args.rate, requests=args.requests, duration_s=args.duration, timeout_s=args.timeout,
                            api_key=args.api_key or os.environ.get("BEACON_API_KEY"), seed=args.seed,
                            progress=args.progress)
    return bench.main(options, args.json)


def _hash_key(args: argparse.Namespace) -> int:
    import sys

    from gateway.access import hash_key

    key = sys.stdin.readline().strip()
    if len(key) < 16:
        print("a client key must be at least 16 characters (try: python -c 'import secrets; "
              "print(secrets.token_urlsafe(32))')", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import sys

    from gateway.processes import MAX_PROCESSES
    from gateway.serve import serve

    if not 1 <= args.processes <= MAX_PROCESSES:
        print(f"--processes must be from 1 to {MAX_PROCESSES}", file=sys.stderr)
        return 2
    return serve(config_path=args.config, listen=args.listen, processes=args.processes)


def _check_config(args: argparse.Namespace) -> int:
    import sys

    from gateway.config import load_or_report

    config = load_or_report(args.path)
    if config is None:
        return 2
    for line in config.notices:  # an old key name still in use: valid, and where it went
        print(f"{args.path}: {line}", file=sys.stderr)
    tiers = {t: sum(w.tier == t for w in config.workers) for t in ("gpu", "cpu")}
    print(f"{args.path}: ok ({len(config.workers)} workers: {tiers['gpu']} gpu, {tiers['cpu']} cpu; "
          f"{len(config.models)} models configured; version {config.version})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import demo

    return demo(args.listen)


def _status(args: argparse.Namespace) -> int:
    from gateway.status import print_status

    return print_status(args.url, args.token)


def _sim_worker(args: argparse.Namespace) -> int:
    from local_workers.sim.cli import run_from_args

    run_from_args(args)
    return 0
