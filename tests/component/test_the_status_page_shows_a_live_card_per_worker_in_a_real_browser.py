"""/status in a real headless Chromium: the DOM after the page's JS ran, and a screenshot's pixels.

Skips only when chromium is missing and CI_REQUIRE_BROWSER is not 1 (.ci/run installs chromium
and sets it, so CI fails instead of skipping). The browser runs as an asyncio subprocess, never a
blocking one: the gateway it talks to serves from this test's own event loop.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import struct
import zlib
from html import escape
from html.parser import HTMLParser

import numpy as np
import pytest
from aiohttp import web

from gateway.handlers import status_page
from tests.conftest import WorkerSpec

HEALTHY, DEGRADED, DOWN = (0x2E, 0x9D, 0x4F), (0xE0, 0xA8, 0x00), (0xC6, 0x28, 0x28)  # the card borders' CSS
HOSTILE = "x<b>y</b>:1b"  # a model name is user input: it must show as text, never as markup


@pytest.fixture
def browser(tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI_REQUIRE_BROWSER") == "1":
            pytest.fail("CI_REQUIRE_BROWSER=1 but chromium is not installed (see the install step in .ci/run)")
        pytest.skip("chromium is not installed (apt-get install -y chromium); CI installs it and does not skip")

    async def run(url: str, *flags: str) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", *flags, url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
        return out

    async def dom(url: str) -> str:
        return (await run(url, "--dump-dom")).decode()

    async def screenshot(url: str) -> np.ndarray:
        path = tmp_path / "status.png"
        await run(url, f"--screenshot={path}", "--window-size=1200,900", "--hide-scrollbars",
                  "--force-device-scale-factor=1", "--force-color-profile=srgb")
        return decode_png(path.read_bytes())

    return dom, screenshot


async def start_three(start_fleet):
    fleet = await start_fleet(
        WorkerSpec("gpu0", models=f"llama3.2:1b=1.3GiB,{HOSTILE}=0.5GiB", extra_toml="vram_gib = 24\n"),
        WorkerSpec("gpu1", models="big:7b=3GiB", vram_gib=2),  # spills to CPU: degraded, partial GPU share
        WorkerSpec("cpu0", tier="cpu"),
        config_extra="[health]\nunhealthy_threshold = 1\n")
    for model in ("llama3.2:1b", HOSTILE, "big:7b"):
        async with fleet.post("/api/generate", {"model": model, "prompt": "hi", "stream": False}) as resp:
            assert resp.status == 200, await resp.text()
    await fleet.probe()
    return fleet


async def test_each_worker_gets_a_card_with_its_state_models_vram_and_rate(start_fleet, browser):
    dom, screenshot = browser
    fleet = await start_three(start_fleet)
    async with fleet.get("/status") as resp:
        served = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert_self_contained(served)
    assert 'data-source="server"' in served and served.count('<div class="card ') == 3  # works without JS
    assert "x&lt;b&gt;y&lt;/b&gt;:1b" in served and "<b>y</b>" not in served

    page = await dom(fleet.url + "/status")
    assert 'data-source="live"' in page  # the inline JS fetched /health and re-rendered the cards...
    assert int(re.search(r'data-renders="(\d+)"', page)[1]) >= 2  # ...and again 2 s (virtual) later
    cards = parse_cards(page)
    assert [(c["name"], c["state"]) for c in cards] == [("gpu0", "healthy"), ("gpu1", "degraded"), ("cpu0", "healthy")]
    gpu0, gpu1, cpu0 = cards
    assert sorted(gpu0["models"]) == sorted(["llama3.2:1b", HOSTILE]) and "<b>y</b>" not in page
    assert re.search(r"VRAM 1\.8 / 24\.0 GiB \(\d+%\)", gpu0["text"]) and "tokens/s (last 60 s)" in gpu0["text"]
    assert gpu1["models"] == ["big:7b"] and "% on GPU" in gpu1["text"] and "spilled to CPU" in gpu1["reason"]
    assert "VRAM unknown" in gpu1["text"]
    assert cpu0["models"] == [] and "nothing loaded" in cpu0["text"] and "no decodes" in cpu0["text"]
    assert "in flight 0" in cpu0["text"]

    pixels = await screenshot(fleet.url + "/status")
    assert_not_blank(pixels)
    assert stripes(pixels) == (2, 1, 0)  # (healthy, degraded, down) card borders


async def test_a_stopped_worker_shows_down_on_a_fresh_load_and_on_an_open_page(start_fleet, browser, aiohttp_server):
    dom, screenshot = browser
    fleet = await start_three(start_fleet)
    async with fleet.get("/status") as resp:
        before = await resp.text()
    assert [c["state"] for c in parse_cards(before)] == ["healthy", "degraded", "healthy"]
    await fleet.stop_worker("cpu0")
    await fleet.probe()

    cards = parse_cards(await dom(fleet.url + "/status"))
    assert [(c["name"], c["state"]) for c in cards] == [("gpu0", "healthy"), ("gpu1", "degraded"), ("cpu0", "down")]
    assert "cannot connect" in cards[2]["reason"]
    pixels = await screenshot(fleet.url + "/status")
    assert stripes(pixels) == (1, 1, 1)  # (healthy, degraded, down) card borders

    # A page opened while cpu0 was up: its script alone must turn the card red, with no reload.
    page = await dom(await serve_stale_page(aiohttp_server, before, fleet) + "/status")
    assert 'data-source="live"' in page
    assert [(c["name"], c["state"]) for c in parse_cards(page)][2] == ("cpu0", "down")


async def serve_stale_page(aiohttp_server, html: str, fleet) -> str:
    """Same origin as its /health, which is the gateway's live one; the page itself never changes."""
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    async def health(request: web.Request) -> web.Response:
        async with fleet.get("/health") as resp:
            return web.Response(body=await resp.read(), status=resp.status, content_type="application/json")

    app = web.Application()
    app.router.add_get("/status", page)
    app.router.add_get("/health", health)
    return str((await aiohttp_server(app)).make_url("")).rstrip("/")


async def test_the_page_renders_a_503_report_and_says_when_the_gateway_is_unreachable(start_fleet, browser, tmp_path):
    dom, _ = browser
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra="[health]\nunhealthy_threshold = 1\n")
    await fleet.stop_worker("gpu0")
    await fleet.probe()
    async with fleet.get("/health") as resp:
        assert resp.status == 503
    page = await dom(fleet.url + "/status")
    assert 'data-source="live"' in page and "no worker is healthy" in page
    assert 'class="overall unavailable"' in page
    assert [(c["name"], c["state"]) for c in parse_cards(page)] == [("gpu0", "down")]

    async with fleet.get("/status") as resp:
        (tmp_path / "status.html").write_text(await resp.text())
    page = await dom((tmp_path / "status.html").as_uri())  # its fetch of /health cannot reach any gateway
    assert 'data-source="unreachable"' in page and "gateway unreachable" in page
    assert [(c["name"], c["state"]) for c in parse_cards(page)] == [("gpu0", "down")]  # the last known state stays


async def test_with_a_token_set_strangers_see_the_status_only_and_the_token_opens_the_cards(start_fleet, browser,
                                                                                          aiohttp_server):
    dom, _ = browser
    fleet = await start_fleet(WorkerSpec("gpu0"), settings={"metrics_token": "scrape-token"})
    page = await dom(fleet.url + "/status")
    assert 'data-source="live"' in page and 'class="overall ok"' in page
    assert parse_cards(page) == [] and "gpu0" not in page
    assert '<div id="unlock" class="unlock">' in page, "the token box is shown"

    # The token an operator typed: the page keeps it in sessionStorage and sends it as a bearer.
    origin = await serve_seeded_page(aiohttp_server, fleet, "scrape-token")
    page = await dom(origin + "/seed")
    assert 'data-source="live"' in page and "scrape-token" not in page
    assert [(c["name"], c["state"]) for c in parse_cards(page)] == [("gpu0", "healthy")]
    assert '<div id="unlock" class="unlock" hidden="">' in page


async def serve_seeded_page(aiohttp_server, fleet, token: str) -> str:
    """One origin serving /seed (stores the token as the page's box would, then opens /status), the
    gateway's /status as a stranger gets it, and the gateway's /health with the page's own headers."""
    async def seed(request: web.Request) -> web.Response:
        script = f'sessionStorage.setItem("beacon-gateway-token", "{token}"); location.replace("status");'
        return web.Response(text=f"<!doctype html><script>{script}</script>", content_type="text/html")

    async def page(request: web.Request) -> web.Response:
        async with fleet.get("/status") as resp:
            return web.Response(text=await resp.text(), content_type="text/html")

    async def health(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        async with fleet.get("/health", headers=headers) as resp:
            return web.Response(body=await resp.read(), status=resp.status, content_type="application/json")

    app = web.Application()
    app.router.add_get("/seed", seed)
    app.router.add_get("/status", page)
    app.router.add_get("/health", health)
    return str((await aiohttp_server(app)).make_url("")).rstrip("/")


def test_server_side_cards_escape_every_string_and_explain_every_state():
    hostile = '<img onerror="alert(1)">'
    worker = {"name": "w1", "kind": "ollama", "tier": "gpu", "state": "draining", "error": hostile, "degraded": None,
              "inflight": 2, "max_inflight": 4, "tokens_per_s": 41.5, "vram_total_bytes": None, "vram_used_bytes": 0,
              "resident": [{"model": hostile, "size": 2 * 1024**3, "size_vram": 1024**3, "gpu_share": 0.5}]}
    card = status_page.render_card(worker, {hostile: 3})
    assert "<img" not in card and "&lt;img onerror=&quot;alert(1)&quot;&gt;" in card
    assert "finishing 2 request(s) in flight" in card and "in flight <b class=\"inflight\">2 / 4</b>" in card
    assert "50% on GPU" in card and "3 queued" in card and "VRAM unknown" in card and "42 tokens/s" in card
    for state, words in (("down", hostile), ("drained", "drained"), ("degraded", "slow")):
        card = status_page.render_card(worker | {"state": state, "degraded": "slow"}, {})
        assert escape(words) in card and f'<div class="card {state}"' in card


# -- what the page may not do --------------------------------------------------------------------

def assert_self_contained(page: str) -> None:
    """No CDN, no web fonts, no remote anything: nothing the browser would fetch from elsewhere."""
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", page, re.I), "the page names an external URL"
    assert not re.search(r"\b(src|href|srcset|action)\s*=", page, re.I), "the page loads or links something"
    assert not re.search(r"@import|@font-face|url\(", page, re.I), "the CSS loads something"


# -- reading the DOM -----------------------------------------------------------------------------

class _Cards(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict] = []
        self._depth = 0  # element depth inside the current card; 0 = outside any card
        self._field: tuple[str, int] | None = None  # (collecting "model" or "reason", depth it began at)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if self._depth:
            self._depth += tag not in ("br", "img", "input", "meta")
            cls = a.get("class") or ""
            if cls in ("model", "reason"):
                self._field = (cls, self._depth)
            if cls == "model":
                self.cards[-1]["models"].append("")
        elif "card" in (a.get("class") or "").split():
            self.cards.append({"name": a.get("data-worker"), "state": a.get("data-state"), "models": [],
                               "reason": "", "text": ""})
            self._depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self._depth:
            if self._field and self._field[1] == self._depth:
                self._field = None
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if not self._depth:
            return
        card = self.cards[-1]
        card["text"] += data
        if self._field and self._field[0] == "model":
            card["models"][-1] += data
        elif self._field:
            card["reason"] += data


def parse_cards(page: str) -> list[dict]:
    parser = _Cards()
    parser.feed(page)
    return parser.cards


# -- reading the screenshot ----------------------------------------------------------------------

def decode_png(data: bytes) -> np.ndarray:
    """8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) -> array (height, width, 3)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and not interlace, f"unsupported PNG {header}"
    bpp = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), np.uint8).reshape(height, 1 + width * bpp)
    out = np.zeros((height, width * bpp), np.uint8)
    prev = np.zeros(width * bpp, np.uint8)
    for y in range(height):
        out[y] = prev = _unfilter(int(raw[y, 0]), raw[y, 1:], prev, bpp)
    return out.reshape(height, width, bpp)[:, :, :3]


def _unfilter(kind: int, row: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    if kind == 0:
        return row
    if kind == 1:  # Sub: a running sum along the row, per channel
        return (np.cumsum(row.reshape(-1, bpp), axis=0, dtype=np.uint64) % 256).astype(np.uint8).reshape(-1)
    if kind == 2:
        return row + prev  # uint8 wraps, as PNG wants
    cur, up = bytearray(row.tobytes()), prev.tobytes()
    for i in range(len(cur)):
        left = cur[i - bpp] if i >= bpp else 0
        if kind == 3:
            cur[i] = (cur[i] + (left + up[i]) // 2) & 0xFF
            continue
        corner = up[i - bpp] if i >= bpp else 0
        p = left + up[i] - corner
        pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - corner)
        cur[i] = (cur[i] + (left if pa <= pb and pa <= pc else up[i] if pb <= pc else corner)) & 0xFF
    return np.frombuffer(bytes(cur), np.uint8)


def border_stripes(pixels: np.ndarray, rgb: tuple[int, int, int]) -> int:
    """How many card borders of exactly this colour: runs of adjacent columns, each a tall 8 px stripe.
    Only the cards' left borders paint these colours (status_page.py keeps it so)."""
    tall = (np.all(pixels == rgb, axis=2).sum(axis=0) >= 60).astype(np.int8)  # columns painted >= 60 px high
    starts, ends = np.flatnonzero(np.diff(np.r_[0, tall]) == 1), np.flatnonzero(np.diff(np.r_[tall, 0]) == -1)
    widths = ends - starts + 1
    assert all(5 <= w <= 10 for w in widths), f"stripes of {rgb} are {list(widths)} px wide, not a card border"
    return len(widths)


def stripes(pixels: np.ndarray) -> tuple[int, int, int]:
    return border_stripes(pixels, HEALTHY), border_stripes(pixels, DEGRADED), border_stripes(pixels, DOWN)


def assert_not_blank(pixels: np.ndarray) -> None:
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    background = np.all(pixels == (0xF4, 0xF5, 0xF7), axis=2).mean()
    assert len(colours) > 50 and background < 0.95, f"blank page? {len(colours)} colours, {background:.0%} background"
