"""GET /zeroserve/overview's figures, from real Prometheus metric families."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from zeroserve.telemetry.drift import THRESHOLD
from zeroserve.telemetry.overview import overview

pytestmark = pytest.mark.timeout(30)


def exposition() -> CollectorRegistry:
    """A worker's metrics as KServe and zeroserve name them: 100 requests of iris (90 fast, 10
    slow), two errors, batches of 3 and 7."""
    registry = CollectorRegistry()
    latency = Histogram(
        "request_predict_seconds", "", ["model_name"], registry=registry, buckets=(0.01, 0.1, 1)
    )
    for _ in range(90):
        latency.labels(model_name="iris").observe(0.005)
    for _ in range(10):
        latency.labels(model_name="iris").observe(0.5)
    errors = Counter("zeroserve_errors", "", ["model", "status", "type"], registry=registry)
    errors.labels(model="iris", status="400", type="InvalidPayload").inc(2)
    errors.labels(model="other", status="500", type="PredictError").inc()
    sizes = Histogram("zeroserve_batch_size", "", ["model"], registry=registry, buckets=(1, 4, 8))
    sizes.labels(model="iris").observe(3)
    sizes.labels(model="iris").observe(7)
    psi = Gauge("zeroserve_feature_psi", "", ["model", "feature", "kind"], registry=registry)
    psi.labels(model="iris", feature="petal_length", kind="numeric").set(0.31)
    psi.labels(model="iris", feature="sepal_width", kind="numeric").set(0.02)
    drifted = Gauge("zeroserve_feature_drifted", "", ["model", "feature"], registry=registry)
    drifted.labels(model="iris", feature="petal_length").set(1)
    drifted.labels(model="iris", feature="sepal_width").set(0)
    outputs = Counter("zeroserve_prediction_outputs", "", ["model", "value"], registry=registry)
    outputs.labels(model="iris", value="setosa").inc(60)
    outputs.labels(model="iris", value="virginica").inc(40)
    return registry


def test_requests_latency_errors_and_batch_sizes_per_model() -> None:
    found = overview(exposition().collect(), ["iris", "idle"])
    assert found["drift_threshold"] == THRESHOLD
    iris = found["models"]["iris"]
    assert iris["requests"] == 100
    assert iris["latency_ms"]["p50"] == pytest.approx(10 * 50 / 90, rel=1e-3)  # in the first bucket
    assert 100 < iris["latency_ms"]["p99"] <= 1000
    assert iris["errors"] == {"400": 2}
    assert iris["batch_sizes"] == [
        {"le": "1", "count": 0},
        {"le": "4", "count": 1},
        {"le": "8", "count": 1},
        {"le": "+Inf", "count": 0},
    ]
    assert iris["psi"] == {"petal_length": 0.31, "sepal_width": 0.02}
    assert iris["drifted"] == ["petal_length"]
    assert iris["outputs"] == {"setosa": 60, "virginica": 40}
    assert set(found["models"]) == {"iris", "idle"}, "a model not asked for was reported"
    idle = found["models"]["idle"]
    assert idle["requests"] == 0
    assert idle["latency_ms"] == {"p50": None, "p99": None}


def test_the_exposition_text_gives_the_same_figures_summed_over_replicas() -> None:
    """The activator reads its workers' text; two replicas' series add up."""
    text = generate_latest(exposition()).decode()
    families = list(text_string_to_metric_families(text + text))
    iris = overview(families, ["iris"])["models"]["iris"]
    assert iris["requests"] == 200
    assert iris["errors"] == {"400": 4}
    assert [bucket["count"] for bucket in iris["batch_sizes"]] == [0, 2, 2, 0]
    assert iris["outputs"] == {"setosa": 120, "virginica": 80}
    assert iris["psi"]["petal_length"] == 0.31  # the highest of the replicas', not a sum


def test_a_path_that_is_not_the_consoles_is_not_remembered() -> None:
    """Any path a client sends reaches the console's lookup: it must not grow a cache."""
    from zeroserve import console

    for index in range(100):
        assert console.asset(f"/zeroserve/not-a-file-{index}") is None
    page = console.asset("/zeroserve/")
    assert page is not None
    assert page[1] == console.HTML
    assert console._file.cache_info().currsize <= len(console.ASSETS)
