import orjson

from tests.conftest import WorkerSpec

FAST_TIMEOUTS = "[failover]\nfirst_byte_timeout_s = 0.5\nconnect_timeout_s = 0.5\n"
CHAT = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 3}}


async def two_gpus(start_fleet):
    return await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), config_extra=FAST_TIMEOUTS)


async def chat_lines(fleet, stream=True):
    async with fleet.post("/api/chat", {**CHAT, "stream": stream}) as resp:
        assert resp.status == 200, await resp.text()
        text = await resp.read()
        return resp.headers["X-Beacon-Worker"], [orjson.loads(x) for x in text.splitlines() if x.strip()]


async def test_a_worker_answering_500_is_skipped(start_fleet):
    fleet = await two_gpus(start_fleet)
    fleet.workers["gpu0"].set_mode("error")
    for stream in (True, False):
        worker, lines = await chat_lines(fleet, stream)
        assert worker == "gpu1" and lines[-1]["done"] is True


async def test_a_stopped_worker_is_skipped_and_marked_down_at_once(start_fleet):
    fleet = await two_gpus(start_fleet)
    await fleet.stop_worker("gpu0")
    worker, lines = await chat_lines(fleet)
    assert worker == "gpu1" and lines[-1]["done"] is True
    assert not fleet.gateway.holder.current.worker("gpu0").up
    worker, _ = await chat_lines(fleet)
    assert worker == "gpu1"


async def test_a_hung_worker_costs_one_first_byte_timeout_then_the_next_serves(start_fleet):
    fleet = await two_gpus(start_fleet)
    fleet.workers["gpu0"].set_mode("hang")
    worker, lines = await chat_lines(fleet)
    assert worker == "gpu1" and lines[-1]["done"] is True
    fleet.workers["gpu0"].set_mode("ok")


async def test_a_non_stream_answer_cut_short_is_retried_on_the_next_worker(start_fleet):
    fleet = await two_gpus(start_fleet)
    fleet.workers["gpu0"].set_mode("drop")
    worker, lines = await chat_lines(fleet, stream=False)
    assert worker == "gpu1" and lines[0]["done"] is True


async def test_every_worker_failing_gives_502_naming_each(start_fleet):
    fleet = await two_gpus(start_fleet)
    for w in fleet.workers.values():
        w.set_mode("error")
    async with fleet.post("/api/chat", CHAT) as resp:
        assert resp.status == 502
        message = (await resp.json())["error"]
    assert "gpu0" in message and "gpu1" in message and "simulated failure" in message
    for w in fleet.workers.values():
        w.set_mode("ok")
    worker, _ = await chat_lines(fleet)
    assert worker in ("gpu0", "gpu1")


async def test_every_worker_hung_gives_504(start_fleet):
    fleet = await two_gpus(start_fleet)
    for w in fleet.workers.values():
        w.set_mode("hang")
    async with fleet.post("/api/chat", CHAT) as resp:
        assert resp.status == 504
        assert "timed out" in (await resp.json())["error"]
    for w in fleet.workers.values():
        w.set_mode("ok")
