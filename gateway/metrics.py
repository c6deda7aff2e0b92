"""Every Prometheus metric in one file: names, help strings, label sets.

Counters and histograms are written by the request path; gauges that describe the fleet
are read from the snapshot at scrape time by a collector, so nothing has to keep them in
sync. Model labels are bounded: a name not configured and not seen on a worker is `other`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.names import InvalidModelName, canonical
from gateway.state import Snapshot

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
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

    def watch(self, current: Callable[[], Snapshot], inflight: Callable[[], Mapping[str, int]],
              queues: Callable[[], Mapping[str, int]] = dict) -> None:
        self.registry.register(_FleetCollector(current, inflight, queues))


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


class _FleetCollector(Collector):
    def __init__(self, current: Callable[[], Snapshot], inflight: Callable[[], Mapping[str, int]],
                 queues: Callable[[], Mapping[str, int]]) -> None:
        self._current, self._inflight, self._queues = current, inflight, queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap, counts = self._current(), self._inflight()
        up = GaugeMetricFamily("beacon_worker_up", "1 when the worker passes health checks", labels=["worker", "tier"])
        busy = GaugeMetricFamily("beacon_inflight_requests", "Requests in flight to the worker", labels=["worker"])
        resident = GaugeMetricFamily("beacon_model_resident", "1 when the model is loaded on the worker",
                                     labels=["model", "worker"])
        for w in snap.workers.values():
            up.add_metric([w.name, w.tier], 1.0 if w.up else 0.0)
            busy.add_metric([w.name], float(counts.get(w.name, 0)))
            for model in w.resident:
                resident.add_metric([model, w.name], 1.0)
        queued = GaugeMetricFamily("beacon_queue_depth", "Requests waiting for a slot, by model", labels=["model"])
        totals: dict[str, int] = {}
        for model, depth in self._queues().items():  # several unknown models share the `other` label
            label = model_label(snap, model)
            totals[label] = totals.get(label, 0) + depth
        for label, depth in totals.items():
            queued.add_metric([label], float(depth))
        yield from (up, busy, resident, queued)
