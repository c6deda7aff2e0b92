"""The soak benchmark's bookkeeping (pure; tests/unit/test_soak_accounting.py): how each finished
request is classified as exactly one outcome, and the check that the outcomes add up to what was
sent. tests/perf/soak_bench.py makes the traffic and the records.
"""

from __future__ import annotations

import json

STREAMS = {"chat_stream": "ndjson", "generate_stream": "ndjson", "openai_stream": "sse", "disconnect": "ndjson"}
EXPECTED_REFUSAL = {"unknown_model": 404, "bad_json": 400}
OUTCOMES = ("completed", "refused", "cut", "disconnected", "lost")


def body_valid(kind: str, body: bytes) -> bool:
    """A whole (non-stream) 200 answer carries what its kind promises."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    if kind in ("chat", "generate"):
        return data.get("done") is True
    if kind == "embed":
        return bool(data.get("embeddings"))
    if kind == "openai":
        return bool(data.get("choices"))
    if kind in ("tags", "ps"):
        return isinstance(data.get("models"), list)
    return False


def is_json_error(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body), dict) and "error" in json.loads(body)
    except ValueError:
        return False


def classify(rec: dict, kills: list[tuple[str, float]]) -> tuple[str, str]:
    """One finished request -> (outcome, why). `kills` are (worker, monotonic time of the kill -9)."""
    kind, status = rec["kind"], rec.get("status")
    if rec.get("exc"):
        return "lost", f"client saw {rec['exc']}"
    if kind in EXPECTED_REFUSAL:
        if status == EXPECTED_REFUSAL[kind] and rec.get("json_error"):
            return "refused", f"{status} as expected"
        if not (status == 503 and rec.get("json_error")):
            return "lost", f"expected {EXPECTED_REFUSAL[kind]} with a JSON error, got {status}"
    if status is not None and (400 <= status < 500 or status == 503):
        return ("refused", f"{status}") if rec.get("json_error") else ("lost", f"{status} without a JSON error body")
    if status != 200:
        return "lost", f"status {status}"
    if kind == "disconnect" and rec.get("disconnected"):
        return "disconnected", "closed after one chunk"
    if kind not in STREAMS:
        return ("completed", "ok") if rec.get("valid") else ("lost", "200 with an unexpected body")
    if rec.get("done"):
        return "completed", "ok"
    if rec.get("error_line"):
        killed = any(w == rec.get("worker") and rec["started"] <= t <= rec["ended"] for w, t in kills)
        if killed and rec.get("first_byte") is not None:
            return "cut", f"its worker {rec.get('worker')} was killed mid-stream"
        return "lost", f"stream cut by {rec.get('worker')} with no kill of it in flight"
    return "lost", "stream ended without done and without an error"


def account(records: list[dict], sent: int, kills: list[tuple[str, float]]) -> dict:
    """Counts per outcome (overall and per kind), the lost ones in detail, and whether the outcomes add
    up to `sent`: a request that left no record at all is lost too."""
    counts = dict.fromkeys(OUTCOMES, 0)
    by_kind: dict[str, dict[str, int]] = {}
    lost = []
    for rec in records:
        outcome, why = classify(rec, kills)
        counts[outcome] += 1
        by_kind.setdefault(rec["kind"], dict.fromkeys(OUTCOMES, 0))[outcome] += 1
        if outcome == "lost":
            lost.append({k: rec.get(k) for k in ("i", "kind", "status", "worker", "exc", "last")} | {"why": why})
    missing = sent - len(records)
    if missing > 0:
        counts["lost"] += missing
        lost.append({"why": f"{missing} request(s) sent but never recorded"})
    return {"sent": sent, **counts, "balanced": sum(counts.values()) == sent and missing >= 0,
            "by_kind": by_kind, "lost_details": lost}


def note_line(rec: dict, line: bytes, sse: bool) -> None:
    """Remember how a stream ends: done (or [DONE]) vs an error line/event."""
    line = line.strip()
    if not line or (sse and not line.startswith(b"data:")):
        return
    payload = line[5:].strip() if sse else line
    rec["last"] = payload[:200].decode("utf-8", "replace")
    if sse and payload == b"[DONE]":
        rec["done"] = True
        return
    try:
        data = json.loads(payload)
    except ValueError:
        return
    if isinstance(data, dict) and "error" in data:
        rec["error_line"] = True
    elif isinstance(data, dict) and data.get("done") is True and not sse:
        rec["done"] = True
