"""GET /api/ps says what is loaded now without letting a client amplify its traffic onto the
workers: a worker is re-probed only when its picture is older than `[server] ps_fresh_s`
(1 s by default), and callers arriving meanwhile share one probe. The gateway's clock is held
still, so "older" is decided by the test, not by how fast the machine runs."""

import asyncio
import time

from tests.conftest import WorkerSpec


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def probes_seen(fleet) -> dict[str, int]:
    return {name: worker.stats.requests["/api/ps"] for name, worker in fleet.workers.items()}


async def ps(fleet) -> list[tuple[str, list[str]]]:
    async with fleet.get("/api/ps") as resp:
        assert resp.status == 200
        return [(m["name"], m["workers"]) for m in (await resp.json())["models"]]


async def test_a_loop_of_ps_calls_costs_each_worker_at_most_one_probe_per_ps_fresh_s(start_fleet):
    clock = Clock()
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), WorkerSpec("gpu2", models="other:1b=1GiB"),
                              clock=clock)
    started = probes_seen(fleet)
    for _ in range(30):
        assert await ps(fleet) == []
    await asyncio.gather(*(ps(fleet) for _ in range(30)))
    assert probes_seen(fleet) == started, "a picture younger than ps_fresh_s is answered as it is"

    async with fleet.post("/api/generate", {"model": "llama3.2:1b", "prompt": "x", "stream": False}) as resp:
        assert resp.status == 200
        worker = resp.headers["X-Beacon-Worker"]
    clock.now += 1.5
    answers = await asyncio.gather(*(ps(fleet) for _ in range(30)))
    assert all(answer == [("llama3.2:1b", [worker])] for answer in answers), "past ps_fresh_s the answer is fresh"
    assert probes_seen(fleet) == {name: n + 1 for name, n in started.items()}, "30 callers, one probe each worker"
    for _ in range(30):
        await ps(fleet)
    assert probes_seen(fleet) == {name: n + 1 for name, n in started.items()}


async def test_a_worker_the_control_loop_just_probed_is_not_probed_again_for_ps(start_fleet):
    clock = Clock()
    fleet = await start_fleet(WorkerSpec("gpu0"), clock=clock, config_extra="[server]\nps_fresh_s = 5\n")
    clock.now += 4
    await fleet.probe()  # the loop's own probe refreshes the picture too
    seen = probes_seen(fleet)
    clock.now += 4
    await ps(fleet)
    assert probes_seen(fleet) == seen
    clock.now += 1
    await ps(fleet)
    assert probes_seen(fleet) == {"gpu0": seen["gpu0"] + 1}


async def test_a_ps_right_after_a_generate_shows_what_it_loaded_without_breaking_the_rate(start_fleet):
    """A request the gateway sent makes the worker's picture stale at once; ps then waits for the
    picture to reach ps_fresh_s rather than answer what it knows is old, or probe sooner."""
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra="[server]\nps_fresh_s = 0.2\n")
    started, begun = probes_seen(fleet)["gpu0"], time.monotonic()
    for _ in range(8):
        async with fleet.post("/api/generate", {"model": "llama3.2:1b", "prompt": "x", "stream": False}) as resp:
            assert resp.status == 200
        assert await ps(fleet) == [("llama3.2:1b", ["gpu0"])]
    probed = probes_seen(fleet)["gpu0"] - started
    assert 1 <= probed <= (time.monotonic() - begun) / 0.2 + 1, "no more than one probe per ps_fresh_s"
