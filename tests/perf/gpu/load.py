"""The GPU benchmark's load: streamed /v1 chat calls timed from the client's side, closed- and
open-loop drivers, and an NVML sampler of GPU busy share. Knows nothing of the scenarios.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time

from tests.perf.gpu.plan import MODEL_1B, SPEECH, Call


def chat_body(messages: list[dict], max_tokens: int, model: str = MODEL_1B) -> bytes:
    return json.dumps({"model": model, "messages": messages, "max_tokens": max_tokens, "ignore_eos": True,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()


async def chat(http, url: str, body: bytes, timeout_s: float, keep_text: bool = False) -> Call:
    """One streamed /v1/chat/completions call, timed from the client's side. llama-server closes its
    connection after a streamed answer without saying so: a pooled connection that fails before any
    answer is retried (twice at most) on another, as HTTP clients do; `retries` counts it."""
    call = Call(sent_at=time.perf_counter())
    for attempt in range(3):
        await _chat_once(http, url, body, timeout_s, keep_text, call)
        if not call.stale or attempt == 2:  # the third stale connection is reported as the error it was
            break
        call.retries += 1
        call.error = call.status = None
        call.stale = False
    return call


async def _chat_once(http, url: str, body: bytes, timeout_s: float, keep_text: bool, call: Call) -> Call:
    import aiohttp

    started, done, parts = call.sent_at, False, []
    try:
        async with asyncio.timeout(timeout_s):
            async with http.post(url + "/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"}) as resp:
                call.status, call.headers = resp.status, True
                call.worker = resp.headers.get("X-Beacon-Worker")
                if resp.status != 200:
                    call.error = f"HTTP {resp.status}: {(await resp.read())[:300].decode('utf-8', 'replace')}"
                else:
                    async for raw in resp.content:
                        line = raw.strip()
                        if not line.startswith(b"data:"):
                            continue
                        payload = line[5:].strip()
                        if payload == b"[DONE]":
                            done = True
                            continue
                        data = json.loads(payload)
                        if data.get("error"):
                            call.error = f"error event: {str(data['error'])[:240]}"
                            break
                        for choice in data.get("choices") or ():
                            content = (choice.get("delta") or {}).get("content")
                            if content:
                                if call.ttft_s is None:
                                    call.ttft_s = time.perf_counter() - started
                                call.chunks += 1
                                if keep_text:
                                    parts.append(content)
                        usage, timings = data.get("usage"), data.get("timings")
                        if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
                            call.tokens = int(usage["completion_tokens"])
                        if isinstance(timings, dict) and "cache_n" in timings:
                            call.cache_n, call.prompt_n = timings.get("cache_n"), timings.get("prompt_n")
                    if call.error is None and not done:
                        call.error = "stream ended without [DONE]"
    except TimeoutError:
        call.error, call.timed_out = "timeout", True
    except aiohttp.ClientConnectorError as exc:
        call.error = f"{type(exc).__name__}: {exc}"[:120]
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        call.error = f"{type(exc).__name__}: {exc}"[:120]
        call.stale = not call.headers
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        call.error = f"{type(exc).__name__}: {exc}"[:120]
    call.latency_s = time.perf_counter() - started
    call.tokens = call.tokens or call.chunks
    call.ok = call.error is None and call.status == 200
    call.text = "".join(parts)
    return call


def short_prompt(rng: random.Random, words: int = 24) -> list[dict]:
    return [{"role": "user", "content": " ".join(rng.choice(SPEECH) for _ in range(words))}]


async def closed_loop(http, url: str, concurrency: int, duration_s: float, max_tokens: int,
                      timeout_s: float, seed: int = 1) -> tuple[list[Call], float]:
    rng, calls = random.Random(seed), []
    started = time.perf_counter()
    deadline = started + duration_s

    async def client() -> None:
        while time.perf_counter() < deadline:
            calls.append(await chat(http, url, chat_body(short_prompt(rng), max_tokens), timeout_s))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return calls, time.perf_counter() - started


async def open_loop(http, url: str, rate: float, duration_s: float, max_tokens: int, timeout_s: float,
                    seed: int = 1, at: list[tuple[float, object]] | None = None) -> tuple[list[Call], float]:
    """Poisson arrivals at `rate`/s for `duration_s`, then waits for what is in flight. `at` holds
    (seconds after start, callable) events to run during the window (a kill, say)."""
    rng, calls, pending = random.Random(seed), [], set()
    events = sorted(at or [], key=lambda e: e[0])
    started = time.perf_counter()
    next_at, deadline = started, started + duration_s

    async def fire() -> None:
        calls.append(await chat(http, url, chat_body(short_prompt(rng), max_tokens), timeout_s))

    while time.perf_counter() < deadline:
        while events and time.perf_counter() - started >= events[0][0]:
            result = events.pop(0)[1]()
            if asyncio.iscoroutine(result):
                await result
        task = asyncio.create_task(fire())
        pending.add(task)
        task.add_done_callback(pending.discard)
        next_at += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    if pending:
        await asyncio.wait(pending, timeout=timeout_s + 5)
    return calls, time.perf_counter() - started


class GpuSampler:
    """NVML utilization and memory of one GPU every `every_s` in a thread; mean over a window."""

    def __init__(self, index: int = 0, every_s: float = 0.5) -> None:
        import pynvml

        self.nvml, self.every_s = pynvml, every_s
        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                util = self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu
                used = self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used / 2**20
                self.samples.append((time.perf_counter(), float(util), used))
            except Exception:  # noqa: BLE001 - a failed read is a missing sample
                pass
            self._stop.wait(self.every_s)

    def busy(self, start: float, end: float) -> float | None:
        window = [u for t, u, _ in self.samples if start <= t <= end]
        return round(sum(window) / len(window) / 100, 4) if window else None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
