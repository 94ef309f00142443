"""Canary analysis: did the candidate do as well as the baseline over the last interval?

The checks and their defaults are Flagger's and Kayenta's:

- **success rate**: the candidate's answers that are not 5xx, at least 99% (Flagger's
  ``request-success-rate`` default);
- **p99 latency**: at most 500 ms (Flagger's ``request-duration`` default);
- **latency against the baseline**: a one-sided Mann-Whitney U test of the candidate's latencies
  against the baseline's, as Kayenta's judge runs it; the candidate fails when it is slower with
  p < 0.05 *and* its median is more than ``max_latency_ratio`` (1.5) times the baseline's, so a
  significant but tiny difference is not called a regression;
- **output shift**: the PSI of its predicted classes against the baseline's, at most 0.2.

An interval in which either side answered fewer than ``min_requests`` gives no verdict: the
rollout waits (and, after ``max_waits`` such intervals, rolls back: it never promotes blind).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from zeroserve.delivery.quality import class_psi
from zeroserve.telemetry.drift import quantile


@dataclass(frozen=True)
class Window:
    """One side's answers over one interval."""

    requests: int
    failures: int  # answered 5xx
    latencies: Sequence[float]  # seconds: every request's, or one figure per scrape step
    outputs: Mapping[str, int] = field(default_factory=dict)  # predicted class -> count
    p99_s: float | None = None  # from a histogram; None: the latencies' own p99


@dataclass(frozen=True)
class Limits:
    """What the candidate must hold every interval."""

    min_success_rate: float = 0.99
    max_p99_s: float = 0.5
    max_latency_ratio: float = 1.5
    significance: float = 0.05
    max_psi: float = 0.2
    min_requests: int = 20


Verdict = Literal["pass", "fail", "wait"]


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reasons: list[str]
    figures: dict[str, Any]


def judge(candidate: Window, baseline: Window, limits: Limits) -> Judgement:
    """The verdict on one interval, with the figures it rests on and why it failed."""
    if min(candidate.requests, baseline.requests) < limits.min_requests:
        reason = (
            f"too few requests to judge: the candidate answered {candidate.requests}, the "
            f"baseline {baseline.requests} (at least {limits.min_requests} each)"
        )
        return Judgement("wait", [reason], {"requests": candidate.requests})
    figures: dict[str, Any] = {"requests": candidate.requests}
    reasons: list[str] = []
    success = 1 - candidate.failures / candidate.requests
    figures["success_rate"] = round(success, 4)
    if success < limits.min_success_rate:
        reasons.append(
            f"success rate {success:.2%} is under {limits.min_success_rate:.2%} "
            f"({candidate.failures} of {candidate.requests} answers were 5xx)"
        )
    reasons += _latency(candidate, baseline, limits, figures)
    if sum(candidate.outputs.values()) >= limits.min_requests <= sum(baseline.outputs.values()):
        psi = class_psi(baseline.outputs, candidate.outputs)
        figures["output_psi"] = round(psi, 4)
        if psi > limits.max_psi:
            reasons.append(f"its predictions shifted: PSI {psi:.3f} over {limits.max_psi}")
    return Judgement("fail" if reasons else "pass", reasons, figures)


def _latency(
    candidate: Window, baseline: Window, limits: Limits, figures: dict[str, Any]
) -> list[str]:
    reasons: list[str] = []
    p99 = candidate.p99_s
    if p99 is None and candidate.latencies:
        p99 = percentile(candidate.latencies, 0.99)
    if p99 is not None:
        figures["p99_ms"] = round(1000 * p99, 3)
        if p99 > limits.max_p99_s:
            reasons.append(
                f"p99 latency {1000 * p99:.1f} ms is over {1000 * limits.max_p99_s:g} ms"
            )
    if not candidate.latencies or not baseline.latencies:
        return reasons
    ratio = statistics.median(candidate.latencies) / max(
        statistics.median(baseline.latencies), 1e-9
    )
    p_value = mann_whitney_greater(candidate.latencies, baseline.latencies)
    figures["median_latency_ratio"] = round(ratio, 3)
    figures["mann_whitney_p"] = p_value
    if p_value < limits.significance and ratio > limits.max_latency_ratio:
        reasons.append(
            f"slower than the baseline: median {ratio:.2f}x the baseline's (over "
            f"{limits.max_latency_ratio:g}x), Mann-Whitney U p = {p_value:.2g}"
        )
    return reasons


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by linear interpolation (numpy's default)."""
    return quantile(sorted(values), q)


def mann_whitney_greater(first: Sequence[float], second: Sequence[float]) -> float:
    """The p-value of a one-sided Mann-Whitney U test that ``first`` tends to be greater than
    ``second``: the normal approximation with tie and continuity corrections, as scipy's
    ``mannwhitneyu(first, second, alternative="greater", method="asymptotic")`` computes it."""
    n1, n2 = len(first), len(second)
    ranked = sorted([(value, 0) for value in first] + [(value, 1) for value in second])
    rank_sum, ties, index = 0.0, 0.0, 0
    while index < len(ranked):
        end = index
        while end + 1 < len(ranked) and ranked[end + 1][0] == ranked[index][0]:
            end += 1
        count = end - index + 1
        average = (index + end) / 2 + 1
        rank_sum += average * sum(1 for _, side in ranked[index : end + 1] if side == 0)
        ties += count**3 - count
        index = end + 1
    u = rank_sum - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2))
