"""``GET /zeroserve/overview``: each model's traffic, batching and drift figures as JSON.

Read from the same Prometheus metric families ``/metrics`` exposes (KServe's request histogram,
zeroserve's error counters, batch sizes, drift gauges), so nothing more is counted on the warm
path. Counts are totals since each process started; a reader that wants a rate takes the
difference between two reads (the console does).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import Metric

from zeroserve.telemetry.drift import THRESHOLD

REQUESTS = "request_predict_seconds"  # KServe's own histogram, label model_name
ERRORS = ("zeroserve_errors", "zeroserve_activator_errors")  # labels model, status, type
BATCH_SIZES = "zeroserve_batch_size"
PSI = "zeroserve_feature_psi"
DRIFTED = "zeroserve_feature_drifted"
OUTPUTS = "zeroserve_prediction_outputs"


def overview(families: Iterable[Metric], models: Iterable[str]) -> dict[str, Any]:
    """Per model: requests, latency p50/p99 (ms), errors by status, batch sizes, drift, outputs."""
    found: dict[str, dict[str, Any]] = {name: _empty() for name in models}
    buckets: dict[str, dict[str, dict[float, float]]] = {}  # model -> histogram -> le -> count
    for family in families:
        for sample in family.samples:
            model = sample.labels.get("model") or sample.labels.get("model_name")
            if model not in found:
                continue
            _add(found[model], buckets.setdefault(model, {}), family.name, sample)
    for model, entry in found.items():
        latency = buckets.get(model, {}).get(REQUESTS, {})
        entry["latency_ms"] = {
            "p50": _quantile(0.5, latency),
            "p99": _quantile(0.99, latency),
        }
        sizes = buckets.get(model, {}).get(BATCH_SIZES, {})
        entry["batch_sizes"] = _per_bucket(sizes)
    return {"drift_threshold": THRESHOLD, "models": found}


def _empty() -> dict[str, Any]:
    return {"requests": 0, "errors": {}, "psi": {}, "drifted": [], "outputs": {}}


def _add(
    entry: dict[str, Any], buckets: dict[str, dict[float, float]], name: str, sample: Any
) -> None:
    labels, value = sample.labels, sample.value
    if sample.name == f"{REQUESTS}_count":
        entry["requests"] += int(value)
    elif sample.name in (f"{REQUESTS}_bucket", f"{BATCH_SIZES}_bucket"):
        histogram = buckets.setdefault(sample.name.removesuffix("_bucket"), {})
        bound = float(labels["le"])  # summed over replicas: same buckets in each
        histogram[bound] = histogram.get(bound, 0.0) + value
    elif name in ERRORS and sample.name.endswith("_total"):
        errors = entry["errors"]
        errors[labels["status"]] = errors.get(labels["status"], 0) + int(value)
    elif name == PSI:  # the highest of the replicas' windows
        entry["psi"][labels["feature"]] = max(value, entry["psi"].get(labels["feature"], 0.0))
    elif name == DRIFTED and value >= 1 and labels["feature"] not in entry["drifted"]:
        entry["drifted"].append(labels["feature"])
    elif name == OUTPUTS and sample.name.endswith("_total"):
        outputs = entry["outputs"]
        outputs[labels["value"]] = outputs.get(labels["value"], 0) + int(value)


def _quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """Prometheus's histogram_quantile over cumulative buckets, in milliseconds; None if empty."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if math.isinf(bound):
                return round(lower * 1000, 3)  # past the last finite bucket: its bound
            share = (rank - below) / (count - below) if count > below else 1.0
            return round((lower + (bound - lower) * share) * 1000, 3)
        lower, below = bound, count
    return None


def _per_bucket(cumulative: dict[float, float]) -> list[dict[str, Any]]:
    """Cumulative buckets as counts per bucket: ``[{"le": "8", "count": n}, ...]``."""
    counts, below = [], 0.0
    for bound in sorted(cumulative):
        label = "+Inf" if math.isinf(bound) else f"{bound:g}"
        counts.append({"le": label, "count": int(cumulative[bound] - below)})
        below = cumulative[bound]
    return counts
