"""Bounded per-model waiting when every candidate is busy: first in, first out, then 503.

Only the head of a model's queue re-plans; it is woken when any request ends (a slot frees,
or a busy model in the way of a cold load goes idle), when the fleet changes, or when the
waiter before it leaves. A full queue or a wait past `queue_timeout_s` is answered 503 with
Retry-After. Decides nothing about placement.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping

from gateway.errors import NoCapacity
from gateway.plan import QUEUE, Plan


class Admission:
    def __init__(self) -> None:
        self._queues: dict[str, deque[asyncio.Event]] = {}

    def depth(self, model: str) -> int:
        queue = self._queues.get(model)
        return len(queue) if queue else 0

    def depths(self) -> Mapping[str, int]:
        return {m: len(q) for m, q in self._queues.items() if q}

    def release(self, model: str) -> None:
        """A request of `model` has ended: its slot is free, and the model may now be idle, so a
        cold model waiting for it to drain may load. The head of every queue looks again, this
        model's first (the router is pure and cheap; the queues are per model, so few)."""
        queue = self._queues.get(model)
        if queue:
            queue[0].set()
        self.wake_all()

    def wake_all(self) -> None:
        for queue in self._queues.values():
            if queue:
                queue[0].set()

    async def admit(self, model: str, plan: Callable[[], Plan], timeout_s: float, max_queue: int,
                    retry_after_s: int) -> Plan:
        queue = self._queues.get(model)
        if not queue:
            first = plan()
            if first.verdict != QUEUE:
                return first  # no queue entry for a request that never waits (model names are client input)
            queue = self._queues.setdefault(model, deque())
        if len(queue) >= max_queue:
            raise NoCapacity(f"every worker serving {model!r} is busy and {len(queue)} requests are already "
                             f"waiting (max_queue {max_queue})", retry_after_s)
        ticket = asyncio.Event()
        queue.append(ticket)
        queue[0].set()  # the head may have slept through a change that frees a slot
        try:
            async with asyncio.timeout(timeout_s):
                return await self._wait_turn(queue, ticket, plan)
        except TimeoutError:
            raise NoCapacity(f"every worker serving {model!r} stayed busy for {timeout_s:g}s", retry_after_s) from None
        finally:
            queue.remove(ticket)
            if queue:
                queue[0].set()
            elif self._queues.get(model) is queue:
                del self._queues[model]  # an empty queue is no queue: the table stays as small as the waits

    @staticmethod
    async def _wait_turn(queue: deque[asyncio.Event], ticket: asyncio.Event, plan: Callable[[], Plan]) -> Plan:
        while True:
            await ticket.wait()
            ticket.clear()
            if queue[0] is ticket:
                result = plan()
                if result.verdict != QUEUE:
                    return result
