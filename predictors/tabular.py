"""What the built-in predictors of tabular models share: the model's own schema.

A subclass reads its file in ``read(path)`` and sets ``n_features`` (and ``feature_names`` and
``classes`` where the model has them); this class turns that into the request schema:

- each instance is a row of ``n_features`` numbers, or an object of named features where the
  model has names (``{"petal_length": 1.4, ...}``); anything else answers 400 naming the row,
  the count it has and the count the model expects (checked per request, before batching, so
  one client's bad row never fails another's batch);
- ``parameters: {"output": "probabilities"}`` asks a classifier for its class probabilities
  instead of labels;
- the v2 model metadata lists the real input (shape ``[-1, n_features]``, its datatype) and the
  outputs (``label``, and ``probabilities`` for a classifier).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from zeroserve import InvalidPayload

Output = Literal["label", "probabilities"]
Row = list[float] | dict[str, float]
V2_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32"}


class TabularPredictor:
    """Base of the scikit-learn, XGBoost, LightGBM and ONNX predictors; see the module doc."""

    model_file: str = ""  # the file in the model folder; "" when the folder holds only one
    n_features: int | None = None  # None: the model does not say (any row length is passed on)
    feature_names: list[str] | None = None
    classes: list[Any] | None = None  # None: a regressor (no probabilities)
    input_name: str = "input"
    dtype: Any = np.float64

    def read(self, path: Path) -> None:
        """Load the model file and set its schema attributes."""
        raise NotImplementedError

    def labels(self, rows: np.ndarray) -> Any:
        raise NotImplementedError

    def probabilities(self, rows: np.ndarray) -> Any:
        raise NotImplementedError

    def load(self, model_dir: Path) -> None:
        self.read(model_file_in(model_dir, self.model_file))

    def check_request(self, instances: list[Row], output: Output = "label") -> None:
        """InvalidPayload for a request this model cannot predict, naming what is wrong."""
        if output == "probabilities" and self.classes is None:
            raise InvalidPayload(
                'this model is a regressor: it has no probabilities; leave "output" out or '
                'ask for "label"'
            )
        for index, row in enumerate(instances):
            if isinstance(row, dict):
                self._check_named(index, row)
            elif self.n_features is not None and len(row) != self.n_features:
                raise InvalidPayload(
                    f"instances[{index}] has {len(row)} features; the model expects "
                    f"{self.n_features}{self._names_text()}"
                )

    def predict(self, instances: list[Row], output: Output = "label") -> list[Any]:
        rows = self.matrix(instances)
        if output == "probabilities":
            return np.asarray(self.probabilities(rows)).tolist()  # type: ignore[no-any-return]
        return np.asarray(self.labels(rows)).tolist()  # type: ignore[no-any-return]

    def matrix(self, instances: list[Row]) -> np.ndarray:
        """The rows as one 2-D array (the batch dimension is real: one call predicts all)."""
        names = self.feature_names
        if names and any(isinstance(row, dict) for row in instances):
            instances = [
                [row[name] for name in names] if isinstance(row, dict) else row for row in instances
            ]
        return np.asarray(instances, dtype=self.dtype)

    def v2_metadata(self) -> dict[str, list[dict[str, Any]]]:
        """The v2 model metadata's inputs and outputs, from the model itself."""
        datatype = V2_DATATYPES.get(np.dtype(self.dtype).name, "FP64")
        inputs = [
            {"name": self.input_name, "datatype": datatype, "shape": [-1, self.n_features or -1]}
        ]
        outputs = [{"name": "label", "datatype": self.label_datatype(), "shape": [-1]}]
        if self.classes is not None:
            outputs.append(
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(self.classes)]}
            )
        return {"inputs": inputs, "outputs": outputs}

    def label_datatype(self) -> str:
        if self.classes is None:
            return "FP32"
        kinds = {type(label) for label in self.classes}
        return "BYTES" if str in kinds else "INT64"

    def _check_named(self, index: int, row: dict[str, float]) -> None:
        if not self.feature_names:
            raise InvalidPayload(
                f"instances[{index}] is an object, but this model has no feature names; send "
                f"each instance as a list of {self.n_features or 'its'} numbers"
            )
        missing = [name for name in self.feature_names if name not in row]
        unknown = [name for name in row if name not in self.feature_names]
        if missing or unknown:
            parts = [f"missing {', '.join(missing)}" if missing else ""]
            parts.append(f"unknown {', '.join(unknown)}" if unknown else "")
            raise InvalidPayload(
                f"instances[{index}]: {'; '.join(p for p in parts if p)}; the model's features "
                f"are {', '.join(self.feature_names)}"
            )

    def _names_text(self) -> str:
        return f" ({', '.join(self.feature_names)})" if self.feature_names else ""


def model_file_in(model_dir: Path, name: str) -> Path:
    """``model_dir / name``, or the folder's one model file when ``name`` is empty."""
    if name:
        return model_dir / name
    from zeroserve.predictors.formats import model_files

    found = model_files(model_dir)
    if len(found) != 1:
        raise FileNotFoundError(
            f"{model_dir} holds {len(found)} model files ({', '.join(p.name for p in found)}); "
            "set model_file on the predictor to the one to serve"
        )
    return found[0]


def class_labels(probabilities: np.ndarray, classes: list[Any]) -> list[Any]:
    """The most probable class of each row (a binary model's one column is P(class 1))."""
    if probabilities.ndim == 1:
        return [classes[int(p > 0.5)] for p in probabilities]
    return [classes[i] for i in probabilities.argmax(axis=1)]


def two_columns(probabilities: np.ndarray) -> np.ndarray:
    """A binary model's P(class 1) as the two columns [P(0), P(1)]."""
    if probabilities.ndim == 1:
        return np.stack([1 - probabilities, probabilities], axis=1)
    return probabilities
