"""Every Prometheus metric in one file: names, help strings, label sets.

Counters and histograms are written by the request path; gauges that describe the fleet
are read from the snapshot at scrape time by a collector, so nothing has to keep them in
sync. Model labels are bounded for the life of the process (a counter's series never go away):
the models named in the config, plus the first MODEL_LABEL_CAP that workers hold, the rest `other`.
Workers are untrusted for names and counts, and a manage key can mint models with cheap copies.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway import vram
from gateway.names import InvalidModelName, canonical
from gateway.state import Snapshot

QUEUE_RESULTS = ("admitted", "full", "pushed_out", "timeout")  # how a wait in a model's queue ended
FAILOVER_REASONS = ("connect", "timeout", "status", "busy", "dropped", "malformed", "redirect", "too_large",
                    "budget_exhausted", "no_route")  # no_route: asked again on the same worker, translated
MODEL_LABEL_CAP = 100  # models not in the config that get a label of their own
MODEL_LABEL_MAX_CHARS = 200  # longer names are `other`: Ollama's own names are shorter
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple, object] = {}
        self.models = ModelLabels()
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
        self.queue_wait = Histogram("beacon_queue_wait_seconds",
                                    "Time a request waited in a model's queue, by priority class and how the wait "
                                    "ended (admitted, full, pushed_out, timeout)", ["priority", "result"],
                                    buckets=_LATENCY_BUCKETS, registry=r)
        # Present at 0 from the start, so rate() and increase() alerts work from the first failure.
        for priority, result in itertools.product(("interactive", "batch"), QUEUE_RESULTS):
            self.queue_wait.labels(priority=priority, result=result)
        for result in ("ok", "unchanged", "failed"):
            self.config_reloads.labels(result=result)
        for reason in FAILOVER_REASONS:
            self.failovers.labels(reason=reason)

    def queued(self, priority: str, result: str, waited_s: float) -> None:
        """One wait in a queue ended; tenants are counted by class only, never by key (bounded labels)."""
        self.child(self.queue_wait, priority, result).observe(waited_s)

    def child(self, metric, *labels: str):
        """metric.labels(*labels), remembered: labels() validates and locks on every call, and the
        request path calls it four times a request. Label values are bounded, so is this cache."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def model_label(self, snapshot: Snapshot, model: str) -> str:
        """The `model` label value for `model`: every metric with a model label takes it from here."""
        return self.models.label(snapshot, model)

    @staticmethod
    def worker_label(worker: str | None) -> str:
        """The `worker` label of a request: its worker, `none` when none was tried, `several` for model
        management sent to many at once (a label per subset of the fleet would be unbounded)."""
        if not worker:
            return "none"
        return "several" if "," in worker else worker

    def count_load(self, snapshot: Snapshot, worker: str, model: str, reason: str) -> None:
        self.child(self.loads, worker, self.model_label(snapshot, model), reason).inc()

    def watch_process(self) -> None:
        """process_resident_memory_bytes, process_open_fds, CPU seconds (Linux), and the event loop's
        task count: what a soak or a leak hunt reads."""
        ProcessCollector(registry=self.registry)
        self.registry.register(_LoopCollector())

    def watch_siblings(self, siblings: tuple[int, ...]) -> Counter:
        """`serve --processes N`: scrapes of the merged /metrics that had to leave a sibling out
        (it did not answer in time: restarting, or stuck), by sibling; at 0 from the start."""
        unanswered = Counter("beacon_process_metrics_unanswered",
                             "Scrapes of the merged /metrics that left a sibling process out, by sibling index",
                             ["sibling"], registry=self.registry)
        for index in siblings:
            unanswered.labels(sibling=str(index))
        return unanswered

    def watch_cluster(self, cluster) -> None:
        """Which mode this replica shares state in, how many replicas it sees, failed syncs."""
        self.registry.register(_ClusterCollector(cluster))

    def watch(self, current: Callable[[], Snapshot], inflight: Callable[[], Mapping[str, int]],
              queues: Callable[[], Mapping[str, int]] = dict,
              slow: Callable[[str], str | None] = lambda worker: None) -> None:
        self.registry.register(_FleetCollector(current, inflight, queues, slow, self.models))


class ModelLabels:
    """The bounded set of model label values. A configured model always has its own label; a model
    a worker holds gets one while fewer than `cap` have, and keeps it (its series already exist);
    anything else (client-made names, the 101st model a worker lists) is `other`."""

    def __init__(self, cap: int = MODEL_LABEL_CAP) -> None:
        self._cap = cap
        self._seen: dict[str, None] = {}
        self._config: object = None
        self._configured: frozenset[str] = frozenset()

    def label(self, snapshot: Snapshot, model: str) -> str:
        if not model:
            return "none"
        if model in self._seen or model in self._configured_in(snapshot):
            return model
        if len(self._seen) >= self._cap or len(model) > MODEL_LABEL_MAX_CHARS:
            return "other"
        if snapshot.holders(model):  # the snapshot's index: no scan of the fleet per request
            self._seen[model] = None
            return model
        return "other"

    def _configured_in(self, snapshot: Snapshot) -> frozenset[str]:
        if snapshot.config is not self._config:  # once per config, not per request
            names = set()
            for name in snapshot.config.models:
                try:
                    names.add(canonical(name))
                except InvalidModelName:
                    continue
            self._config, self._configured = snapshot.config, frozenset(names)
        return self._configured


STATES = ("healthy", "degraded", "ejected", "warming", "draining", "drained", "down", "unknown")


class _FleetCollector(Collector):
    def __init__(self, current: Callable[[], Snapshot], inflight: Callable[[], Mapping[str, int]],
                 queues: Callable[[], Mapping[str, int]], slow: Callable[[str], str | None],
                 models: ModelLabels) -> None:
        self._current, self._inflight, self._queues, self._slow = current, inflight, queues, slow
        self._models = models

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap, counts = self._current(), self._inflight()
        yield from self._workers(snap, counts)
        yield self._queue_depths(snap)
        yield GaugeMetricFamily("beacon_admission_max_queue",
                                "[admission] max_queue: past it a model's requests get 503",
                                value=float(snap.config.admission.max_queue))
        yield from _gpus(snap)

    def _workers(self, snap: Snapshot, counts: Mapping[str, int]) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("beacon_worker_up", "1 when the worker passes health checks", labels=["worker", "tier"])
        states = GaugeMetricFamily("beacon_worker_state", "1 for the state the worker is in, 0 for the others",
                                   labels=["worker", "state"])
        busy = GaugeMetricFamily("beacon_inflight_requests", "Requests in flight to the worker", labels=["worker"])
        resident = GaugeMetricFamily("beacon_model_resident", "1 when the model is loaded on the worker "
                                     "(model=\"other\": how many models without a label of their own)",
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
            loaded: dict[str, int] = {}
            for model in w.resident:
                label = self._models.label(snap, model)
                loaded[label] = loaded.get(label, 0) + 1
            for label, count in loaded.items():
                resident.add_metric([label, w.name], float(count))
            total = vram.capacity(w)
            if w.tier == "gpu" or total:
                memory.add_metric([w.name, "used"], float(vram.used(w)))
                if total is not None:
                    memory.add_metric([w.name, "total"], float(total))
                    memory.add_metric([w.name, "free"], float(vram.free(w) or 0))
        yield from (up, states, busy, resident, memory)

    def _queue_depths(self, snap: Snapshot) -> GaugeMetricFamily:
        queued = GaugeMetricFamily("beacon_queue_depth", "Requests waiting for a slot, by model", labels=["model"])
        totals = {self._models.label(snap, m): 0 for w in snap.workers.values() for m in w.resident}
        for model, depth in self._queues().items():  # several unknown models share the `other` label
            label = self._models.label(snap, model)
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


CLUSTER_MODES = ("alone", "shared", "local")


class _ClusterCollector(Collector):
    """beacon_cluster_*: `alone` (no BEACON_REDIS_URL), `shared` (state shared through Redis) or
    `local` (Redis unreachable: this replica decides on its own state until Redis is back)."""

    def __init__(self, cluster) -> None:
        self._cluster = cluster

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        c = self._cluster
        mode = GaugeMetricFamily("beacon_cluster_mode", "1 for the mode this replica shares live state in: alone, "
                                 "shared (through Redis) or local (Redis unreachable)", labels=["mode"])
        for name in CLUSTER_MODES:
            mode.add_metric([name], 1.0 if c.mode == name else 0.0)
        yield mode
        yield GaugeMetricFamily("beacon_cluster_replicas", "Gateway replicas and processes sharing state, this one "
                                "included, as of the last sync", value=float(c.view.replicas))
        failures = CounterMetricFamily("beacon_cluster_sync_failures", "Redis calls that failed (sync and request "
                                       "path); each one puts the replica in local mode until a sync succeeds")
        failures.add_metric([], float(c.sync_failures))
        yield failures
