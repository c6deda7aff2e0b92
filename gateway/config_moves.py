"""Config keys that moved, accepted under their old names for one release.

A moved key (`[failover] degraded_rank` -> `[degraded] rank`) is applied to its new home; setting
both is an error naming both. A key that also bounded something else which now has a key of its
own (`[failover] first_byte_timeout_s` also bounded warm-ups, now `[warmer] timeout_s`) still
gives that key its value while the new key is unset, so no config behaves differently before the
next release. Each case yields one notice line. Works on the parsed TOML (plain dicts) before
validation, so the schema stays strict; pure: check-config prints the notices, reload.py logs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]  # (section, key)


@dataclass(frozen=True, slots=True)
class Moved:
    old: Key
    new: Key


@dataclass(frozen=True, slots=True)
class Parted:
    """`source` also bounded `what`, which `target` now bounds; until the next release an unset
    `target` takes what `source` gave it (`value`), when that differs from the target's default."""

    source: Key
    target: Key
    what: str
    value: Callable[[float], float] = float


MOVED = (
    Moved(("failover", "degraded_rank"), ("degraded", "rank")),
    Moved(("failover", "slow_decode_factor"), ("degraded", "slow_decode_factor")),
    Moved(("failover", "degraded_s"), ("degraded", "slow_verdict_s")),
    Moved(("failover", "cpu_max_expected_s"), ("cpu", "max_expected_s")),
    Moved(("failover", "cpu_tokens_per_s"), ("cpu", "tokens_per_s")),
    Moved(("failover", "default_num_predict"), ("routing", "default_num_predict")),
)

PARTED = (
    Parted(("failover", "first_byte_timeout_s"), ("warmer", "timeout_s"), "warm-ups (and admin warm and unload)"),
    Parted(("failover", "connect_timeout_s"), ("manage", "connect_timeout_s"),
           "model management (pull, push, create, copy, delete, blobs)"),
    # fan-out read at the longer of stream_idle_timeout_s and 300 s
    Parted(("failover", "stream_idle_timeout_s"), ("manage", "progress_idle_timeout_s"),
           "pull, push and create progress and blob uploads", lambda v: max(float(v), 300.0)),
)


@dataclass
class Adopted:
    """The data to validate, with what the old names changed."""

    data: dict[str, Any]
    notices: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    renamed: dict[Key, Key] = field(default_factory=dict)  # new key -> the old one its value came from


def adopt_old_keys(data: dict[str, Any], default_of: Callable[[Key], Any]) -> Adopted:
    """`data` with every moved key in its new home and every parted key's old value carried over."""
    out = Adopted({k: dict(v) if isinstance(v, dict) else v for k, v in data.items()})
    for moved in MOVED:
        _move(out, moved)
    for parted in PARTED:
        _part(out, parted, default_of(parted.target))
    return out


def _move(out: Adopted, moved: Moved) -> None:
    (old_section, old_key), (new_section, new_key) = moved.old, moved.new
    source, target = out.data.get(old_section), out.data.get(new_section, {})
    if not isinstance(source, dict) or old_key not in source or not isinstance(target, dict):
        return
    value = source.pop(old_key)
    out.data[new_section] = target
    if new_key in target:
        out.problems.append(f"{old_section}.{old_key}: has moved to {new_section}.{new_key}, which is set too: "
                            f"keep only {new_section}.{new_key}")
        return
    target[new_key] = value
    out.renamed[moved.new] = moved.old
    out.notices.append(f"[{old_section}] {old_key} has moved to [{new_section}] {new_key}; "
                       "the old name is accepted until the next release")


def _part(out: Adopted, parted: Parted, default: Any) -> None:
    (source_section, source_key), (target_section, target_key) = parted.source, parted.target
    source, target = out.data.get(source_section), out.data.get(target_section, {})
    if not isinstance(source, dict) or not isinstance(target, dict) or target_key in target:
        return
    given = source.get(source_key)
    if isinstance(given, bool) or not isinstance(given, (int, float)) or given <= 0:
        return  # unset, or wrong: the schema reports it at its own key
    value = parted.value(given)
    if value == default:
        return
    out.data[target_section] = {**target, target_key: value}
    out.notices.append(f"[{source_section}] {source_key} = {given:g} also bounds {parted.what} until the next "
                       f"release only; their own key is [{target_section}] {target_key} (default {default:g}): "
                       f"set it to {value:g} to keep this")
