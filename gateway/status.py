"""`beacon-gateway status`: a table of a running gateway's workers, read from /health.

Read-only; exit 0 when the gateway reports ready, 1 when not or unreachable. Where the gateway
shows strangers only its public form, the table needs the metrics or admin token (--token, or
BEACON_METRICS_TOKEN / BEACON_ADMIN_TOKEN); without it the command says ready or not, and why
there is no table.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

GIB = 1024**3
_LOCKED = ("workers hidden: this gateway shows them with the metrics or admin token "
           "(--token, or set BEACON_METRICS_TOKEN or BEACON_ADMIN_TOKEN)")


def print_status(url: str, token: str | None = None) -> int:
    token = token or os.environ.get("BEACON_METRICS_TOKEN") or os.environ.get("BEACON_ADMIN_TOKEN")
    request = urllib.request.Request(f"{url.rstrip('/')}/health",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:  # 503 still carries the report; 401 and 403 say why not
        try:
            body = json.load(exc)
        except ValueError:
            body = {"error": f"HTTP {exc.code}"}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"cannot read {url}/health: {exc}", file=sys.stderr)
        return 1
    if not isinstance(body, dict) or "status" not in body:
        error = body.get("error") if isinstance(body, dict) else None
        print(f"{url}/health refused: {error or 'no status in the answer'}", file=sys.stderr)
        return 1
    print(render(body))
    return 0 if body.get("status") == "ok" else 1


def render(body: dict) -> str:
    if "workers" not in body:  # the public form
        return f"gateway {body.get('status')}\n{_LOCKED}"
    head = (f"gateway {body.get('status')}  config {body['config']['version']}  "
            f"snapshot age {body['snapshot']['age_s']}s")
    rows = [("WORKER", "TIER", "STATE", "INFLIGHT", "VRAM USED", "RESIDENT", "ERROR")]
    for w in body["workers"]:
        total = w.get("vram_total_bytes")
        used = f"{w['vram_used_bytes'] / GIB:.1f}" + (f"/{total / GIB:.0f} GiB" if total else " GiB")
        resident = ",".join(r["model"] for r in w["resident"]) or "-"
        rows.append((w["name"], w["tier"], w["state"], str(w["inflight"]), used, resident, w.get("error") or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    problems = [f"problem: {p}" for p in body.get("problems", [])]
    return "\n".join([head, *problems, "", *lines])
