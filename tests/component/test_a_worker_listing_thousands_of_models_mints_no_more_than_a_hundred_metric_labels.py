"""Workers are untrusted for names and counts, and a manage key can mint models with cheap copies.
A worker that lists thousands of models and holds a thousand loaded must not grow /metrics: model
labels are the configured models plus the first 100 seen on workers, the rest `other`, in every
metric (requests, latencies, tokens, loads, resident models, queue depths)."""

from __future__ import annotations

import re

import orjson
import pytest
from aiohttp import web

from gateway.metrics import MODEL_LABEL_CAP
from tests.conftest import WorkerSpec

LISTED, RESIDENT = 3000, 1000
CONFIGURED = "configured:7b"


@pytest.fixture
async def hoarder(aiohttp_server):
    """An Ollama worker that lists LISTED models, RESIDENT of them loaded, and answers any of them."""
    tags = {"models": [{"name": f"m{i}:1b", "model": f"m{i}:1b", "size": 1000} for i in range(LISTED)]}
    ps = {"models": [{**m, "size_vram": 1000} for m in tags["models"][:RESIDENT]]}

    async def generate(request: web.Request) -> web.Response:
        model = orjson.loads(await request.read())["model"]
        return web.json_response({"model": model, "response": "x", "done": True, "eval_count": 4,
                                  "eval_duration": 1000})

    def answer(body: dict, status: int = 200):
        async def handler(request: web.Request) -> web.Response:
            return web.json_response(body, status=status)
        return handler

    app = web.Application()
    app.router.add_get("/api/tags", answer(tags))
    app.router.add_get("/api/ps", answer(ps))
    app.router.add_get("/api/version", answer({"version": "0.12.6"}))
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/show", answer({"error": "no"}, 404))
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def scrape(fleet) -> tuple[str, set[str]]:
    async with fleet.get("/metrics") as resp:
        text = await resp.text()
    return text, set(re.findall(r'model="([^"]*)"', text))


async def generate(fleet, model: str) -> int:
    async with fleet.post("/api/generate", {"model": model, "prompt": "x", "stream": False}) as resp:
        return resp.status


async def test_model_labels_stay_within_the_config_plus_a_hundred(start_fleet, hoarder):
    fleet = await start_fleet(WorkerSpec("hoard", url=hoarder), config_extra=f'[models."{CONFIGURED}"]\n')
    assert len(fleet.gateway.holder.current.workers["hoard"].resident) == RESIDENT
    for i in range(RESIDENT - 300, RESIDENT):  # resident, so no load: requests alone mint names
        assert await generate(fleet, f"m{i}:1b") == 200
    for i in range(RESIDENT, RESIDENT + 50):  # listed, not loaded: counted as loads too
        assert await generate(fleet, f"m{i}:1b") == 200
    assert await generate(fleet, CONFIGURED) == 404, "configured but on no worker"
    first, labels = await scrape(fleet)
    own = labels - {"other", "none", CONFIGURED}
    assert len(own) <= MODEL_LABEL_CAP and "other" in labels and CONFIGURED in labels, sorted(labels)[:5]
    assert all(m.startswith("m") and m.endswith(":1b") for m in own)

    for i in range(RESIDENT + 50, RESIDENT + 350):  # more names, more traffic: no new series
        assert await generate(fleet, f"m{i}:1b") == 200
    await fleet.probe()
    second, again = await scrape(fleet)
    assert again == labels
    series = [line for line in second.splitlines() if line and not line.startswith("#")]
    assert len(series) == len([line for line in first.splitlines() if line and not line.startswith("#")])
    resident = [line for line in series if line.startswith("beacon_model_resident{")]
    assert len(resident) <= MODEL_LABEL_CAP + 1
    assert 'beacon_model_resident{model="other",worker="hoard"}' in second
