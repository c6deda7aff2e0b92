"""A probe round of the whole fleet lands in one snapshot swap, not one per worker (each swap is
a new snapshot the request path's indexes are rebuilt for), and a worker that hangs does not hold
the others' results back until its probe times out: what landed is published meanwhile."""

import asyncio

from tests.conftest import WorkerSpec


async def test_a_probe_round_of_sixty_workers_lands_in_one_snapshot_swap(start_fleet):
    fleet = await start_fleet(*(WorkerSpec(f"gpu{i}") for i in range(60)))
    before = fleet.gateway.holder.current
    await fleet.probe()
    after = fleet.gateway.holder.current
    assert all(after.worker(f"gpu{i}").probed_at > before.worker(f"gpu{i}").probed_at for i in range(60))
    assert after.version - before.version == 1, f"{after.version - before.version} swaps for one round"


async def test_a_hanging_worker_does_not_hold_back_the_others_results(start_fleet):
    fleet = await start_fleet(*(WorkerSpec(f"gpu{i}") for i in range(4)), config_extra="[health]\ntimeout_s = 1.5\n")
    holder = fleet.gateway.holder
    before = holder.current
    fleet.workers["gpu0"].set_mode("hang")
    round_ = asyncio.ensure_future(fleet.probe())
    first = await holder.changed()
    assert not round_.done(), "the healthy workers' results landed while gpu0's probe still waited"
    assert all(first.worker(f"gpu{i}").probed_at > before.worker(f"gpu{i}").probed_at for i in (1, 2, 3))
    assert first.worker("gpu0").probed_at == before.worker("gpu0").probed_at
    await round_
    fleet.workers["gpu0"].set_mode("ok")
    after = holder.current
    assert after.worker("gpu0").failures == 1 and after.worker("gpu0").last_error
    # one swap per half second (probes.PUBLISH_S) the round lasted, and the last: a bounded few
    assert after.version - before.version <= 4, f"{after.version - before.version} swaps for one round"
