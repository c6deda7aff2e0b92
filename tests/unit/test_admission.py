import asyncio

import pytest

from gateway.admission import Admission
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
