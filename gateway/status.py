"""`beacon-gateway status`: a table of a running gateway's workers, read from /health.

Read-only; exit 0 when the gateway reports ready, 1 when not or unreachable.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

GIB = 1024**3


def print_status(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=5) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:  # 503 still carries the report
        body = json.load(exc)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"cannot read {url}/health: {exc}", file=sys.stderr)
        return 1
    print(render(body))
    return 0 if body.get("status") == "ok" else 1


def render(body: dict) -> str:
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
