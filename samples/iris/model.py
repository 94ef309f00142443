"""The iris sample: a typed @predictor around a scikit-learn classifier.

Train it first (python samples/iris/train.py), then: zeroserve serve samples/iris/model.py
serves it as `iris`, and as `iris-batched` with adaptive batching.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import joblib
from pydantic import Field

from zeroserve import Batching, predictor

# One iris flower: sepal length, sepal width, petal length, petal width (cm).
Flower = Annotated[list[float], Field(min_length=4, max_length=4)]


@predictor(name="iris", max_replicas=2, cpu="500m", memory="512Mi")
class Iris:
    """Predicts the iris species (0 setosa, 1 versicolor, 2 virginica) of each flower."""

    def load(self, model_dir: Path) -> None:
        model_file = model_dir / "model.joblib"
        if not model_file.exists():
            raise FileNotFoundError(f"{model_file} is missing; run python samples/iris/train.py")
        self.classifier = joblib.load(model_file)

    def predict(self, instances: list[Flower]) -> list[int]:
        return [int(label) for label in self.classifier.predict(instances)]


@predictor(
    name="iris-batched",
    max_replicas=2,
    concurrency=32,
    batching=Batching(max_batch_size=32, max_latency_ms=5),
)
class IrisBatched(Iris):
    """The same model with adaptive batching: concurrent requests share one predict() call."""
