"""``/metrics`` of the activator: its own scaling figures plus every running worker's metrics.

The activator's gauges are read from the pools at scrape time (nothing is counted on the warm
path). Each ready worker's exposition (KServe's request histograms, batching metrics) is fetched
and re-labelled with ``replica`` so series from two replicas never collide.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from zeroserve.local.status import engine_asleep
from zeroserve.local.upstream import ReplicaState

if TYPE_CHECKING:
    from zeroserve.local.pool import ModelPool

SCRAPE_TIMEOUT_S = 5.0
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
ANSWER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HOLD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True)
class ActivatorMetrics:
    hold: Histogram
    errors: Counter
    scale_events: Counter
    version_answers: Counter  # the versions of a split name (and its shadow)
    version_latency: Histogram


@cache
def activator_metrics() -> ActivatorMetrics:
    """The activator's event metrics (observed off the warm path), on no global registry."""
    return ActivatorMetrics(
        hold=Histogram(
            "zeroserve_request_hold_seconds",
            "How long a request was held while its model started (or until refused).",
            ["model"],
            buckets=HOLD_BUCKETS,
            registry=None,
        ),
        errors=Counter(
            "zeroserve_activator_errors",
            "Error answers the activator gave itself (502 worker died, 503 held too long…).",
            ["model", "status", "type"],
            registry=None,
        ),
        scale_events=Counter(
            "zeroserve_scale_events",
            "Scaling decisions: from_zero, up, down, to_zero.",
            ["model", "direction"],
            registry=None,
        ),
        version_answers=Counter(
            "zeroserve_version_answers",
            "Answers of each version of a split model name, by status (shadow answers too).",
            ["model", "version", "role", "code"],
            registry=None,
        ),
        version_latency=Histogram(
            "zeroserve_version_request_duration_seconds",
            "Seconds from a request's arrival to its answer, per version of a split name.",
            ["model", "version", "role"],
            buckets=ANSWER_BUCKETS,
            registry=None,
        ),
    )


class PoolCollector:
    """Replicas, in-flight and held requests, cold starts and failures per model."""

    def __init__(self, pools: dict[str, ModelPool], workers: list[Metric]) -> None:
        self.pools = pools
        self.workers = workers

    def collect(self) -> Iterator[Metric]:
        replicas = GaugeMetricFamily(
            "zeroserve_replicas", "Worker processes per model and state.", labels=["model", "state"]
        )
        in_flight = GaugeMetricFamily(
            "zeroserve_requests_in_flight",
            "Requests forwarded, not yet answered.",
            labels=["model"],
        )
        held = GaugeMetricFamily(
            "zeroserve_requests_held", "Requests held while the model starts.", labels=["model"]
        )
        cold = CounterMetricFamily(
            "zeroserve_cold_starts", "Starts from zero (or after a failure).", labels=["model"]
        )
        failures = GaugeMetricFamily(
            "zeroserve_consecutive_failures", "Failed starts or crashes in a row.", labels=["model"]
        )
        asleep = GaugeMetricFamily(
            "zeroserve_model_asleep",
            "1 while the model's LLM engine sleeps (llm.sleep_after idle seconds), else 0.",
            labels=["model"],
        )
        now = time.monotonic()
        for name, pool in self.pools.items():
            for state in ReplicaState:
                count = sum(1 for r in pool.replicas.values() if r.state is state)
                replicas.add_metric([name, str(state)], count)
            in_flight.add_metric([name], pool.in_flight)
            held.add_metric([name], len(pool.waiters))
            cold.add_metric([name], pool.cold_starts)
            failures.add_metric([name], pool.lifecycle.failures)
            asleep.add_metric([name], 1 if engine_asleep(pool, now) else 0)
        yield from (replicas, in_flight, held, cold, failures, asleep)
        events = activator_metrics()
        for metric in (
            events.hold,
            events.errors,
            events.scale_events,
            events.version_answers,
            events.version_latency,
        ):
            yield from metric.collect()
        yield from self.workers


def relabel(families: Iterable[Metric], model: str, replica: str) -> Iterable[Metric]:
    """Metric families with ``model`` (if given) and ``replica`` labels added."""
    for family in families:
        copy = Metric(family.name, family.documentation, family.type, family.unit)
        for sample in family.samples:
            labels = {**({"model": model} if model else {}), **sample.labels, "replica": replica}
            copy.add_sample(sample.name, labels, sample.value, sample.timestamp)
        yield copy


async def scrape(pools: dict[str, ModelPool]) -> bytes:
    """The whole exposition: activator gauges, then every ready worker's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector(pools, await worker_families(pools)))
    return generate_latest(registry)


async def scraped_families(pools: dict[str, ModelPool]) -> list[Metric]:
    """The families of the whole exposition, as ``scrape`` writes them."""
    return list(PoolCollector(pools, await worker_families(pools)).collect())


async def worker_families(pools: dict[str, ModelPool]) -> list[Metric]:
    """Every ready worker's families (and this process's own), labelled with model and replica."""
    import httpx

    targets = [
        (name, replica.id, f"http://127.0.0.1:{replica.port}/metrics")
        for name, pool in pools.items()
        for replica in pool.replicas.values()
        if replica.state is ReplicaState.READY
    ]
    workers: list[Metric] = []
    async with httpx.AsyncClient(timeout=SCRAPE_TIMEOUT_S) as client:
        answers = await asyncio.gather(
            *(client.get(url) for _, _, url in targets), return_exceptions=True
        )
    merged: dict[str, Metric] = {}
    # this process's own registry: the model host's imports and fetches, Python's figures
    sources: list[tuple[str, str, Iterable[Metric]]] = [("", "activator", REGISTRY.collect())]
    for (model, replica, _), answer in zip(targets, answers, strict=True):
        if isinstance(answer, BaseException) or answer.status_code != 200:
            continue  # a replica that just stopped: its series are gone
        sources.append((model, replica, text_string_to_metric_families(answer.text)))
    for model, replica, families in sources:
        for family in relabel(families, model, replica):
            into = merged.setdefault(family.name, family)
            if into is not family:
                into.samples.extend(family.samples)
    workers.extend(merged.values())
    return workers
