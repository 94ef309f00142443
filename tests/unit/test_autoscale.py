"""Knative's KPA rule with a controlled clock."""

from __future__ import annotations

from zeroserve.local.autoscale import Autoscaler, ConcurrencyWindow


def drive(scaler: Autoscaler, start: float, seconds: int, in_flight: int, current: int) -> int:
    """Hold ``in_flight`` for ``seconds`` one-second ticks; return the last decision."""
    desired = current
    for second in range(seconds):
        now = start + second + 1
        scaler.window.observe(now - 1, in_flight)
        scaler.window.close_bucket(now)
        desired = scaler.desired(now, current)
    return desired


def test_window_average_is_time_weighted() -> None:
    window = ConcurrencyWindow(10, now=0.0)
    window.observe(0.0, 4)
    window.observe(0.5, 0)  # 4 in flight for half of the bucket
    window.close_bucket(1.0)
    assert window.average(1.0, 10) == 2.0


def test_steady_load_asks_for_load_over_target_times_utilization() -> None:
    scaler = Autoscaler(target=10, min_replicas=0, max_replicas=10, stable_window_s=6, now=0)
    # 14 in flight against 10 x 0.7 = 7 per replica: 2 replicas, no panic at 2 running
    assert drive(scaler, 0, 12, in_flight=14, current=2) == 2


def test_a_burst_panics_up_to_max_and_does_not_scale_down_in_panic() -> None:
    scaler = Autoscaler(target=1, min_replicas=0, max_replicas=3, stable_window_s=10, now=0)
    assert drive(scaler, 0, 1, in_flight=8, current=1) == 3
    # load stops, but within the stable window after the panic the count holds
    assert drive(scaler, 1, 3, in_flight=0, current=3) == 3


def test_idle_scales_in_by_at_most_half_per_decision_and_never_below_one() -> None:
    scaler = Autoscaler(target=1, min_replicas=0, max_replicas=8, stable_window_s=4, now=0)
    assert drive(scaler, 0, 6, in_flight=0, current=8) == 4
    assert drive(scaler, 6, 1, in_flight=0, current=4) == 2
    assert drive(scaler, 7, 1, in_flight=0, current=1) == 1


def test_min_replicas_is_a_floor() -> None:
    scaler = Autoscaler(target=5, min_replicas=2, max_replicas=4, stable_window_s=4, now=0)
    assert drive(scaler, 0, 6, in_flight=0, current=2) == 2
