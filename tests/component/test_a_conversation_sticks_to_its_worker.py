from tests.conftest import WorkerSpec


async def chat(fleet, messages, headers=None) -> str:
    body = {"model": "llama3.2:1b", "messages": messages, "stream": False, "options": {"num_predict": 2}}
    async with fleet.post("/api/chat", body, headers=headers or {}) as resp:
        assert resp.status == 200
        return resp.headers["X-Beacon-Worker"]


async def test_turns_of_one_conversation_go_to_the_worker_that_served_it(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"))
    for name in ("gpu0", "gpu1"):  # both hold the model: without affinity, turns would spread
        async with fleet.http.post(fleet.worker_urls[name] + "/api/generate", json={"model": "llama3.2:1b"}):
            pass
    await fleet.probe()
    conversations = {}
    for n in range(4):
        system = {"role": "system", "content": f"You are assistant number {n}."}
        conversations[n] = [system, {"role": "user", "content": f"question {n}"}]
    served: dict[int, set[str]] = {n: set() for n in conversations}
    for turn in range(4):
        for n, messages in conversations.items():
            served[n].add(await chat(fleet, messages))
            messages += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": f"turn {turn}"}]
    assert all(len(workers) == 1 for workers in served.values()), served
    assert {w for s in served.values() for w in s} == {"gpu0", "gpu1"}, "different conversations still spread"


async def test_an_explicit_session_header_wins(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"))
    first = await chat(fleet, [{"role": "user", "content": "a"}], {"X-Session-Id": "s-42"})
    for text in ("b", "c", "d"):
        assert await chat(fleet, [{"role": "user", "content": text}], {"X-Session-Id": "s-42"}) == first
