"""The vLLM predictor's corners that need no engine: readiness follows the engine's health.

The predictor against real vLLM is tests/llm (tox -e llm)."""

from __future__ import annotations

import asyncio

from zeroserve.predictors.vllm import VLLMPredictor


class _Engine:
    def __init__(self, dead: bool) -> None:
        self.dead = dead

    async def check_health(self) -> None:
        if self.dead:
            raise RuntimeError("EngineCore died")


def test_readiness_follows_the_engine() -> None:
    predictor = VLLMPredictor()
    assert asyncio.run(predictor.healthy()) is False  # not started
    predictor.engine = _Engine(dead=False)
    assert asyncio.run(predictor.healthy()) is True
    predictor.engine = _Engine(dead=True)
    assert asyncio.run(predictor.healthy()) is False


def test_a_models_readiness_asks_the_users_healthy() -> None:
    from zeroserve import predictor
    from zeroserve.serving.kserve_model import PredictorModel
    from zeroserve.serving.runner import PredictorRunner
    from zeroserve.spec.decorator import declaration_of

    class Flaky:
        alive = True

        async def healthy(self) -> bool:
            return self.alive

        def predict(self, instances: list[str]) -> list[str]:
            return instances

    declared = declaration_of(predictor(name="flaky")(Flaky))
    assert declared is not None
    model = PredictorModel(PredictorRunner(Flaky, declared, None))
    assert asyncio.run(model.healthy()) is False  # not loaded yet
    asyncio.run(model.load_in_server())
    assert asyncio.run(model.healthy()) is True
    model.instance.alive = False
    assert asyncio.run(model.healthy()) is False
