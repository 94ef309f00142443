"""The canary analysis's statistics against scipy and numpy, its verdicts, and the rollout loop's
decisions (a scripted traffic control: the real one is tested in test_rollout_analysis)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from zeroserve.delivery.analysis import Limits, Window, judge, mann_whitney_greater, percentile
from zeroserve.delivery.canary import FiguresUnavailable, Rollout, steps_from
from zeroserve.errors import AnalysisPaused, UsageError, ValidationFailed

FAST = [0.004 + 0.0001 * (i % 7) for i in range(60)]


@pytest.mark.parametrize("seed", range(6))
def test_mann_whitney_matches_scipy_with_and_without_ties(seed: int) -> None:
    rng = random.Random(seed)
    first = [round(rng.gauss(1.0 + seed / 10, 1), seed % 3) for _ in range(rng.randint(5, 80))]
    second = [round(rng.gauss(1.0, 1), seed % 3) for _ in range(rng.randint(5, 80))]
    expected = mannwhitneyu(first, second, alternative="greater", method="asymptotic").pvalue
    assert mann_whitney_greater(first, second) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_percentile_matches_numpy() -> None:
    values = [random.Random(1).random() for _ in range(101)]
    for q in (0.5, 0.9, 0.99, 1.0):
        assert percentile(values, q) == pytest.approx(float(np.quantile(values, q)))


def test_verdicts() -> None:
    limits = Limits(min_requests=20)
    good = judge(Window(60, 0, FAST, {"a": 30}), Window(60, 0, FAST, {"a": 31}), limits)
    assert good.verdict == "pass", good.reasons
    errors = judge(Window(60, 3, FAST), Window(60, 0, FAST), limits)
    assert errors.verdict == "fail"
    assert "success rate 95.00%" in errors.reasons[0]
    slow = judge(Window(60, 0, [3 * t for t in FAST]), Window(60, 0, FAST), limits)
    assert "slower than the baseline" in slow.reasons[0]
    slightly = judge(Window(60, 0, [1.2 * t for t in FAST]), Window(60, 0, FAST), limits)
    assert slightly.verdict == "pass"  # significant, but under the 1.5x effect size
    late = judge(Window(60, 0, [0.6] * 60), Window(60, 0, [0.6] * 60), limits)
    assert "p99 latency 600.0 ms is over 500 ms" in late.reasons
    shifted = judge(Window(60, 0, FAST, {"a": 30}), Window(60, 0, FAST, {"b": 30}), limits)
    assert "predictions shifted" in shifted.reasons[0]
    quiet = judge(Window(5, 0, FAST[:5]), Window(60, 0, FAST), limits)
    assert quiet.verdict == "wait"


class ScriptedControl:
    """Windows from a script; what the rollout set, in order."""

    name, candidate, baseline = "iris", "v2", "v1"

    def __init__(self, script: list[Window | Exception]) -> None:
        self.script = script
        self.shares: list[int] = []
        self.records: list[tuple[str, dict]] = []
        self.step_begins = False

    def change(self, percent: int, action: str, details: dict) -> None:
        self.shares.append(percent)
        self.records.append((action, details))
        self.step_begins = True

    def windows(self) -> tuple[Window, Window]:
        if self.step_begins or not self.script:  # the read that starts each step: not judged
            self.step_begins = False
            return Window(0, 0, []), Window(0, 0, [])
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item, Window(60, 0, FAST)


def rollout(script: list[Window | Exception]) -> tuple[ScriptedControl, list[tuple[str, dict]]]:
    control = ScriptedControl(script)
    run = Rollout(control, [10, 50, 100], 1.0, Limits(), 2, lambda line: None, lambda s: None)
    run.run()
    return control, control.records


def test_a_passing_candidate_is_promoted() -> None:
    control, records = rollout([Window(60, 0, FAST)] * 4)
    assert control.shares == [10, 50, 100]
    assert [action for action, _ in records] == ["rollout", "rollout", "promote"]


def test_unreadable_figures_stop_the_rollout_where_it_is() -> None:
    control = ScriptedControl(
        [Window(60, 0, FAST), FiguresUnavailable("down"), FiguresUnavailable("down")]
    )
    run = Rollout(control, [10, 50, 100], 1.0, Limits(), 2, lambda line: None, lambda s: None)
    with pytest.raises(AnalysisPaused, match="paused at 50%") as paused:
        run.run()
    assert "figures unavailable, paused: down" in str(paused.value)
    assert control.shares == [10, 50]  # neither promoted nor rolled back blind


def test_too_little_traffic_waits_then_rolls_back() -> None:
    quiet = Window(3, 0, FAST[:3])
    with pytest.raises(ValidationFailed, match="no verdict in 2 intervals"):
        rollout([quiet, quiet])


def test_a_failure_rolls_back_at_once() -> None:
    with pytest.raises(ValidationFailed, match="rolled back to v1 at 50%"):
        rollout([Window(60, 0, FAST), Window(60, 9, FAST)])


def test_steps() -> None:
    assert steps_from(None, None) == [10, 25, 50, 100]
    assert steps_from(None, 5) == [5, 10, 25, 50, 100]
    assert steps_from("20,60", None) == [20, 60, 100]
    for bad in ("50,10", "0,50", "10,150", "ten"):
        with pytest.raises(UsageError):
            steps_from(bad, None)
