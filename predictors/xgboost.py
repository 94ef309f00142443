"""XGBoost boosters saved with ``save_model`` (JSON or UBJSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from zeroserve.predictors.tabular import TabularPredictor, class_labels, two_columns

CLASSIFYING = ("binary:", "multi:")


class XGBoostPredictor(TabularPredictor):
    """A booster's predictions; a classifier's labels from its probabilities."""

    dtype = np.float32
    preimport_modules = ("xgboost",)
    threads = 1  # OpenMP threads per call: batching shares calls; spinning threads would not

    def read(self, path: Path) -> None:
        import xgboost

        self.booster = xgboost.Booster()
        self.booster.load_model(str(path))
        self.booster.set_param({"nthread": self.threads})
        config = json.loads(self.booster.save_config())["learner"]
        self.objective = config["objective"]["name"]
        self.n_features = self.booster.num_features()
        names = self.booster.feature_names
        self.feature_names = list(names) if names else None
        count = int(config["learner_model_param"].get("num_class", "0"))
        if self.objective.startswith(CLASSIFYING):
            self.classes = list(range(max(count, 2)))
        self.outputs_probabilities = self.objective in ("binary:logistic", "multi:softprob")

    def labels(self, rows: np.ndarray) -> Any:
        raw = self.booster.inplace_predict(rows)
        if self.classes is None or not self.outputs_probabilities:
            return raw  # a regressor, or multi:softmax (labels already)
        return class_labels(np.asarray(raw), self.classes)

    def probabilities(self, rows: np.ndarray) -> Any:
        if not self.outputs_probabilities:
            from zeroserve import InvalidPayload

            raise InvalidPayload(
                f"objective {self.objective} gives no probabilities; ask for labels"
            )
        return two_columns(np.asarray(self.booster.inplace_predict(rows)))
