"""Every sample runs: train it with its own script, then load and call it like the server does."""

from __future__ import annotations

from pathlib import Path

import pytest
from sklearn.datasets import load_iris

from zeroserve.serving.loader import find_predictors


@pytest.mark.timeout(120)
def test_iris_sample_trains_loads_and_predicts(iris_dir: Path) -> None:
    found, batched = find_predictors(str(iris_dir / "model.py"))
    assert (found.name, batched.name) == ("iris", "iris-batched")
    assert batched.declaration.spec.batching is not None
    model = found.cls()
    model.load(iris_dir)
    features, labels = load_iris(return_X_y=True)
    predictions = model.predict(features.tolist())
    accuracy = sum(int(p == t) for p, t in zip(predictions, labels, strict=True)) / len(labels)
    assert accuracy > 0.9


def test_iris_load_says_how_to_train_when_the_model_is_missing(tmp_path: Path) -> None:
    found = find_predictors(str(Path(__file__).parents[2] / "samples" / "iris" / "model.py"))[0]
    with pytest.raises(FileNotFoundError, match="run python samples/iris/train.py"):
        found.cls().load(tmp_path)
