"""Predictors for the Ray engine tests: each answers with the Ray node it ran on."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import ray
from pydantic import Field

from zeroserve import predictor

Flower = Annotated[list[float], Field(min_length=4, max_length=4)]


def this_node() -> str:
    return str(ray.get_runtime_context().get_node_id())


@predictor(name="echo", cpu=None, memory=None, scale_to_zero_after=2.0, max_replicas=1)
class Echo:
    """Sums each flower: the bad-input cases use its schema."""

    def predict(self, instances: list[Flower]) -> list[float]:
        return [sum(flower) for flower in instances]


@predictor(name="pinned", cpu=None, memory=None)
class Pinned:
    """Needs the custom resource only the worker node has (given with --ray-resource)."""

    def predict(self, instances: list[float]) -> list[str]:
        return [this_node() for _ in instances]


@predictor(
    name="spread",
    model_uri=os.environ["ZEROSERVE_TEST_SPREAD_WEIGHTS"],  # s3://... on the tests' moto
    cpu="1",
    memory=None,
    max_replicas=2,
    concurrency=1,
    scale_to_zero_after=60.0,
)
class Spread:
    """One CPU per replica (each node has one): a second replica must go to the other node.
    Its weights come from S3 through the cold-start cache. Sleeps the first instance's seconds."""

    def load(self, model_dir: Path) -> None:
        self.weights = (model_dir / "weights.txt").read_text()

    async def predict(self, instances: list[float]) -> list[str]:
        assert self.weights == "spread-weights-v1"
        await asyncio.sleep(instances[0])
        return [this_node() for _ in instances]
