"""A plain ``def predict`` moves to a thread only when it held the event loop itself."""

from __future__ import annotations

import asyncio
import time

import pytest

from zeroserve import predictor
from zeroserve.serving.runner import (
    OFFLOAD_AFTER_S,
    PROBE_CALLS,
    PredictorRunner,
    held_the_loop,
)
from zeroserve.spec.decorator import declaration_of

CALLS = 4 * (1 + PROBE_CALLS)  # four rounds of a long call and its measured followers


@pytest.mark.parametrize(
    ("elapsed", "cpu", "waited", "held"),
    [
        (0.001, 0.001, False, False),  # fast
        (0.050, 0.045, False, True),  # its own computation
        (0.050, 0.001, True, True),  # it waited: I/O, sleep, a lock
        (0.050, 0.001, False, False),  # descheduled by other processes on a busy machine
        (0.050, 0.021, False, True),
    ],
)
def test_what_counts_as_holding_the_loop(
    elapsed: float, cpu: float, waited: bool, held: bool
) -> None:
    assert held_the_loop(elapsed, cpu, waited=waited) is held


def _model(delay: float) -> PredictorRunner:
    class Sleepy:
        def predict(self, instances: list[int]) -> list[int]:
            time.sleep(delay)
            return instances

    declared = declaration_of(predictor(name="sleepy")(Sleepy))
    assert declared is not None
    return PredictorRunner(Sleepy, declared, None)


@pytest.mark.parametrize(("delay", "offloaded"), [(0.0, False), (2 * OFFLOAD_AFTER_S, True)])
def test_a_predict_that_blocks_moves_to_a_thread(delay: float, offloaded: bool) -> None:
    model = _model(delay)

    async def calls() -> None:
        # one runs long and the next are measured; on a busy machine some measured calls are
        # preempted and do not count, so a blocking predict may take a few rounds to be seen
        for _ in range(CALLS):
            assert await model.predict_v1({"instances": [1]}) == [1]
            if model.offload_predict:
                return

    asyncio.run(calls())
    assert model.offload_predict is offloaded


def test_one_long_call_among_fast_ones_keeps_predict_inline() -> None:
    model = _model(0.0)
    delays = iter([2 * OFFLOAD_AFTER_S] + [0.0] * 10)
    predict = model.instance.predict

    def sometimes_slow(instances: list[int]) -> list[int]:
        time.sleep(next(delays))
        return list(predict(instances))

    model.instance.predict = sometimes_slow

    async def calls() -> None:
        for _ in range(10):
            await model.predict_v1({"instances": [1]})

    asyncio.run(calls())
    assert model.offload_predict is False
    assert model.slow_calls == 0
