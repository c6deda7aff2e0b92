"""GET /status: the fleet for people, one card per worker, as one self-contained HTML page;
GET /status/cards: the page's live part (the summary and the cards), which its script swaps in.

Every card is rendered here, by `render_card`, and only here: the page works without JS, and
the inline JS only fetches /status/cards every 2 s and puts the server's HTML in place. It holds
no card rules of its own. Each card carries its worker, state, reason and models as data
attributes, so a test or a script reads state as data, not from colours or wording.
No external assets (no CDN, no web fonts): the page must work on an air-gapped on-call laptop.
Reads only `ops.health_report`; must not compute fleet state of its own or change anything.
Every string from workers or clients (names, errors, model names) is escaped, text and attributes.
Both routes are guarded as /health is: where /health shows strangers only its public form, so
do they, and the page shows a box for the metrics or admin token: the JS keeps it in
sessionStorage (this tab only, never in a URL) and sends it as a bearer on its own fetches.
"""

from __future__ import annotations

import json
from html import escape

from aiohttp import web

from gateway.context import GATEWAY
from gateway.handlers.ops import full_report_allowed, health_report, public_report

GIB = 1024**3


async def status_page(request: web.Request) -> web.Response:
    return _html(render_page(_report(request)))


async def status_cards(request: web.Request) -> web.Response:
    """Always 200 when it answers: the fleet's state is in the fragment, and a proxy in front may swap
    a 503's body for its own error page. A wrong bearer is still the 401 that /health gives."""
    return _html(render_live(_report(request)))


def _report(request: web.Request) -> dict:
    gw = request.app[GATEWAY]
    return (health_report(gw) if full_report_allowed(request) else public_report(gw))[1]


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})


def render_page(body: dict) -> str:
    """The whole page; `body` is /health's full report or its public form (no workers)."""
    return (_HEAD + _summary(body) + _unlock("workers" not in body) +
            '<p id="conn" class="conn">rendered by the gateway; live updates need JavaScript</p>' +
            _cards(body) + _TAIL)


def render_live(body: dict) -> str:
    """What /status/cards answers: the same two elements the page has, for its script to swap in."""
    return _summary(body) + _cards(body)


def _summary(body: dict) -> str:
    return f'<header id="summary">{render_summary(body)}</header>'


def _cards(body: dict) -> str:
    # data-report tells the script whether to show the token box: "public" is the form without workers.
    report = "full" if "workers" in body else "public"
    cards = "".join(render_card(w, body.get("queues") or {}) for w in body.get("workers", ()))
    return f'<main id="cards" class="cards" data-report="{report}">{cards}</main>'


def _unlock(shown: bool) -> str:
    # No <form>: without JS a form would send the token in a query string, into logs and history.
    return (f'<div id="unlock" class="unlock"{"" if shown else " hidden"}><label>Workers, models and errors '
            'need the metrics or admin token: <input id="token" type="password" autocomplete="off"></label> '
            '<button id="show" type="button">show</button> <span id="unlock-note" class="note"></span></div>')


def render_summary(body: dict) -> str:
    status = body["status"]
    if "workers" not in body:  # the public form: ready or not, nothing else
        return f'<h1>beacon-gateway <span class="overall {escape(status)}">{escape(status)}</span></h1>'
    problems = "".join(f"<li>{escape(p)}</li>" for p in body["problems"])
    queues = body.get("queues") or {}
    waiting = ", ".join(f"{escape(m)}: {n}" for m, n in sorted(queues.items())) or "none"
    for gone in body.get("removed_draining") or []:
        problems += f'<li class="gone">{escape(gone["name"])}: removed by a reload, {gone["inflight"]} in flight</li>'
    snap, config = body["snapshot"], body["config"]
    return (f'<h1>beacon-gateway <span class="overall {escape(status)}">{escape(status)}</span></h1>'
            f'<ul class="problems">{problems}</ul>'
            f'<p class="meta">config <code>{escape(str(config["version"]))}</code> loaded '
            f'{escape(str(config["loaded_at"]))} &middot; snapshot {escape(str(snap["version"]))} '
            f'({snap["age_s"]:.1f} s old) &middot; queued: <span class="queues">{waiting}</span></p>')


def render_card(w: dict, queues: dict) -> str:
    """One worker's card: the only place a card's markup is made (the page's script only swaps it in)."""
    state, name, reason = escape(w["state"]), escape(w["name"]), escape(_reason(w))
    models = escape(json.dumps([r["model"] for r in w["resident"]]))  # a JSON list: names may hold any character
    return (f'<div class="card {state}" data-worker="{name}" data-state="{state}" data-reason="{reason}" '
            f'data-models="{models}">'
            f'<div class="top"><h2>{name}</h2><span class="state">{state}</span></div>'
            f'<p class="meta">{escape(w["tier"])} tier &middot; {escape(w["kind"])} &middot; '
            f'in flight <b class="inflight">{_inflight(w)}</b></p>'
            f'<p class="reason">{reason}</p>{_vram(w)}'
            f'<ul class="models">{_models(w, queues)}</ul>'
            f'<p class="rate">{_rate(w["tokens_per_s"])}</p></div>')


def _inflight(w: dict) -> str:
    cap = w.get("max_inflight")
    return f"{w['inflight']} / {cap}" if cap else f"{w['inflight']} (no cap)"


def _reason(w: dict) -> str:
    """Why a worker is not plainly healthy (empty when it is)."""
    state, error = w["state"], w.get("error") or ""
    if state == "degraded":
        return w.get("degraded") or error
    if state == "ejected":
        return f"back in {w['ejected_for_s']:.0f} s: {error}" if w.get("ejected_for_s") else error
    if state in _QUIET:
        return _QUIET[state].format(n=w["inflight"])
    return "" if state == "healthy" else error


_QUIET = {  # states an operator or a reload chose: say what the worker does now, not an error
    "draining": "draining: finishing {n} request(s) in flight, taking no new ones",
    "drained": "drained: takes no requests until undrained",
    "warming": "warming: takes no traffic until its first good probe and warm-up",
}


def _vram(w: dict) -> str:
    total, used = w.get("vram_total_bytes"), w.get("vram_used_bytes") or 0
    if not total:
        label = f"VRAM unknown ({used / GIB:.1f} GiB resident)" if used else "VRAM unknown"
        return f'<div class="bar unknown"><div class="fill" style="width:0%"></div></div><p class="vram">{label}</p>'
    pct = min(100.0, 100.0 * used / total)
    return (f'<div class="bar"><div class="fill" style="width:{pct:.0f}%"></div></div>'
            f'<p class="vram">VRAM {used / GIB:.1f} / {total / GIB:.1f} GiB ({pct:.0f}%)</p>')


def _models(w: dict, queues: dict) -> str:
    items = []
    for r in w["resident"]:
        share = r.get("gpu_share")
        extra = f' <span class="share">{100 * share:.0f}% on GPU</span>' if share is not None and share < 1 else ""
        if queues.get(r["model"]):
            extra += f' <span class="queued">{queues[r["model"]]} queued</span>'
        items.append(f'<li><span class="model">{escape(r["model"])}</span> '
                     f'<span class="size">{(r.get("size") or 0) / GIB:.1f} GiB</span>{extra}</li>')
    return "".join(items) or '<li class="none">nothing loaded</li>'


def _rate(rate: float | None) -> str:
    return "no decodes in the last 60 s" if rate is None else f"{rate:.0f} tokens/s (last 60 s)"


_HEAD = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>beacon-gateway status</title><style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem 2rem;background:#f4f5f7;color:#1f2328}
h1{font-size:1.4rem;margin:0 0 .4rem}.meta{color:#57606a;font-size:.85rem;margin:.2rem 0}
.overall{font-size:.95rem;padding:.1rem .6rem;border-radius:1rem;vertical-align:middle}
.overall.ok{background:#dff3e4;color:#1b5e20}.overall.unavailable{background:#fbe3e1;color:#8e0000}
.problems{color:#8e0000;margin:.3rem 0;padding-left:1.2rem}.problems:empty{display:none}.gone{color:#0d47a1}
.conn{font-size:.8rem;color:#57606a}.conn.lost{color:#fff;background:#8e0000;padding:.4rem .8rem;border-radius:4px}
body.stale .cards{opacity:.45}
.cards{display:flex;flex-wrap:wrap;gap:1rem;align-items:stretch}
.card{background:#fff;border-radius:6px;padding:.8rem 1rem;width:18rem;border-left:8px solid #9e9e9e;
box-shadow:0 1px 2px rgba(0,0,0,.12)}
.card.healthy{border-left-color:#2e9d4f}.card.degraded{border-left-color:#e0a800}
.card.down{border-left-color:#c62828}.card.ejected{border-left-color:#8e24aa}
.card.draining{border-left-color:#1e88e5}.card.drained{border-left-color:#546e7a}
.card.warming{border-left-color:#00897b}.card.unknown{border-left-color:#9e9e9e}
.top{display:flex;justify-content:space-between;align-items:baseline}
h2{font-size:1.1rem;margin:0;overflow-wrap:anywhere}
.state{font-size:.75rem;text-transform:uppercase;letter-spacing:.05em;padding:.1rem .5rem;border-radius:1rem;
background:#eceff1;color:#37474f}.healthy .state{background:#dff3e4;color:#1b5e20}
.degraded .state{background:#fff3cd;color:#6d4c00}.down .state{background:#fbe3e1;color:#8e0000}
.ejected .state{background:#f3e5f5;color:#4a148c}.draining .state{background:#e3f2fd;color:#0d47a1}
.reason{color:#8e0000;font-size:.85rem;min-height:1em;margin:.3rem 0;overflow-wrap:anywhere}
.bar{height:10px;background:#e3e6ea;border-radius:5px;overflow:hidden}
.bar .fill{height:100%;background:#3f51b5}
.bar.unknown{background:repeating-linear-gradient(45deg,#e3e6ea 0 6px,#f4f5f7 6px 12px)}
.vram,.rate{font-size:.85rem;margin:.3rem 0}.models{padding-left:1.1rem;margin:.3rem 0;font-size:.9rem}
.model{font-family:ui-monospace,monospace;overflow-wrap:anywhere}.size{color:#57606a}
.share{color:#7a4f00}.queued{color:#0d47a1}.none{color:#57606a;list-style:none;margin-left:-1.1rem}
.unlock{font-size:.85rem;color:#57606a;margin:.4rem 0}.unlock[hidden]{display:none}.note{color:#8e0000}
</style></head><body data-source="server" data-renders="0">
"""

_JS = r"""
(function () {
  // No card rules here: the gateway renders the summary and every card, this only swaps its HTML in.
  function swap(html) {
    var fresh = document.createElement("template");
    fresh.innerHTML = html;
    var summary = fresh.content.getElementById("summary"), cards = fresh.content.getElementById("cards");
    if (!summary || !cards) throw new Error("the answer holds no status cards");
    document.getElementById("summary").replaceWith(summary);
    document.getElementById("cards").replaceWith(cards);
    document.getElementById("unlock").hidden = cards.dataset.report === "full";
    var conn = document.getElementById("conn");
    conn.className = "conn";
    conn.textContent = "live: updated " + new Date().toLocaleTimeString() + ", every 2 s";
    document.body.classList.remove("stale");
    document.body.dataset.source = "live";
    document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
  }
  function lost(why) {
    var conn = document.getElementById("conn");
    conn.className = "conn lost";
    conn.textContent = "gateway unreachable (" + why + "); showing the last known state, retrying every 2 s";
    document.body.classList.add("stale");
    document.body.dataset.source = "unreachable";
  }
  // The operator's token lives in this tab's sessionStorage only: never in the page's URL or markup.
  function token() { try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; } }
  function remember(value) {
    try { if (value) { sessionStorage.setItem(TOKEN_KEY, value); } else { sessionStorage.removeItem(TOKEN_KEY); } }
    catch (e) { /* storage off: the token lasts until the page reloads */ }
    held = value;
  }
  var TOKEN_KEY = "beacon-gateway-token", held = token();
  function note(text) { document.getElementById("unlock-note").textContent = text; }
  function tick() {
    var headers = {"Accept": "text/html"};
    if (held) headers.Authorization = "Bearer " + held;
    return fetch("status/cards", {cache: "no-store", headers: headers})  // relative: works behind a path prefix
      .then(function (resp) {
        if (resp.status === 401) {  // a wrong or stale token: forget it, show the public form next time
          remember("");
          note("that token was refused");
          return;
        }
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        return resp.text().then(swap);
      })
      .catch(function (err) { lost(err && err.message ? err.message : "no answer"); });
  }
  function unlock() {
    var input = document.getElementById("token");
    remember(input.value.trim());
    input.value = "";
    note("");
    tick();
  }
  document.getElementById("show").addEventListener("click", unlock);
  document.getElementById("token").addEventListener("keydown", function (e) { if (e.key === "Enter") unlock(); });
  function loop() { tick().then(function () { setTimeout(loop, 2000); }); }
  loop();
})();
"""

_TAIL = "<script>" + _JS + "</script></body></html>\n"
