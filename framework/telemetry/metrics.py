"""Prometheus metrics for zeroserve's own parts, on the registry that KServe's /metrics serves.

Metrics are created on first use, never at import.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from zeroserve.serving.batching import DispatchReason

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
QUEUE_WAIT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class BatchMetrics:
    size: Histogram
    queue_wait: Histogram
    dispatches: Counter


@cache
def batch_metrics() -> BatchMetrics:
    """The process-wide batching metrics, created once."""
    return BatchMetrics(
        size=Histogram(
            "zeroserve_batch_size",
            "Instances per dispatched batch.",
            ["model"],
            buckets=BATCH_SIZE_BUCKETS,
        ),
        queue_wait=Histogram(
            "zeroserve_batch_queue_wait_seconds",
            "Time a request waited in the batch queue before its batch was dispatched.",
            ["model"],
            buckets=QUEUE_WAIT_BUCKETS,
        ),
        dispatches=Counter(
            "zeroserve_batch_dispatches",
            "Dispatched batches by reason (full or timeout).",
            ["model", "reason"],
        ),
    )


class PrometheusBatchObserver:
    """A BatchObserver that records one model's batches in the Prometheus metrics."""

    def __init__(self, model: str) -> None:
        metrics = batch_metrics()
        self._size = metrics.size.labels(model=model)
        self._wait = metrics.queue_wait.labels(model=model)
        self._dispatches = {
            reason: metrics.dispatches.labels(model=model, reason=reason)
            for reason in ("full", "timeout")
        }

    def batch_dispatched(self, *, size: int, reason: DispatchReason, waits: list[float]) -> None:
        self._size.observe(size)
        for wait in waits:
            self._wait.observe(wait)
        self._dispatches[reason].inc()


COLD_START_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class ServingMetrics:
    phase: Histogram
    ready: Histogram
    cache_lookups: Counter
    cache_bytes: Counter
    errors: Counter


@cache
def serving_metrics() -> ServingMetrics:
    """Cold starts, cache use and error answers of this process, created once."""
    return ServingMetrics(
        phase=Histogram(
            "zeroserve_cold_start_phase_seconds",
            "Duration of each phase of a start (imports, fetch, load, warmup…).",
            ["model", "phase"],
            buckets=COLD_START_BUCKETS,
        ),
        ready=Histogram(
            "zeroserve_cold_start_seconds",
            "From the process start to the model's readiness.",
            ["model"],
            buckets=COLD_START_BUCKETS,
        ),
        cache_lookups=Counter(
            "zeroserve_cache_lookups", "Model cache lookups by result (hit, miss).", ["result"]
        ),
        cache_bytes=Counter("zeroserve_cache_fetched_bytes", "Bytes fetched into the model cache."),
        errors=Counter(
            "zeroserve_errors",
            "Error answers by model, HTTP status and error type.",
            ["model", "status", "type"],
        ),
    )


def record_startup(timeline: dict[str, Any], models: list[str]) -> None:
    """Turn a finished StartupTimeline (as_dict) into cold-start and cache metrics."""
    metrics = serving_metrics()
    for phase in timeline["phases"]:
        if phase["end_s"] is None:
            continue
        owners = [phase["model"]] if phase.get("model") else models
        if phase["name"] == "ready":
            for model in owners:
                metrics.ready.labels(model=model).observe(phase["end_s"])
            continue
        if phase["name"] == "fetch":
            metrics.cache_lookups.labels(result="hit" if phase.get("hit") else "miss").inc()
            metrics.cache_bytes.inc(phase.get("bytes") or 0)
        for model in owners:
            seconds = phase["end_s"] - phase["start_s"]
            metrics.phase.labels(model=model, phase=phase["name"]).observe(seconds)


def record_error(model: str, status: int, kind: str) -> None:
    serving_metrics().errors.labels(model=model, status=str(status), type=kind).inc()


class DriftCollector:
    """Drift and output figures of every model in this process, computed at scrape time."""

    def __init__(self) -> None:
        self.monitors: dict[str, Any] = {}  # model -> DriftMonitor

    def collect(self) -> Iterator[Metric]:
        score = GaugeMetricFamily(
            "zeroserve_feature_psi",
            "Population stability index of each input feature over the recent window.",
            labels=["model", "feature", "kind"],
        )
        flag = GaugeMetricFamily(
            "zeroserve_feature_drifted",
            "1 when a feature's PSI is past the threshold (with enough instances seen).",
            labels=["model", "feature"],
        )
        window = GaugeMetricFamily(
            "zeroserve_drift_window_instances", "Instances in the drift window.", labels=["model"]
        )
        outputs = CounterMetricFamily(
            "zeroserve_prediction_outputs",
            "Predictions by output value.",
            labels=["model", "value"],
        )
        for model, monitor in self.monitors.items():
            report = monitor.report()
            for feature in report["features"]:
                score.add_metric([model, feature["name"], feature["kind"]], feature["psi"])
                flag.add_metric([model, feature["name"]], float(feature["drifted"]))
            if monitor.watches_inputs:
                window.add_metric([model], report["window_instances"])
            for value, count in report["outputs"].items():
                outputs.add_metric([model, value], count)
        yield from (score, flag, window, outputs)


@cache
def drift_collector() -> DriftCollector:
    """The process-wide drift collector, registered on first use."""
    collector = DriftCollector()
    REGISTRY.register(collector)
    return collector
