"""Prometheus metrics for zeroserve's own parts, on the registry that KServe's /metrics serves.

Metrics are created on first use, never at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from prometheus_client import Counter, Histogram

from zeroserve.batching import DispatchReason

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
