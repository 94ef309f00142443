"""An analysed rollout: step the candidate's share of traffic while the analysis holds.

Every ``interval`` the last interval's figures of both sides are judged (``analysis.judge``):
a pass moves the candidate to the next step (10 -> 25 -> 50 -> 100 by default), a failure
sends all traffic back to the baseline at once, so a bad candidate is rolled back within one
interval of its step. Too little traffic to judge waits at the step, and after ``max_waits``
such intervals rolls back. Figures that cannot be read (the server or Prometheus unreachable)
wait too, saying so, and after ``max_waits`` of them the rollout stops where it is
(``AnalysisPaused``): it never steps, promotes or rolls back on figures it does not have.
Every change is recorded with the figures it rests on, by the control that makes it.

Where the traffic is split and where the figures come from is a ``TrafficControl``: the local
activator's split (``LocalSplit``: its own counters over HTTP), or an InferenceService's canary
judged on its pods' metrics in Prometheus (``zeroserve.cli.rollout``).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from zeroserve.delivery.analysis import Judgement, Limits, Window, judge
from zeroserve.delivery.history import append, record
from zeroserve.errors import AnalysisPaused, UsageError, ValidationFailed

DEFAULT_STEPS = (10, 25, 50, 100)


class FiguresUnavailable(Exception):
    """The figures of an interval could not be read; the rollout pauses."""


class TrafficControl(Protocol):
    name: str
    candidate: str
    baseline: str

    def change(self, percent: int, action: str, details: dict[str, Any]) -> None:
        """Give the candidate ``percent`` of the traffic, the baseline the rest, and record it
        as ``action`` (rollout, promote, rollback) with ``details``."""

    def windows(self) -> tuple[Window, Window]:
        """The candidate's and the baseline's figures since the last call."""


@dataclass
class Rollout:
    """The steps, the limits, and where each decision is told (``say``: a line for the user)."""

    control: TrafficControl
    steps: list[int]
    interval_s: float
    limits: Limits
    max_waits: int = 3
    say: Callable[[str], None] = print
    sleep: Callable[[float], None] = time.sleep
    judgements: list[dict[str, Any]] = field(default_factory=list)

    def run(self) -> None:
        """Step to 100% and promote, or roll back and raise ``ValidationFailed``."""
        control = self.control
        for percent in self.steps:
            if percent == 100:
                control.change(100, "promote", {"analysis": self.judgements[-3:]})
                self.say(f"{control.name}: {control.candidate} promoted (100% of traffic)")
                return
            control.change(percent, "rollout", {"analysis": self.judgements[-1:]})
            self.say(f"{control.name}: {control.candidate} gets {percent}% of traffic")
            self._hold(percent)

    def _hold(self, percent: int) -> None:
        """Judge interval after interval at this step until one passes; roll back on a fail."""
        control, waits = self.control, 0
        with contextlib.suppress(FiguresUnavailable):
            control.windows()  # what came before this step is not this step's to judge
        while True:
            self.sleep(self.interval_s)
            try:
                judgement = judge(*control.windows(), self.limits)
            except FiguresUnavailable as exc:
                reason = f"figures unavailable, paused: {exc}"
                judgement = Judgement("wait", [reason], {"unavailable": True})
            self.judgements.append(
                {"canary": percent, "verdict": judgement.verdict, **judgement.figures}
            )
            self.say(f"  at {percent}%: {judgement.verdict} {_figures(judgement)}")
            if judgement.verdict == "pass":
                return
            if judgement.verdict == "wait":
                waits += 1
                self.say(f"  waiting ({waits}/{self.max_waits}): {'; '.join(judgement.reasons)}")
                if waits < self.max_waits:
                    continue
                if judgement.figures.get("unavailable"):
                    raise AnalysisPaused(
                        f"{control.name}: paused at {percent}% for {control.candidate}, the split "
                        f"left as it is: {judgement.reasons[0]}; resume with --canary {percent} "
                        "--analyze once the figures can be read, or roll back"
                    )
            self._roll_back(percent, judgement)

    def _roll_back(self, percent: int, judgement: Judgement) -> None:
        control = self.control
        reasons = judgement.reasons
        if judgement.verdict == "wait":
            reasons = [f"no verdict in {self.max_waits} intervals ({'; '.join(reasons)})"]
        details = {"reasons": reasons, "analysis": self.judgements[-1:]}
        try:
            control.change(0, "rollback", details)
        except FiguresUnavailable as exc:
            reasons = [*reasons, f"and the rollback itself failed: {exc}"]
        raise ValidationFailed(
            f"{control.name}: rolled back to {control.baseline} at {percent}%: "
            + "; ".join(reasons)
        )


def _figures(judgement: Judgement) -> str:
    return " ".join(f"{key}={value}" for key, value in judgement.figures.items())


def steps_from(text: str | None, first: int | None) -> list[int]:
    """``10,25,50,100`` (or the defaults) as a rising list ending at 100; ``first`` replaces
    the steps below it."""
    try:
        steps = [int(part) for part in text.split(",")] if text else list(DEFAULT_STEPS)
    except ValueError:
        raise UsageError(f"--steps {text!r}: write rising percents, e.g. 10,25,50,100") from None
    if first is not None:
        steps = [first, *(step for step in steps if step > first)]
    if steps != sorted(set(steps)) or steps[0] <= 0 or steps[-1] > 100:
        raise UsageError(f"--steps {text!r}: write rising percents from 1 to 100, e.g. 10,25,50")
    return steps if steps[-1] == 100 else [*steps, 100]


class LocalSplit:
    """A split of the local activator (``zeroserve serve --split``), through its admin route."""

    def __init__(self, url: str, name: str, candidate: str | None) -> None:
        self.name = name
        self.endpoint = f"{url.rstrip('/')}/zeroserve/splits/{name}"
        self.http = httpx.Client(timeout=10)
        found = self._get(0)
        labels = list(found["versions"])
        if len(labels) != 2:
            raise UsageError(
                f"'{name}' has {len(labels)} weighted versions ({', '.join(labels)}); an analysed "
                "rollout moves traffic between two"
            )
        if candidate is None:  # the one with less traffic now
            candidate = min(labels, key=lambda label: found["versions"][label]["weight"])
        if candidate not in labels:
            raise UsageError(f"--candidate {candidate}: '{name}' has versions {labels}")
        self.candidate = candidate
        self.baseline = next(label for label in labels if label != candidate)
        self.mark = found["numbered"]
        self.outputs = {label: Counter(found["versions"][label]["outputs"]) for label in labels}

    def _get(self, since: int) -> dict[str, Any]:
        try:
            response = self.http.get(self.endpoint, params={"since": since})
        except httpx.TransportError as exc:
            raise FiguresUnavailable(f"{self.endpoint}: {exc}") from None
        if response.status_code == 404:
            raise UsageError(f"{self.endpoint}: {response.json().get('error', response.text)}")
        if response.status_code != 200:
            raise FiguresUnavailable(f"{self.endpoint} answered {response.status_code}")
        found: dict[str, Any] = response.json()
        return found

    def change(self, percent: int, action: str, details: dict[str, Any]) -> None:
        """Set the split's weights, then append the record to the local history."""
        weights = {self.candidate: percent, self.baseline: 100 - percent}
        try:
            response = self.http.put(self.endpoint, json={"weights": weights})
        except httpx.TransportError as exc:
            raise FiguresUnavailable(f"{self.endpoint}: {exc}") from None
        if response.status_code != 200:
            raise UsageError(f"{self.endpoint}: {response.text}")
        where = {"where": self.endpoint, "candidate": self.candidate, "baseline": self.baseline}
        append(record(action, self.name, canary=percent, **where, **details))

    def windows(self) -> tuple[Window, Window]:
        found = self._get(self.mark)
        self.mark = found["numbered"]
        return self._window(found, self.candidate), self._window(found, self.baseline)

    def _window(self, found: dict[str, Any], label: str) -> Window:
        version = found["versions"][label]
        statuses, seconds = version["recent"]["status"], version["recent"]["seconds"]
        outputs = Counter(version["outputs"])
        new_outputs = outputs - self.outputs[label]
        self.outputs[label] = outputs
        failures = sum(1 for status in statuses if status >= 500)
        return Window(len(statuses), failures, seconds, dict(new_outputs))
