"""On-call endpoints: /health (JSON, 200 ready / 503 not), /health/live, /metrics.

Everything here is read from the snapshot and live in-flight counts; nothing here
changes routing. /health turns 503 when no worker can serve or the control loop is stuck.
"""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import vram
from gateway.context import GATEWAY, Gateway
from gateway.state import Snapshot, WorkerView


async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


def health_report(gw: Gateway) -> tuple[int, dict]:
    snap = gw.holder.current
    age = gw.clock() - snap.updated_at
    stale_after = 3 * snap.config.health.interval_s + snap.config.health.timeout_s
    serving = [w.name for w in snap.workers.values() if w.serving]
    problems = []
    if not serving:
        states = ", ".join(f"{w.name} {w.live_state(gw.inflight.get(w.name), None)}" for w in snap.workers.values())
        problems.append(f"no worker is healthy ({states})")
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
        # Removed by a reload, still finishing requests: no new ones go there.
        "removed_draining": [{"name": name, "inflight": count} for name, count in gw.reloader.draining().items()],
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
        "state": w.live_state(gw.inflight.get(w.name), slow), "up": w.up, "drained": w.drained,
        "degraded": w.degraded or slow, "error": w.last_error, "version": w.version,
        "ejected_for_s": round(w.ejected_until - now, 1) if w.ejected_until else None,
        "ejected_until": _iso(time.time() + w.ejected_until - now) if w.ejected_until else None,
        "failures_in_a_row": w.consecutive_failures, "slots": w.slots_total,
        "inflight": gw.inflight.get(w.name), "max_inflight": w.config.max_inflight,
        "tokens_per_s": _round(gw.inflight.recent_rate(w.name)),
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
        "last_probe_at": None if w.probed_at is None else _iso(time.time() - (now - w.probed_at)),
    }


async def metrics(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    resp = web.Response(body=generate_latest(gw.metrics.registry))
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def _iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


def _round(rate: float | None) -> float | None:
    return None if rate is None else round(rate, 1)
