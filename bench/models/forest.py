"""The batching benchmark's model: a 100-tree random forest, served unbatched and batched.

Each predict() call walks all 100 trees once, about 10 ms here whatever the batch holds, and each
instance adds about 0.02 ms: a fixed cost per call plus a small cost per instance, the shape
batching amortizes (the same shape as a GPU kernel launch or a framework's dispatch).
"""

from __future__ import annotations

from pathlib import Path

import joblib

from zeroserve import Batching, predictor

MAX_LATENCY_MS = 5


@predictor(name="forest")
class Forest:
    def load(self, model_dir: Path) -> None:
        self.forest = joblib.load(model_dir / "forest.joblib")

    def predict(self, instances: list[list[float]]) -> list[int]:
        return [int(label) for label in self.forest.predict(instances)]


@predictor(
    name="forest-batched",
    batching=Batching(max_batch_size=32, max_latency_ms=MAX_LATENCY_MS),
)
class ForestBatched(Forest):
    """The same forest; concurrent requests share one predict() call."""


def train(destination: Path) -> None:
    """Fit the forest on the iris data set and save it as forest.joblib."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    features, labels = load_iris(return_X_y=True)
    forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(features, labels)
    joblib.dump(forest, destination / "forest.joblib")
