"""Operators own keep-alive: what a client's `keep_alive` becomes before a worker sees it.

A request's `keep_alive` decides how long the worker keeps the model loaded, for everybody who
uses that copy: one client sending 0 unloads it from under the others, one sending -1 pins it
forever. Per model, `[models."X"]` may set it (`request_keep_alive`: what every request sends,
whatever the client said), raise it (`min_keep_alive`: a lower value, 0 included, is raised, so
clients cannot unload the model) or cap it (`max_keep_alive`: a higher one, -1 included, is
capped). The warmer sends its own `keep_alive` regardless. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import ModelConfig, parse_duration_s
from gateway.names import canonical
from gateway.state import Snapshot

KeepAlive = str | int | float | None


@dataclass(frozen=True, slots=True)
class Governed:
    """The keep_alive a worker gets, what the client sent, and the rule that changed it (or None)."""

    value: KeepAlive
    sent: KeepAlive
    rule: str | None = None


def _seconds(value: KeepAlive) -> float | None:
    """A keep_alive in seconds (forever is +inf); None for one that is absent or not a duration
    (the worker answers that itself, as Ollama would)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = parse_duration_s(value)
    except (ValueError, TypeError):
        return None
    return float("inf") if seconds < 0 else seconds


def govern(config: ModelConfig | None, sent: KeepAlive) -> Governed:
    """What keep_alive to send for a request of a model with `config`, the client having sent `sent`."""
    if config is None:
        return Governed(sent, sent)
    if config.request_keep_alive is not None:
        if sent == config.request_keep_alive:
            return Governed(sent, sent)
        return Governed(config.request_keep_alive, sent, "request_keep_alive")
    seconds = _seconds(sent)
    if seconds is None:  # absent: the worker's own default; not a duration: the worker refuses it
        return Governed(sent, sent)
    low, high = _seconds(config.min_keep_alive), _seconds(config.max_keep_alive)
    if low is not None and seconds < low:
        return Governed(config.min_keep_alive, sent, "min_keep_alive")
    if high is not None and seconds > high:
        return Governed(config.max_keep_alive, sent, "max_keep_alive")
    return Governed(sent, sent)


def model_settings(snap: Snapshot, model: str) -> ModelConfig | None:
    """The `[models."X"]` entry of a canonical model name (mapped once per snapshot)."""
    by_name = snap.derived("config.models.canonical",
                           lambda s: {canonical(name): cfg for name, cfg in s.config.models.items()})
    return by_name.get(model)


def governed_body(snap: Snapshot, model: str, data: dict) -> Governed | None:
    """For an Ollama request body of `model`: the keep_alive rule that changes it (the body is
    changed in place), or None when the client's keep_alive goes as sent."""
    governed = govern(model_settings(snap, model), data.get("keep_alive"))
    if governed.rule is None:
        return None
    data["keep_alive"] = governed.value
    return governed
