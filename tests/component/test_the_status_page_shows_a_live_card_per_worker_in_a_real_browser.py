"""/status in a real headless Chromium: each card's state, models and reason as data in the DOM
after the page's script ran, a worker's change swapped into an open page, and a screenshot that
is not blank.

The gateway renders every card; the page's script only fetches /status/cards and swaps that HTML
in. So these tests read the cards' data attributes (tests/status_cards.py) from the DOM as
Chromium has it after `--virtual-time-budget` (`--dump-dom`), never colours or pixels of the CSS.
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

import numpy as np
import pytest
from aiohttp import web

from tests.conftest import WorkerSpec
from tests.status_cards import parse_cards, report_form, states

HOSTILE = "x<b>y</b>:1b"  # a model name is a worker's word: it must show as text, never as markup


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


def page_source(page: str) -> tuple[str, int]:
    """Who drew the cards ("server", "live" once the script swapped them in, "unreachable") and how often."""
    return re.search(r'data-source="(\w+)"', page)[1], int(re.search(r'data-renders="(\d+)"', page)[1])


async def test_each_worker_gets_a_card_with_its_state_models_and_reason(start_fleet, browser):
    dom, screenshot = browser
    fleet = await start_three(start_fleet)
    async with fleet.get("/status") as resp:
        served = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert_self_contained(served)
    assert page_source(served) == ("server", 0) and len(parse_cards(served)) == 3  # works without JS

    page = await dom(fleet.url + "/status")
    source, renders = page_source(page)
    assert source == "live" and renders >= 2  # the script swapped the server's cards in, and again 2 s later
    assert states(page) == [("gpu0", "healthy"), ("gpu1", "degraded"), ("cpu0", "healthy")]
    gpu0, gpu1, cpu0 = parse_cards(page)
    assert sorted(gpu0.models) == sorted(["llama3.2:1b", HOSTILE]) and gpu0.shown_models == gpu0.models
    assert gpu0.reason == ""
    assert [e for e in gpu0.elements if e.startswith("b.")] == ["b.inflight"], "a model name became markup"
    assert gpu1.models == ["big:7b"] and "spilled to CPU" in gpu1.reason
    assert cpu0.models == [] and cpu0.reason == ""

    assert_not_blank(await screenshot(fleet.url + "/status"))


async def test_an_open_page_swaps_in_a_worker_going_down_without_a_reload(start_fleet, browser, aiohttp_server):
    dom, _ = browser
    fleet = await start_three(start_fleet)
    origin, served = await serve_with_cpu0_stopped_after_the_first_swap(aiohttp_server, fleet)
    page = await dom(origin + "/status")

    first, *later = served
    assert states(first)[2] == ("cpu0", "healthy") and later, "the page loaded with cpu0 up, then asked again"
    source, renders = page_source(page)
    assert source == "live" and renders >= 2, "the page refreshed itself"
    assert states(page) == [("gpu0", "healthy"), ("gpu1", "degraded"), ("cpu0", "down")]
    assert "cannot connect" in parse_cards(page)[2].reason
    async with fleet.get("/status") as resp:  # and a fresh load, rendered by the server alone, agrees
        assert states(await resp.text())[2] == ("cpu0", "down")


async def serve_with_cpu0_stopped_after_the_first_swap(aiohttp_server, fleet) -> tuple[str, list[str]]:
    """One origin in front of the gateway: /status as the gateway serves it, and /status/cards, whose
    first answer comes while cpu0 is up; before any later one, cpu0 stops and the gateway probes.
    Returns the origin and the list of the fragments it served, filled as the page asks."""
    served: list[str] = []

    async def page(request: web.Request) -> web.Response:
        async with fleet.get("/status") as resp:
            return web.Response(text=await resp.text(), content_type="text/html")

    async def cards(request: web.Request) -> web.Response:
        if len(served) == 1:
            await fleet.stop_worker("cpu0")
            await fleet.probe()
        async with fleet.get("/status/cards") as resp:
            served.append(await resp.text())
            return web.Response(text=served[-1], status=resp.status, content_type="text/html")

    app = web.Application()
    app.router.add_get("/status", page)
    app.router.add_get("/status/cards", cards)
    return str((await aiohttp_server(app)).make_url("")).rstrip("/"), served


async def test_the_page_shows_an_unavailable_fleet_and_says_when_the_gateway_is_unreachable(start_fleet, browser,
                                                                                             tmp_path):
    dom, _ = browser
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra="[health]\nunhealthy_threshold = 1\n")
    await fleet.stop_worker("gpu0")
    await fleet.probe()
    async with fleet.get("/health") as resp:
        assert resp.status == 503
    page = await dom(fleet.url + "/status")
    assert page_source(page)[0] == "live" and "no worker is healthy" in page
    assert 'class="overall unavailable"' in page
    assert states(page) == [("gpu0", "down")] and "cannot connect" in parse_cards(page)[0].reason

    async with fleet.get("/status") as resp:
        (tmp_path / "status.html").write_text(await resp.text())
    page = await dom((tmp_path / "status.html").as_uri())  # its fetch of status/cards cannot reach any gateway
    assert page_source(page)[0] == "unreachable" and "gateway unreachable" in page
    assert states(page) == [("gpu0", "down")]  # the last known state stays


async def test_with_a_token_set_strangers_see_the_status_only_and_the_token_opens_the_cards(start_fleet, browser,
                                                                                          aiohttp_server):
    dom, _ = browser
    fleet = await start_fleet(WorkerSpec("gpu0"), settings={"metrics_token": "scrape-token"})
    page = await dom(fleet.url + "/status")
    assert page_source(page)[0] == "live" and 'class="overall ok"' in page
    assert parse_cards(page) == [] and report_form(page) == "public" and "gpu0" not in page
    assert '<div id="unlock" class="unlock">' in page, "the token box is shown"

    # The token an operator typed: the page keeps it in sessionStorage and sends it as a bearer.
    origin = await serve_seeded_page(aiohttp_server, fleet, "scrape-token")
    page = await dom(origin + "/seed")
    assert page_source(page)[0] == "live" and "scrape-token" not in page
    assert states(page) == [("gpu0", "healthy")] and report_form(page) == "full"
    assert '<div id="unlock" class="unlock" hidden="">' in page


async def serve_seeded_page(aiohttp_server, fleet, token: str) -> str:
    """One origin serving /seed (stores the token as the page's box would, then opens /status), the
    gateway's /status as a stranger gets it, and the gateway's /status/cards with the page's own headers."""
    async def seed(request: web.Request) -> web.Response:
        script = f'sessionStorage.setItem("beacon-gateway-token", "{token}"); location.replace("status");'
        return web.Response(text=f"<!doctype html><script>{script}</script>", content_type="text/html")

    async def page(request: web.Request) -> web.Response:
        async with fleet.get("/status") as resp:
            return web.Response(text=await resp.text(), content_type="text/html")

    async def cards(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        async with fleet.get("/status/cards", headers=headers) as resp:
            return web.Response(body=await resp.read(), status=resp.status, content_type="text/html")

    app = web.Application()
    app.router.add_get("/seed", seed)
    app.router.add_get("/status", page)
    app.router.add_get("/status/cards", cards)
    return str((await aiohttp_server(app)).make_url("")).rstrip("/")


# -- what the page may not do --------------------------------------------------------------------

def assert_self_contained(page: str) -> None:
    """No CDN, no web fonts, no remote anything: nothing the browser would fetch from elsewhere."""
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", page, re.I), "the page names an external URL"
    assert not re.search(r"\b(src|href|srcset|action)\s*=", page, re.I), "the page loads or links something"
    assert not re.search(r"@import|@font-face|url\(", page, re.I), "the CSS loads something"


# -- reading the screenshot ----------------------------------------------------------------------

def assert_not_blank(pixels: np.ndarray) -> None:
    """Something was drawn: not one colour, and no single colour covers (nearly) the whole window."""
    _, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
    assert len(counts) > 20 and counts.max() < 0.95 * counts.sum(), \
        f"blank page? {len(counts)} colours, the commonest covers {counts.max() / counts.sum():.0%}"


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
