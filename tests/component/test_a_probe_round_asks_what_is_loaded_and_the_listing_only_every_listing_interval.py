"""Every probe round asks an Ollama worker what is loaded (/api/ps); what it has on disk and its
version (/api/tags, /api/version) only every [health] listing_interval_s while it stays up: one
request per worker per round instead of three, which is what a thousand workers cost the gateway.
A worker that was not up is read in full, and so is one that loads a model its listing lacks.
The gateway's clock is held still, so "every 30 s" is decided by the test."""

from local_workers.sim import SimModel
from local_workers.sim.models import GIB
from tests.conftest import WorkerSpec


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reads(sim) -> tuple[int, int, int]:
    return sim.stats.requests["/api/tags"], sim.stats.requests["/api/ps"], sim.stats.requests["/api/version"]


async def listed(fleet) -> set[str]:
    async with fleet.get("/api/tags") as resp:
        return {m["name"] for m in (await resp.json())["models"]}


async def test_rounds_read_residency_and_the_listing_every_listing_interval(start_fleet):
    clock = Clock()
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), clock=clock)
    sim = fleet.workers["gpu0"]
    tags, ps, version = reads(sim)
    for _ in range(5):
        clock.now += 2
        await fleet.probe()
    assert reads(sim) == (tags, ps + 5, version), "residency every round, nothing else"
    clock.now += 30
    await fleet.probe()
    assert reads(sim) == (tags + 1, ps + 6, version + 1), "the listing once listing_interval_s has passed"


async def test_a_model_loaded_behind_the_gateway_s_back_is_listed_the_round_after(start_fleet):
    clock = Clock()
    fleet = await start_fleet(WorkerSpec("gpu0"), clock=clock)
    sim = fleet.workers["gpu0"]
    sim.put_on_disk(SimModel("pulled:1b", int(0.5 * GIB)))  # `ollama pull` on the worker's own host
    async with fleet.http.post(fleet.worker_urls["gpu0"] + "/api/generate", json={"model": "pulled:1b"}) as resp:
        assert resp.status == 200
    await fleet.probe()
    assert "pulled:1b" in fleet.gateway.holder.current.worker("gpu0").resident, "loaded: routable already"
    tags = reads(sim)[0]
    await fleet.probe()
    assert reads(sim)[0] == tags + 1 and "pulled:1b" in await listed(fleet)


async def test_a_worker_that_was_down_is_read_in_full_until_it_is_up(start_fleet):
    clock = Clock()
    health = "[health]\ntimeout_s = 0.2\nunhealthy_threshold = 1\nhealthy_threshold = 2\n"
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), clock=clock, config_extra=health)
    sim = fleet.workers["gpu0"]
    sim.set_mode("hang")
    await fleet.probe()
    sim.set_mode("ok")
    assert not fleet.gateway.holder.current.worker("gpu0").up
    tags = reads(sim)[0]
    await fleet.probe()
    await fleet.probe()
    assert fleet.gateway.holder.current.worker("gpu0").up
    assert reads(sim)[0] == tags + 2, "both probes of its rise read the listing"
    await fleet.probe()
    assert reads(sim)[0] == tags + 2, "up again: residency alone"
