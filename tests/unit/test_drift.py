"""Drift against a reference profile: PSI per numeric feature, category shift, the window."""

from __future__ import annotations

import random

import pytest

from zeroserve.errors import UsageError
from zeroserve.telemetry.drift import MIN_INSTANCES, THRESHOLD, DriftMonitor, build_profile, psi


def numeric_sample(count: int, shift: float = 0.0, seed: int = 1) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.gauss(5.0 + shift, 1.0), rng.uniform(0, 1)] for _ in range(count)]


def scores(monitor: DriftMonitor) -> dict[str, tuple[float, bool]]:
    return {f["name"]: (f["psi"], f["drifted"]) for f in monitor.report()["features"]}


def test_profile_has_decile_edges_and_shares_that_sum_to_one() -> None:
    profile = build_profile(numeric_sample(500))
    first = profile["features"][0]
    assert first["kind"] == "numeric"
    assert len(first["edges"]) == 9
    assert sum(first["expected"]) == pytest.approx(1.0)
    assert profile["instances"] == 500


def test_the_reference_distribution_stays_down_a_shifted_one_is_flagged() -> None:
    profile = build_profile(numeric_sample(2000, seed=1))
    steady = DriftMonitor(profile)
    steady.observe(numeric_sample(1000, seed=2))
    assert all(not drifted for _, drifted in scores(steady).values())
    assert all(score < 0.05 for score, _ in scores(steady).values())
    shifted = DriftMonitor(profile)
    shifted.observe(numeric_sample(1000, shift=1.5, seed=3))
    first, second = scores(shifted)["0"], scores(shifted)["1"]
    assert first[0] > THRESHOLD
    assert first[1] is True
    assert second[1] is False  # only the shifted feature


def test_category_shift_counts_unseen_categories_as_other() -> None:
    reference = [{"color": "red" if i % 2 else "blue", "size": i % 7} for i in range(400)]
    monitor = DriftMonitor(build_profile(reference))
    monitor.observe([{"color": "green", "size": i % 7} for i in range(200)])
    found = {f["name"]: f for f in monitor.report()["features"]}
    assert found["color"]["kind"] == "categorical"
    assert found["color"]["drifted"] is True
    assert found["size"]["drifted"] is False


def test_the_window_forgets_old_instances() -> None:
    profile = build_profile(numeric_sample(2000))
    monitor = DriftMonitor(profile, window=200)
    monitor.observe(numeric_sample(200, shift=3.0, seed=4))
    assert scores(monitor)["0"][1] is True
    monitor.observe(numeric_sample(200, seed=5))
    assert monitor.report()["window_instances"] == 200
    assert scores(monitor)["0"][1] is False


def test_too_few_instances_are_never_flagged() -> None:
    monitor = DriftMonitor(build_profile(numeric_sample(500)))
    monitor.observe(numeric_sample(MIN_INSTANCES - 1, shift=5.0))
    score, drifted = scores(monitor)["0"]
    assert score > THRESHOLD
    assert drifted is False


def test_psi_is_zero_for_equal_distributions_and_positive_otherwise() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([0.5, 0.5], [0.9, 0.1]) > 0.5


def test_a_sample_must_be_a_list_of_ten_or_more() -> None:
    with pytest.raises(UsageError, match="at least 10 instances"):
        build_profile([[1.0]] * 3)
    with pytest.raises(UsageError):
        build_profile({"not": "a list"})


def test_outputs_are_counted_with_a_cap_on_distinct_values() -> None:
    monitor = DriftMonitor({"features": []})
    monitor.observe_outputs([0, 1, 1, "a"])
    monitor.observe_outputs([[1, 2]])  # not a discrete output: ignored
    assert monitor.report()["outputs"] == {"0": 1, "1": 2, "a": 1}
    assert not monitor.watches_inputs
