"""Parsing runs on the one event loop that serves everyone. A body of tens of MiB of empty arrays,
of tiny items, of deep nesting or with a model name of megabytes is refused (413 naming the
`[server]` limit, or 400) after a byte count, before it is parsed; the name is never echoed whole;
and a well-behaved client sending at the same time is served. Workers run as processes, so the
only parsing on this loop is the gateway's."""

import asyncio
import time

import orjson
import pytest

from tests.conftest import WorkerSpec

MIB = 1024 * 1024
MODEL = "llama3.2:1b"
GOOD = {"model": MODEL, "prompt": "hello", "stream": False, "options": {"num_predict": 2}}


def with_field(text: bytes, size: int) -> bytes:
    """A generate request whose `context` field is `text` repeated to about `size` bytes."""
    head, tail = b'{"model": "' + MODEL.encode() + b'", "prompt": "x", "stream": false, "context": [', b"0]}"
    return head + text * ((size - len(head)) // len(text)) + tail


@pytest.fixture
async def fleet(start_fleet, sim_processes):
    worker = await sim_processes("gpu0", "--models", f"{MODEL}=1.3GiB", "--tokens-per-s", "5000")
    return await start_fleet(WorkerSpec("gpu0", url=worker.url))


class LoopWatch:
    """The longest the event loop went without running a 10 ms timer: how long others were held."""

    def __init__(self) -> None:
        self.longest_s = 0.0
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.longest_s, last = max(self.longest_s, now - last), now

    def stop(self) -> float:
        self._task.cancel()
        return self.longest_s


async def post(fleet, path: str, raw: bytes):
    async with fleet.http.post(fleet.url + path, data=raw, headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.read()


async def test_bodies_that_would_hold_the_loop_are_refused_and_another_client_is_served(fleet):
    hostile = {
        "63 MiB of empty arrays": (with_field(b"[],", 63 * MIB), 413, b"max_json_containers"),
        "63 MiB of tiny items": (with_field(b"0,", 63 * MIB), 413, b"max_json_items"),
        "a million levels deep": (b'{"model": "x", "format": ' + b"[" * MIB + b"]" * MIB + b"}", 413,
                                  b"max_json_containers"),
        "2000 levels deep": (b'{"model": "x", "format": ' + b"[" * 2000 + b"]" * 2000 + b"}", 400, b"depth"),
        "a 16 MB model name": (orjson.dumps({**GOOD, "model": "m" * 16_000_000}), 400, b"longer than 1024"),
    }
    watch = LoopWatch()
    answers = await asyncio.gather(*(post(fleet, "/api/generate", raw) for raw, _, _ in hostile.values()),
                                   post(fleet, "/api/generate", orjson.dumps(GOOD)))
    held_s = watch.stop()
    print(f"event loop held at most {held_s * 1000:.0f} ms")
    *refused, (good_status, good_body) = answers
    for (what, (_, status, says)), (got, body) in zip(hostile.items(), refused, strict=True):
        assert got == status and says in body, (what, got, body[:300])
        assert len(body) < 1024, f"{what}: the answer echoes the client's input ({len(body)} bytes)"
    assert good_status == 200 and orjson.loads(good_body)["done"] is True
    # A generous bound: each refusal costs a byte count of a few ms; parsing the first body
    # alone held the loop for seconds before these limits.
    assert held_s < 2.0, f"the event loop was held for {held_s:.2f}s"
    status, _ = await post(fleet, "/api/generate", orjson.dumps(GOOD))
    assert status == 200


async def test_real_requests_with_code_and_long_conversations_stay_under_the_default_limits(fleet):
    # A prompt of 1.2 MB of JSON records, one bracket per 30 bytes (some 300k tokens), and a long
    # conversation quoting a piece of it in every turn.
    code = "\n".join(orjson.dumps({"id": i, "name": f"item {i}", "tags": ["a", "b"], "price": 9.99}).decode()
                     for i in range(20_000))
    messages = [{"role": "user" if i % 2 else "assistant", "content": f"turn {i}, {code[:200]}"}
                for i in range(2_000)]
    for body in ({**GOOD, "prompt": code}, {"model": MODEL, "messages": messages, "stream": False,
                                             "options": {"num_predict": 2}}):
        path = "/api/generate" if "prompt" in body else "/api/chat"
        status, answer = await post(fleet, path, orjson.dumps(body))
        assert status == 200, answer[:300]
