"""On-call endpoints: /health (JSON, 200 ready / 503 not), /health/live, /metrics.

Everything here is read from the snapshot and live in-flight counts; nothing here
changes routing. /health turns 503 when no worker can serve or the control loop is stuck.
The full report names workers, their addresses, errors and every model, which a client key's
listings hide: once keys or tokens are configured it needs an operator's bearer token, and
anyone else reads only `{"status": ...}` with the same 200 / 503 (what readiness probes need).
"""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import vram
from gateway.access import token_matches
from gateway.context import GATEWAY, Gateway
from gateway.errors import Unauthorized
from gateway.siblings import SIBLINGS
from gateway.state import Snapshot, WorkerView


async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


def readiness_problems(gw: Gateway, snap: Snapshot) -> list[str]:
    """Why the gateway is not ready; empty when it is."""
    age = gw.clock() - snap.updated_at
    stale_after = 3 * snap.config.health.interval_s + snap.config.health.timeout_s
    found = []
    if not any(w.serving for w in snap.workers.values()):
        states = ", ".join(f"{w.name} {w.live_state(gw.inflight.get(w.name), None)}" for w in snap.workers.values())
        found.append(f"no worker is healthy ({states})")
    if age > stale_after:
        found.append(f"control loop is stuck: snapshot is {age:.1f}s old (limit {stale_after:.1f}s)")
    return found


def public_report(gw: Gateway) -> tuple[int, dict]:
    """What anyone may read: ready or not, nothing about the fleet (readiness probes need no more)."""
    ready = not readiness_problems(gw, gw.holder.current)
    return (200 if ready else 503), {"status": "ok" if ready else "unavailable"}


def health_report(gw: Gateway) -> tuple[int, dict]:
    snap = gw.holder.current
    age = gw.clock() - snap.updated_at
    found = readiness_problems(gw, snap)
    cluster = gw.cluster
    body = {
        "status": "ok" if not found else "unavailable",
        # Redis out of reach is a problem on-call should see, not a reason to take this replica out
        # of service: it goes on serving on its own state.
        "problems": found + ([f"shared state: {cluster.problem}; deciding on this replica's own state"]
                             if cluster.mode == "local" else []),
        "cluster": {"mode": cluster.mode, "replicas": cluster.view.replicas, "replica": cluster.replica_id,
                    "problem": cluster.problem} if cluster.enabled else {"mode": "alone"},
        "snapshot": {"version": snap.version, "age_s": round(age, 3)},
        "config": {"version": snap.config.version, "loaded_at": _iso(snap.config_loaded_at)},
        "nvml": snap.gpu_status,
        "queues": dict(gw.admission.depths()),
        "workers": [_worker(w, gw, snap) for w in snap.workers.values()],
        # Removed by a reload, still finishing requests: no new ones go there.
        "removed_draining": [{"name": name, "inflight": count} for name, count in gw.reloader.draining().items()],
    }
    return (200 if not found else 503), body


async def health(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    full = full_report_allowed(request)
    status, body = health_report(gw) if full else public_report(gw)
    siblings = request.app.get(SIBLINGS)
    if full and siblings is not None:  # `serve --processes N`: this report is the one process's that answered
        body["process"] = siblings.describe(gw)
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


def full_report_allowed(request: web.Request) -> bool:
    """May this request read the full report? An open install (no [[clients]], no token set, bound to
    127.0.0.1 by default) shows it to everyone, as before. Otherwise it takes the bearer of
    BEACON_METRICS_TOKEN or BEACON_ADMIN_TOKEN: no bearer reads the public form; any other bearer
    (a wrong token, a client key, bytes that are not UTF-8) is a 401, so a mistyped token is not
    mistaken for a quiet fleet. Client keys, even manage ones, do not open it: it shows models and
    workers that a key's own listings hide."""
    gw = request.app[GATEWAY]
    tokens = [t.get_secret_value() for t in (gw.settings.metrics_token, gw.settings.admin_token)
              if t is not None and t.get_secret_value()]
    if not tokens and not gw.holder.current.config.clients:
        return True
    scheme = request.headers.get("Authorization", "").partition(" ")[0]
    if scheme.lower() != "bearer":  # a probe, a stranger, or Basic auth meant for a proxy in front
        return False
    if any(token_matches(request, token) for token in tokens):
        return True
    why = "wrong bearer token" if tokens else "neither BEACON_METRICS_TOKEN nor BEACON_ADMIN_TOKEN is set"
    raise Unauthorized(f"the full report takes the metrics or admin token: {why}",
                       headers={"WWW-Authenticate": 'Bearer realm="beacon-gateway"'})


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
    siblings = request.app.get(SIBLINGS)  # `serve --processes N`: a scrape lands on one; it answers for all
    resp = web.Response(body=await siblings.merged_metrics(gw) if siblings else generate_latest(gw.metrics.registry))
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def _iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


def _round(rate: float | None) -> float | None:
    return None if rate is None else round(rate, 1)
