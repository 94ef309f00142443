"""Held-out quality, thresholds and prediction shift for ``zeroserve validate``.

Metrics per task: accuracy and macro F1 for a classifier; RMSE and MAE for a regressor.
Thresholds are MLflow's ``MetricThreshold``: an absolute ``threshold`` the candidate must reach,
and a ``min_absolute_change`` / ``min_relative_change`` it must keep against the baseline, in the
metric's better direction (a negative change allows that much regression). Shift compares the
candidate's predictions with the baseline's on the same rows: the population stability index
(PSI; bins are the classes, or the baseline's deciles for numbers) and, for classes, a
chi-squared test of the two label counts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GREATER_IS_BETTER = {"accuracy": True, "f1_macro": True, "rmse": False, "mae": False}
PRIMARY = {"classification": "accuracy", "regression": "rmse"}
PSI_FLOOR = 1e-4  # an empty bin's share, so the log stays finite (as the usual PSI tables do)


@dataclass(frozen=True)
class MetricThreshold:
    """MLflow's ``MetricThreshold`` for one metric (``None``: not checked)."""

    metric: str
    threshold: float | None = None
    min_absolute_change: float | None = None
    min_relative_change: float | None = None

    @property
    def greater_is_better(self) -> bool:
        return GREATER_IS_BETTER[self.metric]

    def failures(self, candidate: float, baseline: float | None) -> list[str]:
        """Why ``candidate`` (and its change from ``baseline``) misses this threshold."""
        sign = 1.0 if self.greater_is_better else -1.0
        better = "at least" if self.greater_is_better else "at most"
        failed = []
        if self.threshold is not None and sign * (candidate - self.threshold) < 0:
            failed.append(f"{self.metric} {candidate:.4g} is not {better} {self.threshold:g}")
        if baseline is None:
            return failed
        change = sign * (candidate - baseline)
        if self.min_absolute_change is not None and change < self.min_absolute_change:
            failed.append(
                f"{self.metric} {candidate:.4g} vs the baseline's {baseline:.4g}: a change of "
                f"{change:+.4g}, under the allowed {self.min_absolute_change:+g}"
            )
        relative = change / abs(baseline) if baseline else 0.0
        if self.min_relative_change is not None and relative < self.min_relative_change:
            failed.append(
                f"{self.metric} {candidate:.4g} vs the baseline's {baseline:.4g}: a relative "
                f"change of {relative:+.2%}, under the allowed {self.min_relative_change:+.2%}"
            )
        return failed


def task_of(labels: Sequence[Any]) -> str:
    """``classification`` for labels that are strings, booleans or few whole numbers."""
    if all(isinstance(label, str | bool) for label in labels):
        return "classification"
    whole = all(float(label).is_integer() for label in labels)
    return "classification" if whole and len(set(labels)) <= 50 else "regression"


def metrics(task: str, labels: Sequence[Any], predicted: Sequence[Any]) -> dict[str, float]:
    """The task's metrics for ``predicted`` against ``labels``."""
    if task == "classification":
        truth, guess = [_label(v) for v in labels], [_label(v) for v in predicted]
        accuracy = sum(t == g for t, g in zip(truth, guess, strict=True)) / len(truth)
        return {"accuracy": accuracy, "f1_macro": _f1_macro(truth, guess)}
    errors = [float(p) - float(t) for t, p in zip(labels, predicted, strict=True)]
    return {
        "rmse": math.sqrt(sum(e * e for e in errors) / len(errors)),
        "mae": sum(abs(e) for e in errors) / len(errors),
    }


def _label(value: Any) -> Any:
    """1, 1.0 and True-as-label compare as one class; strings as themselves."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _f1_macro(truth: list[Any], guess: list[Any]) -> float:
    scores = []
    for label in set(truth) | set(guess):
        hit = sum(t == g == label for t, g in zip(truth, guess, strict=True))
        claimed, actual = guess.count(label), truth.count(label)
        precision = hit / claimed if claimed else 0.0
        recall = hit / actual if actual else 0.0
        both = precision + recall
        scores.append(2 * precision * recall / both if both else 0.0)
    return sum(scores) / len(scores)


def shift(task: str, baseline: Sequence[Any], candidate: Sequence[Any]) -> dict[str, float]:
    """PSI of the candidate's predictions against the baseline's (and chi-squared for classes)."""
    if task == "classification":
        old, new = Counter(map(_label, baseline)), Counter(map(_label, candidate))
        classes = sorted(set(old) | set(new), key=repr)
        result = {"psi": class_psi(old, new)}
        if len(classes) > 1:
            statistic = _chi2_statistic([old[c] for c in classes], [new[c] for c in classes])
            result["chi2"] = statistic
            result["chi2_p_value"] = chi2_survival(statistic, len(classes) - 1)
        return result
    edges = _deciles([float(v) for v in baseline])
    return {"psi": _psi(_binned(baseline, edges), _binned(candidate, edges))}


def class_psi(baseline: Mapping[Any, int], candidate: Mapping[Any, int]) -> float:
    """PSI of two counts of predicted classes."""
    classes = sorted(set(baseline) | set(candidate), key=repr)
    return _psi([baseline.get(c, 0) for c in classes], [candidate.get(c, 0) for c in classes])


def _deciles(values: list[float]) -> list[float]:
    ordered = sorted(values)
    return sorted({ordered[int(len(ordered) * q / 10)] for q in range(1, 10)})


def _binned(values: Sequence[Any], edges: list[float]) -> list[int]:
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[sum(float(value) > edge for edge in edges)] += 1
    return counts


def _psi(expected: list[int], actual: list[int]) -> float:
    total_expected, total_actual = sum(expected) or 1, sum(actual) or 1
    psi = 0.0
    for e, a in zip(expected, actual, strict=True):
        share_e = max(e / total_expected, PSI_FLOOR)
        share_a = max(a / total_actual, PSI_FLOOR)
        psi += (share_a - share_e) * math.log(share_a / share_e)
    return psi


def _chi2_statistic(first: list[int], second: list[int]) -> float:
    """Pearson's chi-squared of a 2 x k table of counts (the test of homogeneity)."""
    total = sum(first) + sum(second)
    statistic = 0.0
    for row in (first, second):
        for column, observed in enumerate(row):
            expected = sum(row) * (first[column] + second[column]) / total
            if expected:
                statistic += (observed - expected) ** 2 / expected
    return statistic


def chi2_survival(statistic: float, freedom: int) -> float:
    """P(X >= statistic) for X chi-squared with ``freedom`` degrees: the regularized upper
    incomplete gamma Q(freedom/2, statistic/2), by its series below a + 1 and its continued
    fraction above (Numerical Recipes, 6.2)."""
    a, x = freedom / 2.0, statistic / 2.0
    if x <= 0:
        return 1.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        for n in range(1, 500):
            term *= x / (a + n)
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    b, c, d = x + 1.0 - a, 1.0 / 1e-300, 1.0 / (x + 1.0 - a)
    h = d
    for n in range(1, 500):
        an = -n * (n - a)
        b += 2.0
        d = an * d + b
        d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
        c = b + an / c
        c = c if abs(c) > 1e-300 else 1e-300
        h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return min(1.0, math.exp(log_front) * h)
