"""The parts of ``zeroserve validate`` that are arithmetic: schema compatibility, MLflow-style
thresholds, metrics and shift (figures checked against scipy and by hand)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field, TypeAdapter

from zeroserve.delivery.compat import breaking_changes
from zeroserve.delivery.history import append, local_history, record
from zeroserve.delivery.quality import (
    MetricThreshold,
    chi2_survival,
    metrics,
    shift,
    task_of,
)
from zeroserve.targets.kserve.audit import HISTORY, KEEP, details, history_of, with_record

pytestmark = pytest.mark.timeout(30)
Flower = Annotated[list[float], Field(min_length=4, max_length=4)]


class Reading(BaseModel):
    x: float
    note: str | None = None


class Stricter(BaseModel):
    x: int
    unit: str


def schemas(instances: Any, **parameters: Any) -> dict[str, Any]:
    return {
        "instances": TypeAdapter(instances).json_schema(),
        "parameters": {k: TypeAdapter(v).json_schema() for k, v in parameters.items()},
    }


@pytest.mark.parametrize(
    ("baseline", "candidate", "expected"),
    [
        (schemas(list[Flower]), schemas(list[Flower]), []),
        (schemas(list[list[int]]), schemas(list[list[float]]), []),  # widened
        (schemas(list[Reading]), schemas(list[Any]), []),
        (
            schemas(list[Flower]),
            schemas(list[Annotated[list[float], Field(min_length=5, max_length=5)]]),
            ["instances[*]: minItems raised from 4 to 5"],
        ),
        (
            schemas(list[Flower]),
            schemas(list[list[int]]),
            ["instances[*][*]: the candidate no longer takes number (baseline number, "
             "candidate integer)"],
        ),
        (
            schemas(list[Reading]),
            schemas(list[Stricter]),
            ["instances[*].unit: a new required field",
             "instances[*].x: the candidate no longer takes number (baseline number, "
             "candidate integer)"],
        ),
        (
            schemas(list[str], top_k=int),
            schemas(list[str]),
            ["parameters.top_k: the candidate no longer takes this parameter"],
        ),
    ],
    ids=["same", "widened", "to any", "longer rows", "integers", "object fields", "parameter"],
)  # fmt: skip
def test_breaking_changes_are_named_by_path(
    baseline: dict[str, Any], candidate: dict[str, Any], expected: list[str]
) -> None:
    assert breaking_changes(baseline, candidate) == expected


def test_thresholds_follow_mlflow_metric_threshold() -> None:
    accuracy = MetricThreshold("accuracy", threshold=0.9, min_absolute_change=-0.01)
    assert accuracy.failures(0.95, 0.955) == []
    assert accuracy.failures(0.95, 0.97) == [
        "accuracy 0.95 vs the baseline's 0.97: a change of -0.02, under the allowed -0.01"
    ]
    assert accuracy.failures(0.85, None) == ["accuracy 0.85 is not at least 0.9"]
    rmse = MetricThreshold("rmse", threshold=1.0, min_relative_change=-0.1)
    assert rmse.failures(1.05, 1.0) == ["rmse 1.05 is not at most 1"]  # 5% worse: allowed
    assert "relative change of -20.00%" in rmse.failures(0.6, 0.5)[0]


def test_metrics_and_task() -> None:
    assert task_of([0, 1, 2, 1]) == "classification"
    assert task_of(["a", "b"]) == "classification"
    assert task_of([0.5, 1.25]) == "regression"
    found = metrics("classification", [0, 0, 1, 1], [0, 1, 1, 1])
    assert found["accuracy"] == 0.75
    assert found["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)
    errors = metrics("regression", [1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert errors == {"rmse": pytest.approx((4 / 3) ** 0.5), "mae": pytest.approx(2 / 3)}


def test_shift_is_zero_for_the_same_predictions_and_grows_with_change() -> None:
    same = shift("classification", [0, 1, 2] * 10, [0, 1, 2] * 10)
    assert same["psi"] == 0
    assert same["chi2_p_value"] == pytest.approx(1.0)
    moved = shift("classification", [0, 1, 2] * 10, [0] * 30)
    assert moved["psi"] > 1
    assert moved["chi2_p_value"] < 1e-6
    numbers = [float(i) for i in range(100)]
    assert shift("regression", numbers, numbers)["psi"] == 0
    assert shift("regression", numbers, [n + 50 for n in numbers])["psi"] > 0.5


@pytest.mark.parametrize(
    ("statistic", "freedom", "scipy_sf"),
    [(0.5, 1, 0.47950012), (3.84, 1, 0.05004352), (10, 2, 0.00673795), (2, 5, 0.84914504)],
)
def test_chi2_survival_matches_scipy(statistic: float, freedom: int, scipy_sf: float) -> None:
    assert chi2_survival(statistic, freedom) == pytest.approx(scipy_sf, abs=1e-8)


def test_the_local_history_is_appended_line_by_line_and_read_per_model(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "history.jsonl"
    append(record("validate", "iris", verdict="pass", baseline=None), path)
    append(record("validate", "other", verdict="fail"), path)
    with path.open("a") as stream:
        stream.write("not a record\n")
    append(record("validate", "iris", verdict="fail"), path)
    found = local_history("iris", path)
    assert [r["verdict"] for r in found] == ["pass", "fail"]
    assert "baseline" not in found[0]  # None is left out
    assert local_history("nobody", path) == []
    assert local_history("iris", tmp_path / "none.jsonl") == []


def test_the_cluster_history_keeps_the_last_records_and_ignores_a_foreign_annotation() -> None:
    live: dict[str, Any] = {"metadata": {"annotations": {}}}
    for step in range(KEEP + 5):
        live["metadata"]["annotations"] |= with_record(live, record("rollout", "m", canary=step))
    kept = history_of(live)
    assert len(kept) == KEEP
    assert kept[-1]["canary"] == KEEP + 4
    assert history_of({"metadata": {"annotations": {HISTORY: "{not json"}}}) == []
    assert history_of(None) == []
    entry = record("deploy", "m", validation={"verdict": "pass", "report": "sha256:ab"})
    assert details(entry) == "validation.verdict pass; validation.report sha256:ab"
