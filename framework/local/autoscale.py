"""Knative's KPA rule on one machine: replicas from in-flight concurrency over a stable window.

desired = ceil(average concurrency over the stable window / (target × utilization)); when the
panic window (10% of the stable one) sees twice the current capacity, scale up on the panic
average and do not scale down until a whole stable window passes without panic. Scale-down is
limited to halving per decision (Knative's ``max-scale-down-rate`` 2). Scale to zero is the
activator's idle timer, not this rule. Time is passed in so tests control it.
"""

from __future__ import annotations

import math
from collections import deque

TARGET_UTILIZATION = 0.7  # Knative's container-concurrency-target-percentage default
PANIC_WINDOW_FRACTION = 0.1  # panic-window-percentage 10
PANIC_THRESHOLD = 2.0  # panic-threshold-percentage 200
MAX_SCALE_DOWN_RATE = 2.0


class ConcurrencyWindow:
    """Time-weighted average of requests in flight, kept in buckets over the stable window."""

    def __init__(self, stable_window_s: float, now: float) -> None:
        self.stable_window_s = stable_window_s
        self.buckets: deque[tuple[float, float]] = deque()  # (end time, average)
        self._bucket_start = now
        self._last_change = now
        self._area = 0.0
        self._current = 0

    def observe(self, now: float, in_flight: int) -> None:
        """The number of requests in flight changed to ``in_flight`` at ``now``."""
        self._area += self._current * (now - self._last_change)
        self._last_change = now
        self._current = in_flight

    def close_bucket(self, now: float) -> None:
        """End the current bucket (call once per autoscaler tick)."""
        self.observe(now, self._current)
        span = now - self._bucket_start
        if span > 0:
            self.buckets.append((now, self._area / span))
        self._bucket_start = now
        self._area = 0.0
        while self.buckets and self.buckets[0][0] < now - self.stable_window_s:
            self.buckets.popleft()

    def average(self, now: float, window_s: float) -> float:
        recent = [value for end, value in self.buckets if end >= now - window_s]
        if not recent:
            return float(self._current)
        return sum(recent) / len(recent)


class Autoscaler:
    """Decides how many replicas a model should run (between its min and max)."""

    def __init__(
        self,
        target: int,
        min_replicas: int,
        max_replicas: int,
        stable_window_s: float,
        now: float,
    ) -> None:
        self.target = max(target * TARGET_UTILIZATION, 0.01)
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.window = ConcurrencyWindow(stable_window_s, now)
        self.panic_until = -math.inf

    def desired(self, now: float, current: int) -> int:
        """Replicas wanted now, given ``current`` running (at least 1: zero is the idle timer's)."""
        stable_s = self.window.stable_window_s
        stable = math.ceil(self.window.average(now, stable_s) / self.target)
        panic = math.ceil(self.window.average(now, stable_s * PANIC_WINDOW_FRACTION) / self.target)
        if current > 0 and panic >= PANIC_THRESHOLD * current:
            self.panic_until = now + stable_s
        if now < self.panic_until:
            wanted = max(current, panic)
        else:
            wanted = max(stable, math.ceil(current / MAX_SCALE_DOWN_RATE))
        return min(max(wanted, self.min_replicas, 1), self.max_replicas)
