"""GET /status/cards: the status page's live part, rendered by the gateway (the page's script only
swaps it in). It shows what /health shows, to whom /health shows it: strangers get the status
only once keys or a token are set, a wrong bearer is the same 401. A model name a hostile worker
reports shows as text on the cards and in their data, never as markup."""

from __future__ import annotations

from tests.conftest import WorkerSpec
from tests.status_cards import parse_cards, report_form, states

# A worker's model name: its own words, untrusted. No "=" or ",": the simulated worker's model list splits on them.
HOSTILE = "x\"><script>alert(1)</script><b>y</b>:1b"


async def read(fleet, path: str, token: str | None = None) -> tuple[int, str, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with fleet.get(path, headers=headers) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


async def test_the_cards_show_each_workers_state_as_health_reports_it(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("cpu0", tier="cpu"),
                              config_extra="[health]\nunhealthy_threshold = 1\n")
    status, html, headers = await read(fleet, "/status/cards")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and headers["Cache-Control"] == "no-store"
    assert states(html) == [("gpu0", "healthy"), ("cpu0", "healthy")] and report_form(html) == "full"
    assert "<script" not in html and "<html" not in html, "a fragment, not the page"
    await fleet.stop_worker("cpu0")
    await fleet.probe()
    status, html, _ = await read(fleet, "/status/cards")
    assert status == 200 and states(html) == [("gpu0", "healthy"), ("cpu0", "down")]
    assert "cannot connect" in parse_cards(html)[1].reason
    await fleet.stop_worker("gpu0")
    await fleet.probe()
    status, html, _ = await read(fleet, "/status/cards")
    assert status == 200 and 'class="overall unavailable"' in html, "an unavailable fleet is shown, not a 503 page"


async def test_a_hostile_model_name_from_a_worker_stays_text(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", models=f"{HOSTILE}=0.5GiB"))
    async with fleet.post("/api/generate", {"model": HOSTILE, "prompt": "hi", "stream": False}) as resp:
        assert resp.status == 200, await resp.text()
    await fleet.probe()
    for path in ("/status/cards", "/status"):
        _, html, _ = await read(fleet, path)
        [card] = parse_cards(html)
        assert card.models == [HOSTILE] == card.shown_models, path
        assert not [e for e in card.elements if e.split(".")[0] in ("script", "b") and e != "b.inflight"], card.elements
        assert "alert(1)</script>" not in html and "<b>y" not in html


async def test_strangers_read_only_the_status_and_the_token_reads_the_cards(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), settings={"metrics_token": "scrape-token"}, admin_token="admin-token")
    status, html, headers = await read(fleet, "/status/cards")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert parse_cards(html) == [] and report_form(html) == "public" and "gpu0" not in html
    assert 'class="overall ok"' in html
    for token in ("scrape-token", "admin-token"):
        status, html, _ = await read(fleet, "/status/cards", token)
        assert status == 200 and states(html) == [("gpu0", "healthy")] and report_form(html) == "full"
    status, html, headers = await read(fleet, "/status/cards", "not-a-token")
    assert status == 401 and "metrics or admin token" in html and "gpu0" not in html
    assert headers["WWW-Authenticate"].startswith("Bearer")
