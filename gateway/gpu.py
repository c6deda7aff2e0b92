"""GPU readings through NVML (pynvml), called off the event loop by the control loop, and
GpuWatch, the control-loop step that lands them in the snapshot (state.with_gpu).

NVML missing or failing (no GPU, no driver, a container without the device) is normal:
the reader says so once, quietly, and the gateway falls back to config `vram_gib` and
`/api/ps`. A device that can't be read is reported per index, never raised.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from gateway import state
from gateway.state import SnapshotHolder

log = structlog.get_logger("gateway.gpu")


@dataclass(frozen=True, slots=True)
class GpuReading:
    index: int
    ok: bool
    total_bytes: int = 0
    used_bytes: int = 0
    name: str = ""
    utilization_pct: int | None = None
    error: str | None = None
    temperature_c: int | None = None
    power_watts: float | None = None


@dataclass(frozen=True, slots=True)
class GpuStatus:
    available: bool
    reason: str = ""
    readings: dict[int, GpuReading] = field(default_factory=dict)


class GpuReader(Protocol):
    def read(self, indices: Sequence[int]) -> GpuStatus: ...


class NvmlReader:
    """Reads memory and utilisation of the given GPU indices. Blocking: run it in a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._init_error: str | None = None
        self._ready = False

    def read(self, indices: Sequence[int]) -> GpuStatus:
        with self._lock:
            if not self._start():
                return GpuStatus(False, self._init_error or "NVML unavailable")
            return GpuStatus(True, "", {i: self._read_one(i) for i in indices})

    def _start(self) -> bool:
        if self._ready:
            return True
        if self._init_error is not None:
            return False
        try:
            pynvml = _pynvml()
            pynvml.nvmlInit()
            self._ready = True
        except Exception as exc:  # no library, no driver, no device: all mean "no NVML here"
            self._init_error = f"NVML unavailable: {type(exc).__name__}: {exc}"
        return self._ready

    @staticmethod
    def _read_one(index: int) -> GpuReading:
        pynvml = _pynvml()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            util = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
        except Exception as exc:  # a lost or failing device reads as an error, not a crash
            return GpuReading(index, False, error=f"{type(exc).__name__}: {exc}")
        return GpuReading(index, True, int(memory.total), int(memory.used),
                          name.decode() if isinstance(name, bytes) else str(name), int(util),
                          temperature_c=_optional(lambda: int(pynvml.nvmlDeviceGetTemperature(handle, 0))),
                          power_watts=_optional(lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0))


def _optional(read):
    """Temperature and power are not readable on every device (MIG slices, some vGPUs)."""
    try:
        return read()
    except Exception:
        return None


def _pynvml():
    # The `pynvml` distribution warns that `nvidia-ml-py` provides the same module; either works.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import pynvml
    return pynvml


class GpuWatch:
    """Reads NVML for the GPUs named by workers' gpu_index, off the event loop."""

    def __init__(self, holder: SnapshotHolder, reader: GpuReader) -> None:
        self._holder, self._reader = holder, reader
        self._last_reason: str | None = None

    async def step(self) -> None:
        snap = self._holder.current
        indices = sorted({w.config.gpu_index for w in snap.workers.values() if w.config.gpu_index is not None})
        if not indices:
            return
        status = await asyncio.to_thread(self._reader.read, indices)
        self._holder.update(lambda s: state.with_gpu(s, status))
        if status.reason != self._last_reason:  # say it once, quietly: no NVML is normal
            self._last_reason = status.reason
            if not status.available:
                log.info("gpu.nvml_unavailable", reason=status.reason)
            for reading in status.readings.values():
                if not reading.ok:
                    log.warning("gpu.read_failed", gpu_index=reading.index, error=reading.error)
