"""Every Prometheus metric in one file: names, help strings, label sets.

Counters and histograms are written by the request path; gauges that describe the fleet
are read from the snapshot at scrape time by a collector, so nothing has to keep them in
sync. Model labels are bounded: a name not configured and not seen on a worker is `other`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway import vram
from gateway.names import InvalidModelName, canonical
from gateway.state import Snapshot

FAILOVER_REASONS = ("connect", "timeout", "status", "busy", "dropped", "malformed", "budget_exhausted")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple, object] = {}
        r = self.registry
        self.requests = Counter("beacon_requests", "Requests answered, by front endpoint, model, worker and outcome",
                                ["endpoint", "model", "worker", "outcome"], registry=r)
        self.duration = Histogram("beacon_request_duration_seconds", "Time from request to last byte, by model",
                                  ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.ttfb = Histogram("beacon_time_to_first_token_seconds",
                              "Time from request to the first byte of the answer, by model",
                              ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.loads = Counter("beacon_model_loads", "Requests the router sent where the model had to load, by reason",
                             ["worker", "model", "reason"], registry=r)
        self.tokens = Counter("beacon_tokens_generated", "Tokens generated (eval_count of final answers), by model",
                              ["model"], registry=r)
        self.failovers = Counter("beacon_failovers", "Attempts abandoned for the next candidate, by reason",
                                 ["reason"], registry=r)
        self.config_reloads = Counter("beacon_config_reloads", "Config reloads, by result (ok, unchanged, failed)",
                                      ["result"], registry=r)
        # Present at 0 from the start, so rate() and increase() alerts work from the first failure.
        for result in ("ok", "unchanged", "failed"):
            self.config_reloads.labels(result=result)
        for reason in FAILOVER_REASONS:
            self.failovers.labels(reason=reason)

    def child(self, metric, *labels: str):
        """metric.labels(*labels), remembered: labels() validates and locks on every call, and the
        request path calls it four times a request. Label values are bounded, so is this cache."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def watch_process(self) -> None:
        """process_resident_memory_bytes, process_open_fds, CPU seconds (Linux), and the event loop's
        task count: what a soak or a leak hunt reads."""
        ProcessCollector(registry=self.registry)
        self.registry.register(_LoopCollector())

    def watch(self, current: Callable[[], Snapshot], inflight: Callable[[], Mapping[str, int]],
              queues: Callable[[], Mapping[str, int]] = dict,
              slow: Callable[[str], str | None] = lambda worker: None) -> None:
        self.registry.register(_FleetCollector(current, inflight, queues, slow))


def model_label(snapshot: Snapshot, model: str) -> str:
    """The model itself if the operator configured it or a worker holds it; else `other`."""
    if not model:
        return "none"
    if any(w.has(model) for w in snapshot.workers.values()):
        return model
    try:
        configured = {canonical(name) for name in snapshot.config.models}
    except InvalidModelName:
        configured = set()
    return model if model in configured else "other"


STATES = ("healthy", "degraded", "ejected", "warming", "draining", "drained", "down", "unknown")


class _FleetCollector(Collector):
    def __init__(self, current: Callable[[], Snapshot], inflight: Callable[[], Mapping[str, int]],
                 queues: Callable[[], Mapping[str, int]], slow: Callable[[str], str | None]) -> None:
        self._current, self._inflight, self._queues, self._slow = current, inflight, queues, slow

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap, counts = self._current(), self._inflight()
        yield from self._workers(snap, counts)
        yield self._queue_depths(snap)
        yield GaugeMetricFamily("beacon_admission_max_queue", "[admission] max_queue: past it a model's requests get 503",
                                value=float(snap.config.admission.max_queue))
        yield from _gpus(snap)

    def _workers(self, snap: Snapshot, counts: Mapping[str, int]) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("beacon_worker_up", "1 when the worker passes health checks", labels=["worker", "tier"])
        states = GaugeMetricFamily("beacon_worker_state", "1 for the state the worker is in, 0 for the others",
                                   labels=["worker", "state"])
        busy = GaugeMetricFamily("beacon_inflight_requests", "Requests in flight to the worker", labels=["worker"])
        resident = GaugeMetricFamily("beacon_model_resident", "1 when the model is loaded on the worker",
                                     labels=["model", "worker"])
        memory = GaugeMetricFamily("beacon_worker_vram_bytes", "GPU memory of the worker: total, used, free",
                                   labels=["worker", "kind"])
        for w in snap.workers.values():
            inflight = counts.get(w.name, 0)
            up.add_metric([w.name, w.tier], 1.0 if w.up else 0.0)
            current = w.live_state(inflight, self._slow(w.name))
            for name in STATES:
                states.add_metric([w.name, name], 1.0 if name == current else 0.0)
            busy.add_metric([w.name], float(inflight))
            for model in w.resident:
                resident.add_metric([model, w.name], 1.0)
            total = vram.capacity(w)
            if w.tier == "gpu" or total:
                memory.add_metric([w.name, "used"], float(vram.used(w)))
                if total is not None:
                    memory.add_metric([w.name, "total"], float(total))
                    memory.add_metric([w.name, "free"], float(vram.free(w) or 0))
        yield from (up, states, busy, resident, memory)

    def _queue_depths(self, snap: Snapshot) -> GaugeMetricFamily:
        queued = GaugeMetricFamily("beacon_queue_depth", "Requests waiting for a slot, by model", labels=["model"])
        totals: dict[str, int] = {model_label(snap, m): 0 for w in snap.workers.values() for m in w.resident}
        for model, depth in self._queues().items():  # several unknown models share the `other` label
            label = model_label(snap, model)
            totals[label] = totals.get(label, 0) + depth
        for label, depth in totals.items():
            queued.add_metric([label], float(depth))
        return queued


def _gpus(snap: Snapshot) -> Iterator[GaugeMetricFamily]:
    """NVML readings, one series per GPU index (several workers may share a GPU)."""
    readings = {w.gpu.index: w.gpu for w in snap.workers.values() if w.gpu is not None}
    if not readings:
        return
    ok = GaugeMetricFamily("beacon_gpu_readable", "1 when NVML can read the GPU", labels=["gpu"])
    total = GaugeMetricFamily("beacon_gpu_memory_total_bytes", "GPU memory, total (NVML)", labels=["gpu", "name"])
    used = GaugeMetricFamily("beacon_gpu_memory_used_bytes", "GPU memory in use (NVML)", labels=["gpu"])
    util = GaugeMetricFamily("beacon_gpu_utilization_ratio", "GPU busy share over NVML's last sample, 0 to 1",
                             labels=["gpu"])
    temp = GaugeMetricFamily("beacon_gpu_temperature_celsius", "GPU core temperature (NVML)", labels=["gpu"])
    power = GaugeMetricFamily("beacon_gpu_power_watts", "GPU power draw (NVML)", labels=["gpu"])
    for index, r in sorted(readings.items()):
        gpu = str(index)
        ok.add_metric([gpu], 1.0 if r.ok else 0.0)
        if not r.ok:
            continue
        total.add_metric([gpu, r.name], float(r.total_bytes))
        used.add_metric([gpu], float(r.used_bytes))
        for family, value in ((util, None if r.utilization_pct is None else r.utilization_pct / 100),
                              (temp, r.temperature_c), (power, r.power_watts)):
            if value is not None:
                family.add_metric([gpu], float(value))
    yield from (ok, total, used, util, temp, power)


class _LoopCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # scraped off the loop (never in the gateway itself)
            return
        yield GaugeMetricFamily("beacon_event_loop_tasks", "asyncio tasks alive in the gateway process", value=tasks)
