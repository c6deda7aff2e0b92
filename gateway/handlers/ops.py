"""On-call endpoints: /health (JSON, 200 ready / 503 not), /health/live, /metrics, /status.

Everything here is read from the snapshot and live in-flight counts; nothing here
changes routing. /health turns 503 when no worker can serve or the control loop is stuck.
"""

from __future__ import annotations

import html
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import vram
from gateway.context import GATEWAY, Gateway
from gateway.state import Snapshot, WorkerView

GIB = 1024**3


async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


def health_report(gw: Gateway) -> tuple[int, dict]:
    snap = gw.holder.current
    age = gw.clock() - snap.updated_at
    stale_after = 3 * snap.config.health.interval_s + snap.config.health.timeout_s
    serving = [w.name for w in snap.workers.values() if w.serving]
    problems = []
    if not serving:
        problems.append("no worker is healthy")
    if age > stale_after:
        problems.append(f"control loop is stuck: snapshot is {age:.1f}s old (limit {stale_after:.1f}s)")
    body = {
        "status": "ok" if not problems else "unavailable",
        "problems": problems,
        "snapshot": {"version": snap.version, "age_s": round(age, 3)},
        "config": {"version": snap.config.version, "loaded_at": _iso(snap.config_loaded_at)},
        "nvml": snap.gpu_status,
        "queues": dict(gw.admission.depths()),
        "workers": [_worker(w, gw, snap) for w in snap.workers.values()],
    }
    return (200 if not problems else 503), body


async def health(request: web.Request) -> web.Response:
    status, body = health_report(request.app[GATEWAY])
    return web.json_response(body, status=status)


def _worker(w: WorkerView, gw: Gateway, snap: Snapshot) -> dict:
    slow = gw.inflight.slow_reason(w.name)
    now = gw.clock()
    return {
        "name": w.name, "kind": w.config.kind, "tier": w.tier, "url": w.url,
        "state": "degraded" if w.state == "healthy" and slow else w.state,
        "degraded": w.degraded or slow, "error": w.last_error, "version": w.version,
        "ejected_for_s": round(w.ejected_until - now, 1) if w.ejected_until else None,
        "failures_in_a_row": w.consecutive_failures, "slots": w.slots_total,
        "inflight": gw.inflight.get(w.name), "max_inflight": w.config.max_inflight,
        "models": len(w.models),
        "resident": [
            {"model": name, "size": r.size, "size_vram": r.size_vram,
             "gpu_share": round(r.size_vram / r.size, 3) if r.size else None, "expires_at": r.expires_at}
            for name, r in w.resident.items()
        ],
        "vram_total_bytes": vram.capacity(w),
        "vram_used_bytes": vram.used(w),
        "vram_source": "nvml" if w.gpu is not None and w.gpu.ok else ("config" if w.config.vram_gib else None),
        "gpu": None if w.gpu is None else {"index": w.gpu.index, "ok": w.gpu.ok, "name": w.gpu.name,
                                           "utilization_pct": w.gpu.utilization_pct, "error": w.gpu.error},
        "last_probe_age_s": None if w.probed_at is None else round(gw.clock() - w.probed_at, 3),
    }


async def metrics(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    resp = web.Response(body=generate_latest(gw.metrics.registry))
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


async def status_page(request: web.Request) -> web.Response:
    status, body = health_report(request.app[GATEWAY])
    cards = "".join(_card(w) for w in body["workers"])
    page = _PAGE.format(status=html.escape(body["status"]), problems=html.escape("; ".join(body["problems"])),
                        version=html.escape(body["config"]["version"]), cards=cards)
    return web.Response(text=page, content_type="text/html", status=200)


def _card(w: dict) -> str:
    total = w["vram_total_bytes"]
    used = w["vram_used_bytes"]
    share = f"{100 * used / total:.0f}%" if total else "unknown"
    models = "".join(f"<li>{html.escape(r['model'])} ({r['size_vram'] / GIB:.1f} GiB VRAM)</li>" for r in w["resident"])
    return (f'<div class="card {html.escape(w["state"])}"><h2>{html.escape(w["name"])}</h2>'
            f'<p>{html.escape(w["tier"])} &middot; {html.escape(w["state"])} &middot; in flight {w["inflight"]}</p>'
            f'<p>VRAM used {used / GIB:.1f} GiB ({share})</p><ul>{models or "<li>nothing loaded</li>"}</ul>'
            f'<p class="err">{html.escape(w["error"] or "")}</p></div>')


def _iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>beacon-gateway</title>
<meta http-equiv="refresh" content="2"><style>
body{{font-family:system-ui,sans-serif;margin:2rem;background:#f6f7f9}}
.cards{{display:flex;flex-wrap:wrap;gap:1rem}}
.card{{background:#fff;border-radius:8px;padding:1rem;width:18rem;border-left:6px solid #999}}
.card.healthy{{border-color:#2e9d4f}}.card.down{{border-color:#c62828}}.err{{color:#c62828}}
</style></head><body><h1>beacon-gateway: {status}</h1><p>{problems}</p><p>config {version}</p>
<div class="cards">{cards}</div></body></html>"""
