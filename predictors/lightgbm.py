"""LightGBM boosters saved as text (``save_model``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zeroserve.predictors.tabular import TabularPredictor, class_labels, two_columns


class LightGBMPredictor(TabularPredictor):
    """A booster's predictions; a classifier's labels from its probabilities."""

    preimport_modules = ("lightgbm",)
    threads = 1  # OpenMP threads per call, as for XGBoost

    def read(self, path: Path) -> None:
        import lightgbm

        self.booster = lightgbm.Booster(model_file=str(path))
        header = _header(path)
        self.objective = header.get("objective", "regression").split(" ")[0]
        self.n_features = self.booster.num_feature()
        names = self.booster.feature_name()
        unnamed = names == [f"Column_{i}" for i in range(len(names))]
        self.feature_names = None if unnamed else names
        if self.objective in ("binary", "multiclass", "multiclassova"):
            self.classes = list(range(max(int(header.get("num_class", "1")), 2)))

    def labels(self, rows: np.ndarray) -> Any:
        raw = np.asarray(self.booster.predict(rows, num_threads=self.threads))
        return raw if self.classes is None else class_labels(raw, self.classes)

    def probabilities(self, rows: np.ndarray) -> Any:
        return two_columns(np.asarray(self.booster.predict(rows, num_threads=self.threads)))


def _header(path: Path) -> dict[str, str]:
    """``key=value`` lines before the first tree of a LightGBM text model."""
    fields = {}
    with path.open() as text:
        for line in text:
            if line.startswith("Tree="):
                break
            key, equals, value = line.strip().partition("=")
            if equals:
                fields[key] = value
    return fields
