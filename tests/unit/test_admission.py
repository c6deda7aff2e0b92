import asyncio

import pytest

from gateway.admission import Admission, Tenant
from gateway.errors import NoCapacity
from gateway.router import QUEUE, Candidate, Plan

M = "m:latest"
READY = Plan(M, (Candidate("gpu0", "resident"),))
BUSY = Plan(M, (), QUEUE)


async def test_a_plan_that_can_go_now_does_not_wait():
    assert await Admission().admit(M, lambda: READY, 1.0, 4, 2) is READY


async def test_waiters_are_served_first_in_first_out():
    admission, free, order = Admission(), {"slots": 0}, []

    def plan():
        return READY if free["slots"] > 0 else BUSY

    async def request(name):
        await admission.admit(M, plan, 5.0, 10, 2)
        free["slots"] -= 1
        order.append(name)

    tasks = [asyncio.create_task(request(n)) for n in ("first", "second", "third")]
    await asyncio.sleep(0)
    assert admission.depth(M) == 3
    for _ in range(3):
        free["slots"] += 1
        admission.release(M)
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert order == ["first", "second", "third"] and admission.depth(M) == 0


async def test_a_full_queue_is_refused_at_once_with_retry_after():
    admission = Admission()
    waiter = asyncio.create_task(admission.admit(M, lambda: BUSY, 5.0, 1, 3))
    await asyncio.sleep(0)
    with pytest.raises(NoCapacity) as info:
        await admission.admit(M, lambda: BUSY, 5.0, 1, 3)
    assert info.value.headers["Retry-After"] == "3" and "max_queue 1" in info.value.message
    waiter.cancel()


async def test_a_wait_past_the_timeout_is_503_and_leaves_the_queue():
    admission = Admission()
    with pytest.raises(NoCapacity) as info:
        await admission.admit(M, lambda: BUSY, 0.05, 4, 2)
    assert "stayed busy" in info.value.message and admission.depth(M) == 0


async def test_wake_all_lets_heads_replan_after_a_fleet_change():
    admission, state = Admission(), {"plan": BUSY}
    waiter = asyncio.create_task(admission.admit(M, lambda: state["plan"], 5.0, 4, 2))
    await asyncio.sleep(0)
    state["plan"] = READY
    admission.wake_all()
    assert await asyncio.wait_for(waiter, 1.0) is READY


# Fair share between tenants (issue 21): one line per client key, weighted fair dequeueing.

HEAVY, LIGHT, OTHER = Tenant("heavy"), Tenant("light"), Tenant("other", weight=2.0)


class Slots:
    """A model with `free` slots: a plan can go while one is free, and taking it uses it up."""

    def __init__(self, admission: Admission) -> None:
        self.admission, self.free, self.order = admission, 0, []

    def plan(self) -> Plan:
        return READY if self.free > 0 else BUSY

    async def request(self, tenant: Tenant, label: str, max_queue: int = 100) -> None:
        await self.admission.admit(M, self.plan, 5.0, max_queue, 2, tenant)
        self.free -= 1
        self.order.append(label)

    async def free_up(self, n: int) -> None:
        for _ in range(n):
            self.free += 1
            self.admission.release(M)
            await asyncio.sleep(0.005)


async def test_a_flood_from_one_key_cannot_keep_a_light_key_behind_all_of_it():
    slots = Slots(Admission())
    tasks = [asyncio.create_task(slots.request(HEAVY, f"h{i}")) for i in range(10)]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(slots.request(LIGHT, f"l{i}")) for i in range(2)]  # arrive behind the flood
    await asyncio.sleep(0)
    await slots.free_up(12)
    await asyncio.gather(*tasks)
    # FIFO would serve the light key 11th and 12th; fair share serves it every other slot.
    assert slots.order.index("l0") <= 2 and slots.order.index("l1") <= 4


async def test_slots_go_to_tenants_in_proportion_to_their_weights():
    slots = Slots(Admission())
    tasks = [asyncio.create_task(slots.request(t, t.name)) for _ in range(12) for t in (HEAVY, OTHER)]
    await asyncio.sleep(0)
    await slots.free_up(9)
    served = slots.order[:9]
    assert served.count("other") == 6 and served.count("heavy") == 3  # weight 2 against weight 1
    for task in tasks:
        task.cancel()


async def test_batch_waits_while_any_interactive_request_waits():
    slots = Slots(Admission())
    batch = Tenant("nightly", batch=True)
    tasks = [asyncio.create_task(slots.request(batch, f"b{i}")) for i in range(3)]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(slots.request(LIGHT, f"l{i}")) for i in range(2)]
    await asyncio.sleep(0)
    await slots.free_up(5)
    await asyncio.gather(*tasks)
    assert slots.order == ["l0", "l1", "b0", "b1", "b2"]


async def test_a_full_queue_refuses_the_flood_and_pushes_batch_out_for_interactive():
    slots, seen = Slots(Admission(lambda priority, result, waited_s: seen.append((priority, result)))), []
    heavy = [asyncio.create_task(slots.request(HEAVY, f"h{i}", max_queue=4)) for i in range(4)]
    await asyncio.sleep(0)
    light = asyncio.create_task(slots.request(LIGHT, "l0", max_queue=4))  # full: the flood gives up a place
    await asyncio.sleep(0.01)
    refused = [t for t in heavy if t.done()]
    assert len(refused) == 1 and isinstance(refused[0].exception(), NoCapacity)
    with pytest.raises(NoCapacity) as info:  # the heavy key is over its share: the newcomer is refused
        await slots.request(HEAVY, "h-late", max_queue=4)
    assert "already holds its share" in info.value.message and info.value.headers["Retry-After"] == "2"
    assert ("interactive", "pushed_out") in seen and ("interactive", "full") in seen
    nightly = Tenant("nightly", batch=True)
    for task in heavy:
        task.cancel()
    await asyncio.sleep(0)
    batch = [asyncio.create_task(slots.request(nightly, f"b{i}", max_queue=4)) for i in range(3)]
    await asyncio.sleep(0)
    late = asyncio.create_task(slots.request(LIGHT, "l1", max_queue=4))  # full again: a batch waiter goes
    await asyncio.sleep(0.01)
    assert sum(t.done() for t in batch) == 1 and not late.done()
    await slots.free_up(4)
    await asyncio.gather(light, late, *[t for t in batch if not t.done()])
    assert slots.order[:2] == ["l0", "l1"]
