"""The status page's cards, rendered by the one server function that makes them: every string a
worker or its config gives (name, model names, errors) shows as text and round-trips through the
card's data attributes, and no such string becomes markup."""

from __future__ import annotations

from gateway.handlers import status_page
from tests.status_cards import parse_cards, report_form

GIB = 1024**3
HOSTILE = ('"><img src=x onerror="alert(1)">', "'><script>alert(2)</script>", "x<b>y</b>:1b", "&amp; &lt;", "a\"b'c")


def worker(**changes) -> dict:
    return {"name": "w1", "kind": "ollama", "tier": "gpu", "state": "healthy", "error": None, "degraded": None,
            "inflight": 2, "max_inflight": 4, "tokens_per_s": 41.5, "vram_total_bytes": None, "vram_used_bytes": 0,
            "resident": [], "ejected_for_s": None} | changes


def test_a_hostile_worker_name_model_or_error_stays_text_and_round_trips_as_data():
    for hostile in HOSTILE:
        w = worker(name=hostile, state="down", error=hostile,
                   resident=[{"model": hostile, "size": GIB, "size_vram": GIB, "gpu_share": 1.0},
                             {"model": "llama3.2:1b", "size": GIB, "size_vram": GIB, "gpu_share": 1.0}])
        html = status_page.render_card(w, {hostile: 3})
        [card] = parse_cards(html)
        assert (card.worker, card.state, card.reason) == (hostile, "down", hostile)
        assert card.models == [hostile, "llama3.2:1b"] == card.shown_models
        tags = {e.split(".")[0] for e in card.elements}
        assert not tags & {"img", "script"}, f"{hostile!r} became markup: {card.elements}"
        assert [e for e in card.elements if e.startswith("b.")] == ["b.inflight"], card.elements
        assert hostile in card.text  # shown as the very characters the worker sent


def test_a_hostile_model_in_a_queue_or_a_problem_stays_text_on_the_whole_page():
    hostile = HOSTILE[0]
    body = {"status": "unavailable", "problems": [hostile], "queues": {hostile: 2}, "removed_draining": [],
            "snapshot": {"version": 3, "age_s": 0.5}, "config": {"version": "abc", "loaded_at": "now"},
            "workers": [worker(resident=[{"model": hostile, "size": GIB, "size_vram": GIB, "gpu_share": 1.0}])]}
    for html in (status_page.render_page(body), status_page.render_live(body)):
        assert "<img" not in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
        assert [c.models for c in parse_cards(html)] == [[hostile]] and report_form(html) == "full"


def test_every_state_gets_its_reason_as_data_and_as_text():
    draining = worker(state="draining", error="ignored", degraded=None)
    expected = {
        "healthy": (worker(error="an old error"), ""),
        "degraded": (worker(state="degraded", degraded="slow: 3 s to first token"), "slow: 3 s to first token"),
        "down": (worker(state="down", error="cannot connect"), "cannot connect"),
        "ejected": (worker(state="ejected", error="500 from the worker", ejected_for_s=29.6),
                    "back in 30 s: 500 from the worker"),
        "draining": (draining, "draining: finishing 2 request(s) in flight, taking no new ones"),
        "drained": (worker(state="drained"), "drained: takes no requests until undrained"),
        "warming": (worker(state="warming"), "warming: takes no traffic until its first good probe and warm-up"),
    }
    for state, (w, reason) in expected.items():
        [card] = parse_cards(status_page.render_card(w, {}))
        assert (card.state, card.reason) == (state, reason)
        assert reason in card.text


def test_a_card_says_in_flight_vram_gpu_share_queue_and_rate():
    w = worker(resident=[{"model": "big:7b", "size": 2 * GIB, "size_vram": GIB, "gpu_share": 0.5}])
    [card] = parse_cards(status_page.render_card(w, {"big:7b": 3}))
    assert card.models == ["big:7b"]
    for words in ("in flight 2 / 4", "50% on GPU", "3 queued", "VRAM unknown", "42 tokens/s", "2.0 GiB"):
        assert words in card.text, words
    [card] = parse_cards(status_page.render_card(worker(max_inflight=None, tokens_per_s=None, vram_total_bytes=24 * GIB,
                                                        vram_used_bytes=6 * GIB), {}))
    assert card.models == [] and "nothing loaded" in card.text and "no decodes" in card.text
    assert "in flight 2 (no cap)" in card.text and "VRAM 6.0 / 24.0 GiB (25%)" in card.text


def test_the_public_form_has_no_cards_and_says_so_for_the_token_box():
    for html in (status_page.render_page({"status": "ok"}), status_page.render_live({"status": "ok"})):
        assert parse_cards(html) == [] and report_form(html) == "public"
    page = status_page.render_page({"status": "ok"})
    assert '<div id="unlock" class="unlock">' in page
