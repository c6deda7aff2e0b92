"""Bounded per-model waiting when every candidate is busy: a fair share per tenant, then 503.

A model's queue holds one line per tenant (a client key; requests without keys are one tenant).
When a slot frees, the waiter that goes next is chosen by weighted fair queueing: each tenant's
next request carries a virtual start time that grows by 1/weight per request served, and the
lowest goes first, so a tenant sending ten times the others' rate gets its weight's share of the
slots that free up, not ten times it. `batch` tenants go only when no interactive request waits.
When the queue is full, the newcomer or a waiter of the tenant most over its share (batch first)
is refused, so a flood is refused before a light tenant waits; every refusal is 503 with
Retry-After. Only the chosen waiter re-plans; it is woken when any request ends, when the fleet
changes, or when the waiter before it leaves. Decides nothing about placement.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gateway.config import ClientConfig
from gateway.errors import NoCapacity
from gateway.plan import QUEUE, Plan


@dataclass(frozen=True, slots=True)
class Tenant:
    """Who is waiting: a client key's name ("" for requests without keys), its weight and class."""

    name: str = ""
    weight: float = 1.0
    batch: bool = False

    @property
    def priority(self) -> str:
        return "batch" if self.batch else "interactive"


ANONYMOUS = Tenant()


def tenant_of(client: ClientConfig | None) -> Tenant:
    """The tenant of a request made with `client`'s key; requests without keys are one tenant."""
    if client is None:
        return ANONYMOUS
    return Tenant(client.name, client.weight, client.priority == "batch")


@dataclass(eq=False, slots=True)
class _Ticket:
    tenant: Tenant
    seq: int
    event: asyncio.Event = field(default_factory=asyncio.Event)
    refused: str | None = None  # pushed out of a full queue by a request with a better claim


class _ModelQueue:
    """One model's waiters, one line per tenant, with each tenant's virtual time."""

    def __init__(self) -> None:
        self.lines: dict[str, deque[_Ticket]] = {}
        self.vtime: dict[str, float] = {}  # a tenant's virtual start time for its next request
        self.now = 0.0  # the virtual time of the last request served
        self.size = 0

    def add(self, ticket: _Ticket) -> None:
        line = self.lines.setdefault(ticket.tenant.name, deque())
        if not line:  # a tenant that was idle starts at the present: no credit saved up while away
            self.vtime[ticket.tenant.name] = max(self.vtime.get(ticket.tenant.name, 0.0), self.now)
        line.append(ticket)
        self.size += 1

    def remove(self, ticket: _Ticket) -> None:
        line = self.lines.get(ticket.tenant.name)
        if line is not None and ticket in line:
            line.remove(ticket)
            self.size -= 1
            if not line:
                del self.lines[ticket.tenant.name]

    def head(self) -> _Ticket | None:
        """The waiter that goes next: interactive before batch, then the lowest virtual time,
        then arrival order."""
        firsts = [line[0] for line in self.lines.values()]
        if not firsts:
            return None
        return min(firsts, key=lambda t: (t.tenant.batch, self.vtime.get(t.tenant.name, 0.0), t.seq))

    def served(self, ticket: _Ticket) -> None:
        """The ticket's tenant got a slot: its next request starts 1/weight later in virtual time."""
        name = ticket.tenant.name
        self.now = max(self.now, self.vtime.get(name, 0.0))
        self.vtime[name] = self.vtime.get(name, self.now) + 1.0 / ticket.tenant.weight

    def wake_head(self) -> None:
        head = self.head()
        if head is not None:
            head.event.set()

    def over_share(self, newcomer: Tenant, max_queue: int) -> _Ticket | None:
        """Whom a full queue refuses: the newest batch waiter for an interactive newcomer; else
        the newest waiter of the tenant furthest over its weighted share of the queue, or None
        when that is the newcomer's own tenant (the newcomer is refused)."""
        if not newcomer.batch:
            batch = [line[-1] for line in self.lines.values() if line[-1].tenant.batch]
            if batch:
                return max(batch, key=lambda t: t.seq)
        tenants = {line[0].tenant.name: line[0].tenant for line in self.lines.values()}
        tenants[newcomer.name] = newcomer
        total = sum(t.weight for t in tenants.values())

        def excess(name: str) -> float:
            held = len(self.lines.get(name, ())) + (1 if name == newcomer.name else 0)
            return held / (max_queue * tenants[name].weight / total)

        worst = max(tenants, key=lambda name: (excess(name), name != newcomer.name))
        if worst == newcomer.name or excess(worst) <= excess(newcomer.name):
            return None
        return self.lines[worst][-1]


class Admission:
    def __init__(self, on_wait: Callable[[str, str, float], None] = lambda priority, result, waited_s: None) -> None:
        self._queues: dict[str, _ModelQueue] = {}
        self._seq = itertools.count()
        self._on_wait = on_wait  # (priority class, admitted | full | pushed_out | timeout, seconds waited)

    def depth(self, model: str) -> int:
        queue = self._queues.get(model)
        return queue.size if queue else 0

    def depths(self) -> Mapping[str, int]:
        return {m: q.size for m, q in self._queues.items() if q.size}

    def release(self, model: str) -> None:
        """A request of `model` has ended: its slot is free, and the model may now be idle, so a
        cold model waiting for it to drain may load. The head of every queue looks again, this
        model's first (the router is pure and cheap; the queues are per model, so few)."""
        queue = self._queues.get(model)
        if queue:
            queue.wake_head()
        self.wake_all()

    def wake_all(self) -> None:
        for queue in self._queues.values():
            queue.wake_head()

    async def admit(self, model: str, plan: Callable[[], Plan], timeout_s: float, max_queue: int,
                    retry_after_s: int, tenant: Tenant = ANONYMOUS) -> Plan:
        queue = self._queues.get(model)
        if not queue or not queue.size:
            first = plan()
            if first.verdict != QUEUE:
                return first  # no queue entry for a request that never waits (model names are client input)
            queue = self._queues.setdefault(model, _ModelQueue())
        if queue.size >= max_queue:
            try:
                self._make_room(model, queue, tenant, max_queue, retry_after_s)
            except NoCapacity:
                self._on_wait(tenant.priority, "full", 0.0)
                raise
        ticket, started = _Ticket(tenant, next(self._seq)), time.monotonic()
        queue.add(ticket)
        queue.wake_head()  # the head may have slept through a change that frees a slot
        try:
            async with asyncio.timeout(timeout_s):
                result = await self._wait_turn(queue, ticket, plan, retry_after_s)
            queue.served(ticket)
            self._on_wait(tenant.priority, "admitted", time.monotonic() - started)
            return result
        except TimeoutError:
            self._on_wait(tenant.priority, "timeout", time.monotonic() - started)
            raise NoCapacity(f"every worker serving {model!r} stayed busy for {timeout_s:g}s", retry_after_s) from None
        except NoCapacity:
            self._on_wait(tenant.priority, "pushed_out", time.monotonic() - started)
            raise
        finally:
            queue.remove(ticket)
            if queue.size:
                queue.wake_head()
            elif self._queues.get(model) is queue:
                del self._queues[model]  # an empty queue is no queue (fair shares start afresh with the next wait)

    def _make_room(self, model: str, queue: _ModelQueue, tenant: Tenant, max_queue: int, retry_after_s: int) -> None:
        """A full queue: refuse the newcomer, or push out the waiter with the weakest claim."""
        if max_queue <= 0:
            raise NoCapacity(f"every worker serving {model!r} is busy (max_queue 0: nobody waits)", retry_after_s)
        out = queue.over_share(tenant, max_queue)
        if out is None:
            who = f"client {tenant.name!r}" if tenant.name else "requests without a client key"
            raise NoCapacity(f"every worker serving {model!r} is busy and {queue.size} requests are already "
                             f"waiting (max_queue {max_queue}); {who} already holds its share of the queue",
                             retry_after_s)
        out.refused = (f"every worker serving {model!r} is busy and the queue is full (max_queue {max_queue}): "
                       f"this {out.tenant.priority} request gave its place to a tenant with a fairer claim")
        queue.remove(out)
        out.event.set()

    @staticmethod
    async def _wait_turn(queue: _ModelQueue, ticket: _Ticket, plan: Callable[[], Plan], retry_after_s: int) -> Plan:
        while True:
            await ticket.event.wait()
            ticket.event.clear()
            if ticket.refused is not None:
                raise NoCapacity(ticket.refused, retry_after_s)
            if queue.head() is ticket:
                result = plan()
                if result.verdict != QUEUE:
                    return result
