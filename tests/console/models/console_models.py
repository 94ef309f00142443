"""Predictors for the console's browser tests."""

from __future__ import annotations

import time

from zeroserve import Batching, predictor


@predictor(
    name="slow-start",
    cpu=None,
    memory=None,
    scale_to_zero_after=300.0,
    batching=Batching(max_batch_size=8, max_latency_ms=2),
)
class SlowStart:
    """Takes a second to load, so a page polling twice a second sees it starting."""

    def load(self) -> None:
        time.sleep(1.0)

    def predict(self, instances: list[float]) -> list[float]:
        return [value * 2 for value in instances]


@predictor(name="refuses", cpu=None, memory=None)
class Refuses:
    """Its load() fails with markup in the message: the page must show it as text."""

    def load(self) -> None:
        raise RuntimeError('weights missing <img src=x onerror="window.injected=1"><b>bold</b>')

    def predict(self, instances: list[float]) -> list[float]:
        return instances
