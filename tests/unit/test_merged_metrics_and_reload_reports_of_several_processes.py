"""What `serve --processes N` answers for all its processes, as pure functions: the merged
/metrics exposition (prometheus_client parses it back: one HELP and TYPE a family, every series
with its process label, histograms whole) and the one reload report (each process's result,
and the status that says whether all of them run the new config)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.siblings import merge_expositions, reload_report


def exposition(requests: int, seconds: float) -> bytes:
    registry = CollectorRegistry()
    Counter("beacon_requests", "Requests answered", ["outcome"], registry=registry).labels("ok").inc(requests)
    Histogram("beacon_request_duration_seconds", "Time", buckets=(0.1, 1), registry=registry).observe(seconds)
    Gauge("beacon_worker_up", "Up", ["worker"], registry=registry).labels("gpu0").set(1)
    return generate_latest(registry)


def test_each_family_appears_once_with_the_series_of_every_process_labelled():
    text = merge_expositions({1: exposition(3, 0.5), 0: exposition(2, 0.05)}).decode()
    for family in ("beacon_requests_total counter", "beacon_request_duration_seconds histogram",
                   "beacon_worker_up gauge"):
        assert text.count(f"# TYPE {family}\n") == 1
    assert text.count("# HELP beacon_requests_total ") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {s.labels["process"]: s.value for s in families["beacon_requests"].samples
                if s.name == "beacon_requests_total"}
    assert requests == {"0": 2.0, "1": 3.0}
    duration = families["beacon_request_duration_seconds"].samples
    buckets = [(s.labels["process"], s.labels["le"], s.value) for s in duration if s.name.endswith("_bucket")]
    assert buckets == [("0", "0.1", 1.0), ("0", "1.0", 1.0), ("0", "+Inf", 1.0),
                       ("1", "0.1", 0.0), ("1", "1.0", 1.0), ("1", "+Inf", 1.0)]
    assert [s.labels for s in families["beacon_worker_up"].samples] == [
        {"process": "0", "worker": "gpu0"}, {"process": "1", "worker": "gpu0"}]


def test_a_process_left_out_of_the_scrape_is_simply_absent():
    text = merge_expositions({0: exposition(2, 0.05)}).decode()
    assert 'beacon_requests_total{outcome="ok",process="0"} 2.0' in text and 'process="1"' not in text


def ok(version: str = "v2") -> dict:
    return {"result": "ok", "version": version, "source": "admin API", "errors": [], "added": [], "removed": [],
            "changed": []}


def test_every_process_reloaded_is_a_200_listing_each():
    status, body = reload_report(1, {0: ok(), 1: ok()})
    assert status == 200 and body["result"] == "ok" and body["version"] == "v2"
    assert [(p["process"], p["result"]) for p in body["processes"]] == [(0, "ok"), (1, "ok")]


def test_a_refused_config_is_a_422_with_its_errors_and_the_version_still_running():
    failed = {"result": "failed", "version": "v1", "errors": ["workers.0.name: bad"], "source": "admin API"}
    status, body = reload_report(0, {0: failed, 1: dict(failed)})
    assert status == 422 and body["result"] == "failed" and body["errors"] == ["workers.0.name: bad"]
    assert "process 0, 1" in body["error"] and "still running v1" in body["error"]


def test_a_process_that_did_not_answer_is_a_503_naming_it():
    status, body = reload_report(0, {0: ok(), 1: {"result": "unanswered", "error": "process 1 did not answer"}})
    assert status == 503 and body["result"] == "failed" and "process 1 did not confirm" in body["error"]
    assert body["processes"][1]["result"] == "unanswered"
