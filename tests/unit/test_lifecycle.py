"""The per-model state machine, driven by Hypothesis through random event sequences."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from zeroserve.local.lifecycle import (
    BACKOFF_CAP_S,
    Lifecycle,
    LifecycleError,
    ModelState,
    backoff_seconds,
)


def test_backoff_doubles_from_an_immediate_first_retry_to_a_cap() -> None:
    assert [backoff_seconds(n) for n in range(1, 6)] == [0.0, 1.0, 2.0, 4.0, 8.0]
    assert backoff_seconds(50) == BACKOFF_CAP_S


def test_a_warm_model_never_drains_for_idleness() -> None:
    lifecycle = Lifecycle(warm=True)
    assert lifecycle.should_start(0.0)
    lifecycle.ready()
    with pytest.raises(LifecycleError):
        lifecycle.idle()
    assert lifecycle.state is ModelState.READY


class LifecycleMachine(RuleBasedStateMachine):
    """Every event in every state: allowed ones move as documented, others raise and change
    nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.lifecycle = Lifecycle()
        self.now = 0.0
        self.failures = 0

    @rule(seconds=st.floats(min_value=0, max_value=100))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def request(self) -> None:
        before = self.lifecycle.state
        due = before is ModelState.FAILED and self.now >= self.lifecycle.retry_at
        started = self.lifecycle.should_start(self.now)
        assert started == (before is ModelState.ZERO or due)
        assert self.lifecycle.state is (ModelState.STARTING if started else before)

    @rule()
    def ready(self) -> None:
        self._expect("ready", ModelState.STARTING, ModelState.READY)

    @rule()
    def failed(self) -> None:
        before = self.lifecycle.state
        if before in (ModelState.STARTING, ModelState.READY):
            self.lifecycle.failed(self.now, "boom")
            self.failures += 1
            assert self.lifecycle.state is ModelState.FAILED
            assert self.lifecycle.retry_at == self.now + backoff_seconds(self.failures)
        else:
            with pytest.raises(LifecycleError):
                self.lifecycle.failed(self.now, "boom")
            assert self.lifecycle.state is before

    @rule()
    def succeeded(self) -> None:
        self.lifecycle.succeeded()
        self.failures = 0

    @rule()
    def idle(self) -> None:
        self._expect("idle", ModelState.READY, ModelState.DRAINING)

    @rule()
    def drained(self) -> None:
        self._expect("drained", ModelState.DRAINING, ModelState.ZERO)

    @precondition(lambda self: self.lifecycle.state is not ModelState.DRAINING)
    @rule()
    def shutdown(self) -> None:
        before = self.lifecycle.state
        self.lifecycle.shutdown()
        expected = {
            ModelState.STARTING: ModelState.DRAINING,
            ModelState.READY: ModelState.DRAINING,
            ModelState.FAILED: ModelState.ZERO,
            ModelState.ZERO: ModelState.ZERO,
        }[before]
        assert self.lifecycle.state is expected

    def _expect(self, event: str, allowed: ModelState, after: ModelState) -> None:
        before = self.lifecycle.state
        if before is allowed:
            getattr(self.lifecycle, event)()
            assert self.lifecycle.state is after
        else:
            with pytest.raises(LifecycleError):
                getattr(self.lifecycle, event)()
            assert self.lifecycle.state is before

    @invariant()
    def failures_are_counted(self) -> None:
        assert self.lifecycle.failures == self.failures

    @invariant()
    def only_a_failed_model_waits(self) -> None:
        wait = self.lifecycle.retry_after(self.now)
        assert 0 <= wait <= BACKOFF_CAP_S
        if self.lifecycle.state is not ModelState.FAILED:
            assert wait == 0


LifecycleMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
test_lifecycle_state_machine = LifecycleMachine.TestCase
