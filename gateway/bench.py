"""`beacon-gateway bench`: a load generator for any Ollama-API or OpenAI-API address.

Closed loop (`--concurrency N` clients, each sending its next request when the last ends) or
open loop (`--rate R` requests/s with Poisson arrivals, whatever the answers do). Bounded by
`--requests` and `--duration`. Reports success and timeout rates, response time and time to
first token percentiles, tokens/s per stream and in total; `--json` writes them. Knows nothing
of the gateway's internals: it is a client, usable against a worker directly for baselines.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import orjson

WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches "
         "under bright northern lights near old harbour towns").split()


@dataclass
class Options:
    url: str
    api: str = "ollama"  # ollama | openai
    endpoint: str = "chat"  # chat | generate (ollama)
    models: tuple[str, ...] = ("llama3.2:1b",)
    prompt_words: int = 32
    num_predict: int = 128
    stream: bool = True
    concurrency: int = 8
    rate: float | None = None
    requests: int | None = None
    duration_s: float | None = None
    timeout_s: float = 120.0
    api_key: str | None = None
    seed: int = 1
    progress: bool = False


@dataclass
class Result:
    ok: bool
    status: int | None
    error: str | None
    latency_s: float
    ttft_s: float | None
    tokens: int
    model: str
    timed_out: bool = False


@dataclass
class Report:
    options: dict
    sent: int = 0
    ok: int = 0
    failed: int = 0
    timeouts: int = 0
    success_rate: float = 0.0
    timeout_rate: float = 0.0
    wall_s: float = 0.0
    requests_per_s: float = 0.0
    latency_s: dict = field(default_factory=dict)
    ttft_s: dict = field(default_factory=dict)
    stream_tokens_per_s: dict = field(default_factory=dict)
    total_tokens: int = 0
    total_tokens_per_s: float = 0.0
    errors: dict = field(default_factory=dict)


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731 - nearest rank
    return {"p50": round(pick(0.50), 6), "p95": round(pick(0.95), 6), "p99": round(pick(0.99), 6),
            "mean": round(sum(ordered) / len(ordered), 6), "max": round(ordered[-1], 6)}


def summarise(options: Options, results: list[Result], wall_s: float) -> Report:
    ok = [r for r in results if r.ok]
    report = Report(options=asdict(options), sent=len(results), ok=len(ok), failed=len(results) - len(ok),
                    timeouts=sum(r.timed_out for r in results), wall_s=round(wall_s, 3))
    if results:
        report.success_rate = round(len(ok) / len(results), 6)
        report.timeout_rate = round(report.timeouts / len(results), 6)
    report.requests_per_s = round(len(results) / wall_s, 3) if wall_s else 0.0
    report.latency_s = percentiles([r.latency_s for r in ok])
    report.ttft_s = percentiles([r.ttft_s for r in ok if r.ttft_s is not None])
    if options.stream:  # decode speed: tokens after the first one arrived
        rates = [r.tokens / (r.latency_s - r.ttft_s) for r in ok
                 if r.tokens > 1 and r.ttft_s is not None and r.latency_s > r.ttft_s]
    else:  # a whole answer: tokens over the whole time
        rates = [r.tokens / r.latency_s for r in ok if r.tokens and r.latency_s > 0]
    report.stream_tokens_per_s = percentiles(rates)
    report.total_tokens = sum(r.tokens for r in ok)
    report.total_tokens_per_s = round(report.total_tokens / wall_s, 1) if wall_s else 0.0
    for r in results:
        if not r.ok:
            key = r.error or f"HTTP {r.status}"
            report.errors[key[:120]] = report.errors.get(key[:120], 0) + 1
    return report


def request_body(options: Options, model: str, rng: random.Random) -> tuple[str, bytes]:
    prompt = " ".join(rng.choice(WORDS) for _ in range(options.prompt_words))
    if options.api == "openai":
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": options.num_predict,
                "stream": options.stream}
        if options.stream:
            body["stream_options"] = {"include_usage": True}
        return "/v1/chat/completions", orjson.dumps(body)
    body = {"model": model, "stream": options.stream, "options": {"num_predict": options.num_predict}}
    if options.endpoint == "generate":
        body["prompt"] = prompt
        return "/api/generate", orjson.dumps(body)
    body["messages"] = [{"role": "user", "content": prompt}]
    return "/api/chat", orjson.dumps(body)


async def one(http: aiohttp.ClientSession, options: Options, model: str, rng: random.Random) -> Result:
    path, body = request_body(options, model, rng)
    headers = {"Content-Type": "application/json"}
    if options.api_key:
        headers["Authorization"] = f"Bearer {options.api_key}"
    started = time.perf_counter()
    ttft, tokens, status = None, 0, None
    try:
        async with asyncio.timeout(options.timeout_s):
            async with http.post(options.url.rstrip("/") + path, data=body, headers=headers) as resp:
                status = resp.status
                if resp.status != 200:
                    text = (await resp.read())[:200].decode("utf-8", "replace")
                    return Result(False, status, f"HTTP {status}: {text}", time.perf_counter() - started, None, 0, model)
                if options.stream:
                    ttft, tokens, error = await _read_stream(resp, options.api, started)
                else:
                    data = orjson.loads(await resp.read())
                    ttft = time.perf_counter() - started
                    tokens, error = _whole_tokens(data, options.api), data.get("error")
        latency = time.perf_counter() - started
        if error:
            return Result(False, status, f"error in answer: {str(error)[:100]}", latency, ttft, tokens, model)
        return Result(True, status, None, latency, ttft, tokens, model)
    except TimeoutError:
        return Result(False, status, "timeout", time.perf_counter() - started, ttft, tokens, model, timed_out=True)
    except (aiohttp.ClientError, ValueError, OSError) as exc:
        return Result(False, status, f"{type(exc).__name__}: {exc}"[:120], time.perf_counter() - started, ttft,
                      tokens, model)


async def _read_stream(resp: aiohttp.ClientResponse, api: str, started: float) -> tuple[float | None, int, object]:
    """Time to the first generated content, tokens (the final count when given, else chunks), any error."""
    ttft, chunks, final, error = None, 0, None, None
    async for raw in resp.content:
        line = raw.strip()
        if api == "openai":
            if not line.startswith(b"data:") or line == b"data: [DONE]":
                continue
            line = line[5:].strip()
        if not line:
            continue
        data = orjson.loads(line)
        if data.get("error"):
            error = data["error"]
            break
        content = _content(data, api)
        if content and ttft is None:
            ttft = time.perf_counter() - started
        chunks += bool(content)
        final = _final_tokens(data, api) or final
    return ttft, final or chunks, error


def _content(data: dict, api: str) -> str:
    if api == "openai":
        choices = data.get("choices") or [{}]
        return (choices[0].get("delta") or {}).get("content") or ""
    return data.get("response") or (data.get("message") or {}).get("content") or ""


def _final_tokens(data: dict, api: str) -> int:
    if api == "openai":
        return int((data.get("usage") or {}).get("completion_tokens") or 0)
    return int(data.get("eval_count") or 0) if data.get("done") else 0


def _whole_tokens(data: dict, api: str) -> int:
    if api == "openai":
        return int((data.get("usage") or {}).get("completion_tokens") or 0)
    return int(data.get("eval_count") or 0)


async def run(options: Options) -> Report:
    """Send the load and collect every result; never more than `requests`, never past `duration_s`."""
    limit = options.requests if options.requests is not None else (None if options.duration_s else 100)
    deadline = time.perf_counter() + (options.duration_s or 24 * 3600)
    rng, results = random.Random(options.seed), []
    progress = _Progress(limit, options.duration_s, options.progress)
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as http:
        def take() -> bool:
            return (limit is None or progress.sent < limit) and time.perf_counter() < deadline

        async def fire() -> None:
            progress.sent += 1
            result = await one(http, options, rng.choice(options.models), rng)
            results.append(result)
            progress.done(result)

        if options.rate:
            await _open_loop(options.rate, take, fire, rng, deadline)
        else:
            await asyncio.gather(*(_client(take, fire) for _ in range(options.concurrency)))
    progress.finish()
    return summarise(options, results, time.perf_counter() - started)


async def _client(take, fire) -> None:
    while take():
        await fire()


async def _open_loop(rate: float, take, fire, rng: random.Random, deadline: float) -> None:
    pending: set[asyncio.Task] = set()
    next_at = time.perf_counter()
    while take():
        task = asyncio.create_task(fire())
        pending.add(task)
        task.add_done_callback(pending.discard)
        next_at += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    if pending:
        await asyncio.wait(pending, timeout=max(1.0, deadline - time.perf_counter() + 1))


class _Progress:
    """A one-line progress bar on stderr while it runs (only on a terminal, or when asked)."""

    def __init__(self, total: int | None, duration_s: float | None, show: bool) -> None:
        self.total, self.duration_s, self.show = total, duration_s, show or sys.stderr.isatty()
        self.sent = self.finished = self.failed = 0
        self.started = self.last = time.perf_counter()

    def done(self, result: Result) -> None:
        self.finished += 1
        self.failed += not result.ok
        now = time.perf_counter()
        if self.show and now - self.last >= 0.25:
            self.last = now
            elapsed = now - self.started
            share = (self.finished / self.total if self.total else elapsed / (self.duration_s or 1))
            bar = "#" * int(30 * min(1.0, share))
            sys.stderr.write(f"\r[{bar:<30}] {self.finished} done, {self.failed} failed, "
                             f"{self.finished / elapsed:.1f} req/s, {elapsed:.0f}s ")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.show:
            sys.stderr.write("\n")


def render(report: Report) -> str:
    lat, ttft, rate = report.latency_s, report.ttft_s, report.stream_tokens_per_s
    ms = lambda d, k: f"{1000 * d[k]:.1f} ms" if k in d else "-"  # noqa: E731
    lines = [f"requests   {report.sent} sent, {report.ok} ok, {report.failed} failed "
             f"(success {100 * report.success_rate:.2f}%, timeouts {100 * report.timeout_rate:.2f}%) "
             f"in {report.wall_s:.1f}s = {report.requests_per_s:.1f} req/s",
             f"latency    p50 {ms(lat, 'p50')}  p95 {ms(lat, 'p95')}  p99 {ms(lat, 'p99')}",
             f"TTFT       p50 {ms(ttft, 'p50')}  p95 {ms(ttft, 'p95')}  p99 {ms(ttft, 'p99')}",
             f"tokens/s   per stream p50 {rate.get('p50', 0):.1f}; total {report.total_tokens_per_s:.1f} "
             f"({report.total_tokens} tokens)"]
    lines += [f"error      {count} x {text}" for text, count in sorted(report.errors.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def main(options: Options, json_path: str | None) -> int:
    report = asyncio.run(run(options))
    print(render(report))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(asdict(report), indent=2))
        print(f"wrote {json_path}")
    return 0 if report.sent and report.failed == 0 else 1


def default_url() -> str:
    base = os.environ.get("OLLAMA_BASE_URL") or os.environ.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
    return base if base.startswith("http") else f"http://{base}"
