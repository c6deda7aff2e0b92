"""Starts and stops the control loops; `every()` runs one step per interval, isolating errors.

A step that raises is logged and the loop goes on, so one bad worker or one bad reading
never stops health checking. Tests call a loop's `step()` directly instead of sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from gateway.state import SnapshotHolder

log = structlog.get_logger("gateway.control")


async def every(interval_s: Callable[[], float], step: Callable[[], Awaitable[object]], name: str) -> None:
    """What a step returns is its caller's when called directly (a test, the warmer's plan); the loop drops it."""
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("control.step_failed", loop=name)
        await asyncio.sleep(interval_s())


class Loops:
    """The running control-loop tasks, started and cancelled together."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task] = []

    def start(self, interval_s: Callable[[], float], step: Callable[[], Awaitable[object]], name: str) -> None:
        self._tasks.append(asyncio.create_task(every(interval_s, step, name), name=f"loop:{name}"))

    def watch(self, holder: SnapshotHolder, on_change: Callable[[], None]) -> None:
        """Call `on_change` after every snapshot change."""

        async def follow() -> None:
            while True:
                await holder.changed()
                on_change()

        self._tasks.append(asyncio.create_task(follow(), name="loop:watch"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
