"""The per-model state machine of the local runtime: zero → starting → ready → draining → zero.

``failed`` is entered when a start fails or the last replica dies; the next request starts the
model again once the back-off has passed. Consecutive failures double the back-off (the first
retry is immediate); a request answered successfully resets the count, so only a crash loop
backs off. Pure logic with the time passed in: the activator drives it, tests drive it directly.
"""

from __future__ import annotations

import enum

from zeroserve.errors import LifecycleError

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0


class ModelState(enum.StrEnum):
    ZERO = "zero"
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


def backoff_seconds(failures: int) -> float:
    """Wait before retry number ``failures``: 0 after the first failure, then 1, 2, 4… ≤ 60 s."""
    if failures <= 1:
        return 0.0
    return min(BACKOFF_BASE_S * float(2 ** (failures - 2)), BACKOFF_CAP_S)


class Lifecycle:
    """One model's state, consecutive failures, and when a failed model may start again."""

    def __init__(self, warm: bool = False) -> None:
        self.state = ModelState.ZERO
        self.failures = 0
        self.retry_at = 0.0
        self.last_error: str | None = None
        self.warm = warm  # min_replicas > 0: never drains for idleness

    def _require(self, event: str, *allowed: ModelState) -> None:
        if self.state not in allowed:
            raise LifecycleError(f"'{event}' is not allowed in state '{self.state}'")

    def should_start(self, now: float) -> bool:
        """A request arrived: True when it must trigger a start (and the state is now starting)."""
        if self.state is ModelState.ZERO or (
            self.state is ModelState.FAILED and now >= self.retry_at
        ):
            self.state = ModelState.STARTING
            return True
        return False

    def retry_after(self, now: float) -> float:
        """Seconds until a failed model may start again (0 when it may start now)."""
        return max(self.retry_at - now, 0.0) if self.state is ModelState.FAILED else 0.0

    def ready(self) -> None:
        self._require("ready", ModelState.STARTING)
        self.state = ModelState.READY

    def failed(self, now: float, error: str) -> None:
        """A start failed, or the last replica of a ready model died."""
        self._require("failed", ModelState.STARTING, ModelState.READY)
        self.failures += 1
        self.retry_at = now + backoff_seconds(self.failures)
        self.last_error = error
        self.state = ModelState.FAILED

    def succeeded(self) -> None:
        """A request was answered by the model: it is not crash-looping."""
        self.failures = 0

    def idle(self) -> None:
        """Idle past scale_to_zero_after: stop the workers (in-flight requests finish)."""
        self._require("idle", ModelState.READY)
        if self.warm:
            raise LifecycleError("a model with min_replicas > 0 does not drain for idleness")
        self.state = ModelState.DRAINING

    def shutdown(self) -> None:
        """The server stops: every state with workers drains."""
        if self.state in (ModelState.STARTING, ModelState.READY):
            self.state = ModelState.DRAINING
        elif self.state is ModelState.FAILED:
            self.state = ModelState.ZERO

    def drained(self) -> None:
        self._require("drained", ModelState.DRAINING)
        self.state = ModelState.ZERO
