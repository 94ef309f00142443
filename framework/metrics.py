"""Prometheus metrics for zeroserve's own parts, on the registry that KServe's /metrics serves.

Metrics are created on first use, never at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

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
