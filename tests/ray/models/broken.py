"""A predictor whose load() fails: Ray Serve gives up on its replicas."""

from __future__ import annotations

from pathlib import Path

from zeroserve import predictor


@predictor(name="broken", cpu=None, memory=None)
class Broken:
    def load(self, model_dir: Path) -> None:
        raise FileNotFoundError("weights.bin is missing from the model folder")

    def predict(self, instances: list[float]) -> list[float]:
        return instances
