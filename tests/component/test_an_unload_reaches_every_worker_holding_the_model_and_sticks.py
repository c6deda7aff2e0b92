"""`ollama stop` (a generate with keep_alive 0 and no prompt) and Open WebUI's unload (a chat with no
messages) unload the model from every worker that holds it, answer as Ollama does, and stick: the
warmer loads it again, keep_warm and all, only once a request asks for it. A worker that fails the
unload is named; a request with keep_alive 0 and a prompt runs on one worker and unloads there."""

from __future__ import annotations

import ollama
import pytest
from structlog.testing import capture_logs

from tests.conftest import WorkerSpec

M = "llama3.2:1b"
TWO_COPIES = f'[models."{M}"]\nkeep_warm = 2\n'


async def two_warm_copies(start_fleet, config_extra: str = TWO_COPIES):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), config_extra=config_extra)
    await fleet.gateway.warmer.step()
    await fleet.probe()
    assert all(M in w.loaded for w in fleet.workers.values())
    return fleet


async def warmer_rounds(fleet, rounds: int = 3) -> list:
    planned = []
    for _ in range(rounds):
        await fleet.probe()
        planned += await fleet.gateway.warmer.step()
    return planned


def holding(fleet) -> list[str]:
    return sorted(name for name, w in fleet.workers.items() if M in w.loaded)


async def test_ollama_stop_unloads_every_copy_and_the_warmer_waits_for_the_next_request(start_fleet):
    fleet = await two_warm_copies(start_fleet)
    client = ollama.AsyncClient(host=fleet.url)
    await client.generate(model=M, prompt="hi", options={"num_predict": 2})  # recent demand, as well as keep_warm

    with capture_logs() as logs:
        stopped = await client.generate(model=M, keep_alive=0)
    assert (stopped.done, stopped.done_reason, stopped.response, stopped.model) == (True, "unload", "", M)
    assert holding(fleet) == []
    assert [m.model for m in (await client.ps()).models] == []
    done = [e for e in logs if e["event"] == "request.done"]
    assert [(e["endpoint"], e["outcome"], e["worker"]) for e in done] == [("generate", "ok", "gpu0,gpu1")]

    await client.show(M)  # looking the model up is no demand: it loads nothing
    assert await warmer_rounds(fleet) == []
    assert holding(fleet) == []

    await client.generate(model=M, prompt="hi again", options={"num_predict": 2})
    await warmer_rounds(fleet, 1)
    assert holding(fleet) == ["gpu0", "gpu1"], "keep_warm holds again once the model is asked for"
    async with fleet.get("/metrics") as resp:
        text = await resp.text()
    assert f'beacon_requests_total{{endpoint="generate",model="{M}",outcome="ok",worker="several"}} 1.0' in text


async def test_a_chat_with_no_messages_unloads_as_ollama_answers_it(start_fleet):
    fleet = await two_warm_copies(start_fleet)
    async with fleet.post("/api/chat", {"model": M, "messages": [], "keep_alive": "0s"}) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["message"] == {"role": "assistant", "content": ""}
    assert (body["model"], body["done"], body["done_reason"]) == (M, True, "unload")
    assert holding(fleet) == []


async def test_a_pinned_model_stays_unloaded_until_asked_for_and_the_log_says_the_pin_is_held_off(start_fleet):
    fleet = await two_warm_copies(start_fleet, f'[models."{M}"]\npin = ["gpu0", "gpu1"]\n')
    with capture_logs() as logs:
        await ollama.AsyncClient(host=fleet.url).generate(model=M, keep_alive=0)
    unloaded = [e for e in logs if e["event"] == "model.unloaded"]
    assert [(e["log_level"], e["workers"], e["pin_held_off"]) for e in unloaded] == [
        ("warning", ["gpu0", "gpu1"], ["gpu0", "gpu1"])]
    assert await warmer_rounds(fleet) == [] and holding(fleet) == []


async def test_a_model_whose_operator_forbids_unloading_stays_loaded(start_fleet):
    fleet = await two_warm_copies(start_fleet, TWO_COPIES + 'min_keep_alive = "10m"\n')
    stopped = await ollama.AsyncClient(host=fleet.url).generate(model=M, keep_alive=0)
    assert stopped.done_reason == "load", "raised to 10 minutes, the request only loads"
    assert holding(fleet) == ["gpu0", "gpu1"]
    assert fleet.gateway.inflight.held_unloaded() == {}


async def test_a_worker_sent_the_model_since_its_last_probe_is_unloaded_too(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"))
    client = ollama.AsyncClient(host=fleet.url)
    await client.generate(model=M, prompt="hi", options={"num_predict": 2})  # loads it; no probe has seen that
    [sent] = holding(fleet)
    [other] = set(fleet.workers) - {sent}
    async with fleet.http.post(fleet.worker_urls[other] + "/api/generate", json={"model": M}) as resp:
        assert resp.status == 200  # loaded behind the gateway's back, and probed: resident as far as it knows
    await fleet.gateway.prober.refresh({other})
    assert [n for n, w in fleet.gateway.holder.current.workers.items() if M in w.resident] == [other]
    await client.generate(model=M, keep_alive=0)
    assert holding(fleet) == []


async def test_a_copy_loaded_behind_the_gateways_back_is_found_by_a_fresh_probe(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), config_extra="[server]\nps_fresh_s = 0\n")
    async with fleet.http.post(fleet.worker_urls["gpu1"] + "/api/generate", json={"model": M}) as resp:
        assert resp.status == 200  # another replica's warm-up, or a client of the worker's own
    assert not any(M in w.resident for w in fleet.gateway.holder.current.workers.values())
    await ollama.AsyncClient(host=fleet.url).generate(model=M, keep_alive=0)
    assert holding(fleet) == []


async def test_a_worker_failing_the_unload_is_named_and_the_others_unload(start_fleet):
    fleet = await two_warm_copies(start_fleet)
    fleet.workers["gpu1"].set_mode("error")
    with pytest.raises(ollama.ResponseError) as failed:
        await ollama.AsyncClient(host=fleet.url).generate(model=M, keep_alive=0)
    assert failed.value.status_code == 502
    assert failed.value.error.startswith("unload failed on 1 of 2 workers: gpu1: ")
    assert "gpu0" not in failed.value.error and "127.0.0.1" not in failed.value.error
    assert holding(fleet) == ["gpu1"]
    fleet.workers["gpu1"].set_mode("ok")
    assert await warmer_rounds(fleet) == [], "what did unload stays unloaded; the copy that failed is not re-armed"


async def test_a_worker_that_does_not_answer_the_unload_in_time_is_a_504(start_fleet):
    fleet = await two_warm_copies(start_fleet, TWO_COPIES + "[warmer]\ntimeout_s = 0.3\n[health]\ntimeout_s = 0.3\n")
    fleet.workers["gpu1"].set_mode("hang")
    try:
        async with fleet.post("/api/generate", {"model": M, "keep_alive": 0}) as resp:
            assert resp.status == 504
            error = (await resp.json())["error"]
    finally:
        fleet.workers["gpu1"].set_mode("ok")
    assert error == "unload failed on 1 of 2 workers: gpu1: no answer within 0.3s ([warmer] timeout_s)"
    assert holding(fleet) == ["gpu1"]


async def test_a_worker_that_manages_its_own_models_keeps_them_and_the_unload_still_succeeds(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("oai0", kind="openai"))
    async with fleet.http.post(fleet.worker_urls["gpu0"] + "/api/generate", json={"model": M}) as resp:
        assert resp.status == 200
    await fleet.probe()
    with capture_logs() as logs:
        stopped = await ollama.AsyncClient(host=fleet.url).generate(model=M, keep_alive=0)
    assert stopped.done_reason == "unload" and M not in fleet.workers["gpu0"].loaded
    [unloaded] = [e for e in logs if e["event"] == "model.unloaded"]
    assert (unloaded["workers"], unloaded["kept"]) == (["gpu0"], ["oai0"])


async def test_an_unload_of_a_model_no_worker_has_is_a_404(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    async with fleet.post("/api/generate", {"model": "nothere:1b", "keep_alive": 0}) as resp:
        assert resp.status == 404
        assert "nothere:1b" in (await resp.json())["error"]


async def test_keep_alive_zero_with_a_prompt_runs_on_one_worker_unloads_there_and_is_not_warmed(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"))
    client = ollama.AsyncClient(host=fleet.url)
    answered = await client.generate(model=M, prompt="hi", keep_alive=0, options={"num_predict": 2})
    assert answered.done_reason != "unload" and answered.response
    assert sum(w.stats.loads.count(M) for w in fleet.workers.values()) == 1, "one worker ran it"
    assert holding(fleet) == [], "and unloaded it after answering"
    assert await warmer_rounds(fleet) == [], "the request asked for the unload: its demand does not undo it"

    await client.generate(model=M, prompt="hi", options={"num_predict": 2})
    fleet.workers[holding(fleet)[0]].unload_now(M)  # its keep_alive ran out, say
    assert [w.reason for w in await warmer_rounds(fleet, 1)] == ["demand"]
