"""The admin commands of `beacon-gateway`: drain, undrain, reload, warm, unload, explain.

Each is one POST to a running gateway's /admin API with the bearer token from --token or
BEACON_ADMIN_TOKEN; prints the answer readably. Exit 0 on success, 1 when the gateway
refused or failed (its message is printed), 2 when no token is at hand.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request


def call(url: str, path: str, token: str | None, body: dict | None = None) -> int:
    token = token or os.environ.get("BEACON_ADMIN_TOKEN")
    if not token:
        print("no admin token: pass --token or set BEACON_ADMIN_TOKEN", file=sys.stderr)
        return 2
    request = urllib.request.Request(f"{url.rstrip('/')}{path}", data=json.dumps(body or {}).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            answer, ok = json.load(resp), True
    except urllib.error.HTTPError as exc:
        try:
            answer = json.load(exc)
        except ValueError:
            answer = {"error": f"HTTP {exc.code}"}
        ok = False
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    print(render(path, answer))
    return 0 if ok else 1


def render(path: str, answer: dict) -> str:
    lines = []
    if "error" in answer:
        lines.append(f"error: {answer['error']}")
    if path.endswith("/reload"):
        lines.append(f"reload {answer.get('result', 'failed')}: config {answer.get('version')}")
        lines += [f"  {key}: {', '.join(answer[key])}" for key in ("added", "removed", "changed") if answer.get(key)]
        lines += [f"  {line}" for line in answer.get("errors", [])]
    elif path.endswith("/explain"):
        lines.append(f"{answer.get('model')}: {answer.get('verdict')} ({answer.get('note') or 'no note'})")
        for i, c in enumerate(answer.get("candidates", []), 1):
            evicts = f", evicts {', '.join(c['evicts'])}" if c.get("evicts") else ""
            lines.append(f"  {i}. {c['worker']}: {c['reason']}{evicts}")
    elif "error" not in answer:
        lines.append(", ".join(f"{k} {v}" for k, v in answer.items()))
    return "\n".join(lines)
