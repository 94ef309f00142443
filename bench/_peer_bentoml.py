"""A peer of ``bench.peers``: the iris model as BentoML's docs write a service.

One worker, no batching (``@bentoml.api`` without ``batchable``). The model folder comes from
``IRIS_MODEL_DIR``. Run with BentoML's environment:
IRIS_MODEL_DIR=DIR bentoml serve bench._peer_bentoml:Iris --port PORT
"""

from __future__ import annotations

import os
from pathlib import Path

import bentoml
import joblib


@bentoml.service(workers=1)
class Iris:
    def __init__(self) -> None:
        self.classifier = joblib.load(Path(os.environ["IRIS_MODEL_DIR"]) / "model.joblib")

    @bentoml.api
    def predict(self, instances: list[list[float]]) -> dict[str, list[int]]:
        return {"predictions": [int(label) for label in self.classifier.predict(instances)]}
