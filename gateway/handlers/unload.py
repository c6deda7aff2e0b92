"""Ollama's unload request, served across the fleet. A generate with no prompt or a chat with no
messages whose keep_alive is 0 (what `ollama stop` and Open WebUI's unload send) unloads the model
from every worker that holds it, and the warmer leaves the model alone until a request asks for it
again (inflight.Demand keeps the unload). The operator's keep-alive rules (gateway/keep_alive.py)
come first: where `min_keep_alive` or `request_keep_alive` lifts a client's 0, nothing unloads.

`unload_of` is Ollama's own rule (server/routes.go GenerateHandler and ChatHandler, keep_alive as
api.Duration decodes it): pure. `everywhere` sends the unload, in parallel and each within
`[warmer] timeout_s`, to every healthy worker whose last probe listed the model resident or that
was sent a request for it since (by any replica), the other holders' pictures first re-probed
when older than `[server] ps_fresh_s`; and answers what Ollama answers, or an error naming the
workers it failed on. It routes and queues nothing: an unload takes no slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from backends import for_kind
from backends.answers import now_iso
from backends.translate import Unsupported
from backends.worker_said import describe
from gateway.context import Gateway
from gateway.errors import GatewayError, ModelNotFound, NoCapacity, UpstreamFailed, UpstreamTimeout
from gateway.outcome import Asked, Ended, Relayed, Trail
from gateway.plan import Load
from gateway.state import Snapshot, WorkerView

log = structlog.get_logger("gateway.unload")

ONLY = "only"  # the request asks nothing but the unload: Ollama answers it without running the model
AFTER = "after"  # a request that runs, with keep_alive 0: the model unloads once it has answered
_KEEPS_ALIVE = ("chat", "generate", "embed", "embeddings")  # the endpoints whose body has keep_alive


def unload_of(endpoint: str, data: Mapping[str, Any]) -> str:
    """ONLY, AFTER, or "" for a request whose keep_alive is not 0. As Ollama: a generate whose prompt
    is absent, null or "" and a chat whose messages are absent, null or [] are unloads, whatever else
    they carry (images, a system prompt, options); with a prompt or messages they run, then unload."""
    if endpoint not in _KEEPS_ALIVE or not zero_keep_alive(data.get("keep_alive")):
        return ""
    if endpoint == "generate" and data.get("prompt") in (None, ""):
        return ONLY
    if endpoint == "chat" and data.get("messages") in (None, []):
        return ONLY
    return AFTER


def zero_keep_alive(value: object) -> bool:
    """Whether Ollama's api.Duration reads `keep_alive` as 0: a JSON number of seconds that is 0 once
    turned into whole nanoseconds (0, 0.0, -0.0, 1e-10; any number below 0 means forever), or a Go
    duration that parses to 0 ("0", "0s", "-0s", "0h0m", "0.5ns"). Absent, null, any other type and
    a string Go cannot parse are not (Ollama answers the last two 400, which the worker will say)."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        return 0 <= value * 1e9 < 1  # time.Duration(t * 1e9) truncates toward zero
    return isinstance(value, str) and go_duration_ns(value) == 0


_GO_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
             "m": 60_000_000_000, "h": 3_600_000_000_000}
_MAX = 1 << 63
_MAX_TEXT = 100


def go_duration_ns(text: str) -> int | None:
    """Go's time.ParseDuration in nanoseconds, or None where it returns an error: one or more
    numbers (digits, a fraction, or both), each with a unit, after an optional sign; "0" alone
    needs none. Fractions count as Go counts them: float64, truncated. A string over
    _MAX_TEXT characters is not read (None): no duration a client means is that long."""
    if len(text) > _MAX_TEXT:
        return None
    negative = text[:1] == "-"
    s = text[1:] if text[:1] in ("-", "+") else text
    if s == "0":
        return 0
    if not s:
        return None
    total = 0
    while s:
        whole, s = _digits(s)
        fraction = ""
        if s[:1] == ".":
            fraction, s = _digits(s[1:])
        if not whole and not fraction:
            return None
        unit_end = next((i for i, c in enumerate(s) if c == "." or "0" <= c <= "9"), len(s))
        unit = _GO_UNITS.get(s[:unit_end])
        s = s[unit_end:]
        if unit is None:
            return None
        v = int(whole or "0")
        f, scale = _fraction(fraction)
        if v > _MAX // unit:
            return None
        v = v * unit + (int(f * (unit / scale)) if f else 0)
        total += v
        if v > _MAX or total > _MAX:
            return None
    if negative:
        return -total
    return None if total > _MAX - 1 else total


def _digits(s: str) -> tuple[str, str]:
    end = next((i for i, c in enumerate(s) if not "0" <= c <= "9"), len(s))
    return s[:end], s[end:]


def _fraction(digits: str) -> tuple[float, float]:
    """Go's leadingFraction: the digits as an integer and 10 to their count, ignoring the digits
    that would overflow int64."""
    x, scale = 0, 1.0
    for c in digits:
        if x > (_MAX - 1) // 10 or (y := x * 10 + int(c)) > _MAX:
            break
        x, scale = y, scale * 10
    return float(x), scale


@dataclass(frozen=True, slots=True)
class _Failed:
    worker: str
    detail: str
    timed_out: bool


async def everywhere(gw: Gateway, snap: Snapshot, asked: Asked, name: str, trail: Trail) -> Relayed:
    """Unload `asked.model` (which the client calls `name`) wherever it is loaded, and answer as
    Ollama does. The unload is recorded first: a warm-up planned from now on leaves the model alone.
    Writes the trail (the workers it was sent to) in the proxy's place."""
    model = asked.model
    if not snap.holders(model):
        if snap.placement.ever_up:
            raise ModelNotFound(name)
        raise NoCapacity("no worker has answered a probe yet", snap.config.server.retry_after_s)
    gw.inflight.unloaded(model, gw.clock())
    targets = holding(snap, gw.load, model)
    unseen = _unseen(snap, model, targets, gw.clock())
    if unseen:  # a copy loaded since (another replica's warm-up, a client of the worker's own) is found
        await gw.prober.refresh(unseen)
        targets = holding(gw.holder.current, gw.load, model)
    trail.worker, trail.reason = ",".join(w.name for w in targets), "unload"
    results = await asyncio.gather(*(_unload_one(gw, snap, w, model) for w in targets))
    if targets:  # a ps or a plan right after sees the model gone, not the picture from before
        await gw.prober.refresh(w.name for w in targets)
    failed = [r for r in results if isinstance(r, _Failed)]
    kept = [w.name for w, r in zip(targets, results, strict=True) if r == "kept"]
    _log(snap, model, [w.name for w, r in zip(targets, results, strict=True) if r is None], failed, kept)
    if failed:
        raise _error(failed, len(targets))
    return Relayed(web.json_response(answer(name, asked.endpoint)), 200, None, Ended.OK)


def holding(snap: Snapshot, load: Load, model: str) -> list[WorkerView]:
    """The healthy workers that hold `model` in memory as far as the gateway knows: resident at their
    last probe, serving a request for it now, or sent one since that probe (by any replica). A worker
    that is down is skipped: nothing reaches it, and its picture is from before it went."""
    resident = snap.listing.resident.get(model, {})
    found = []
    for name in snap.holders(model):  # config order
        w = snap.workers[name]
        if w.up and (name in resident or load.model_inflight(name, model)
                     or load.last_used(name, model) > (w.probed_at or 0.0)):
            found.append(w)
    return found


def _unseen(snap: Snapshot, model: str, targets: list[WorkerView], now: float) -> list[str]:
    """The other healthy holders whose picture is older than `[server] ps_fresh_s`: the age ps
    trusts, and so no worker is probed more than once per ps_fresh_s by unloads in a loop."""
    taken, fresh_s = {w.name for w in targets}, snap.config.server.ps_fresh_s
    return [n for n in snap.holders(model) if n not in taken and (w := snap.workers[n]).up
            and (w.probed_at is None or now - w.probed_at >= fresh_s)]


async def _unload_one(gw: Gateway, snap: Snapshot, worker: WorkerView, model: str) -> _Failed | str | None:
    """None once the worker unloaded it; "kept" where the worker cannot unload (an OpenAI-compatible
    server or a single-model llama-server holds its models itself: not a failure of the worker)."""
    timeout_s = snap.config.warmer.timeout_s
    backend = for_kind(worker.config.kind)
    try:
        async with asyncio.timeout(timeout_s):  # the backend retries a refused connection: within this bound
            await backend.unload(gw.session, worker.url, worker.upstream_id(model), timeout_s,
                                 worker.config.auth_headers(), snap.config.health.max_probe_bytes)
    except Unsupported:
        return "kept"
    except TimeoutError:
        return _Failed(worker.name, f"no answer within {timeout_s:g}s ([warmer] timeout_s)", True)
    except Exception as exc:  # the worker's failure, by its name and never its address
        return _Failed(worker.name, describe(exc), False)
    return None


def answer(name: str, endpoint: str) -> dict[str, Any]:
    """Ollama's answer to an unload, field for field (api.GenerateResponse / api.ChatResponse)."""
    body: dict[str, Any] = {"model": name, "created_at": now_iso()}
    body |= {"message": {"role": "assistant", "content": ""}} if endpoint == "chat" else {"response": ""}
    return body | {"done": True, "done_reason": "unload"}


def _error(failed: list[_Failed], total: int) -> GatewayError:
    """504 when every failure was a worker that did not answer in time, else 502."""
    message = f"unload failed on {len(failed)} of {total} workers: " + "; ".join(
        f"{f.worker}: {f.detail}" for f in failed)
    return UpstreamTimeout(message) if all(f.timed_out for f in failed) else UpstreamFailed(message)


def _log(snap: Snapshot, model: str, unloaded: list[str], failed: list[_Failed], kept: list[str]) -> None:
    """One line per unload; a warning when it overrides the operator's pin, which holds off until
    the model's next request (see warmer.py)."""
    cfg = snap.config.model(model)
    pinned = list(cfg.pin) if cfg and cfg.pin else None
    (log.warning if pinned else log.info)(
        "model.unloaded", model=model, workers=unloaded, failed=[f.worker for f in failed] or None,
        kept=kept or None, pin_held_off=pinned, keep_warm_held_off=(cfg.keep_warm or None) if cfg else None,
        source="keep_alive 0")
