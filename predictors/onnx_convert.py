"""``--optimize onnx``: a scikit-learn, XGBoost or LightGBM model converted to ONNX, checked
against the original on sample rows, then served by onnxruntime.

The check: on ``SAMPLE_ROWS`` rows drawn around the model's own split thresholds (a tree model)
or from a normal distribution, every probability (or regression value) agrees within
``TOLERANCE`` (absolute, or relative for values over 1), and every label agrees wherever the
original's two most probable classes are further apart than ``TOLERANCE`` (closer than that, a
float32 rounding may pick either). A conversion that fails the check is refused with the figures.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from zeroserve.predictors.formats import FormatError
from zeroserve.predictors.onnx import SCHEMA_KEY, OnnxPredictor
from zeroserve.predictors.tabular import TabularPredictor

TOLERANCE = 1e-4
SAMPLE_ROWS = 512
OPSET = 15  # the highest onnxmltools' tree converters support
CONVERTIBLE = ("sklearn", "skops", "xgboost", "lightgbm", "torch")


def converter_versions() -> str:
    """What a conversion depends on besides its source (part of its cache key)."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("onnx", "skl2onnx", "onnxmltools", "onnxruntime", "onnxscript", "torch"):
        try:
            found.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} absent")
    return " ".join(found)


def write_onnx(original: Any, fmt: str, destination: Path) -> None:
    """Convert ``original`` (a loaded built-in predictor of ``fmt``) into an ONNX file."""
    if fmt not in CONVERTIBLE:
        raise FormatError(f"--optimize onnx converts {', '.join(CONVERTIBLE)} models, not {fmt}")
    if fmt == "torch":
        from zeroserve.predictors.torch_convert import write_torch_onnx

        write_torch_onnx(original, destination)
        return
    if original.n_features is None:
        raise FormatError("--optimize onnx needs a model that knows its feature count")
    model = _converted(original, fmt, original.n_features)
    schema = {"feature_names": original.feature_names, "classes": original.classes}
    entry = model.metadata_props.add()
    entry.key, entry.value = SCHEMA_KEY, json.dumps(schema)
    destination.write_bytes(model.SerializeToString())


def _converted(original: Any, fmt: str, width: int) -> Any:
    from onnxmltools.convert.common.data_types import FloatTensorType

    types = [("input", FloatTensorType([None, width]))]
    if fmt == "xgboost":
        from onnxmltools.convert import convert_xgboost

        booster = original.booster.copy()
        booster.feature_names = None  # the converter reads f0, f1, … from the trees
        return convert_xgboost(booster, initial_types=types, target_opset=OPSET)
    if fmt == "lightgbm":
        from onnxmltools.convert import convert_lightgbm

        return convert_lightgbm(
            original.booster, initial_types=types, target_opset=OPSET, zipmap=False
        )
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType as SklFloat

    model = original.model
    last = model.steps[-1][1] if hasattr(model, "steps") else model
    options = {id(last): {"zipmap": False}} if original.classes is not None else None
    return to_onnx(
        model, initial_types=[("input", SklFloat([None, width]))], options=options, target_opset=17
    )


def disagreement(original: Any, converted: Path) -> str | None:
    """Why the ONNX file does not stand in for ``original`` (see the module doc), or None."""
    if not isinstance(original, TabularPredictor):
        from zeroserve.predictors.torch_convert import torch_disagreement

        return torch_disagreement(original, converted, TOLERANCE)
    onnx = OnnxPredictor()
    onnx.read(converted)
    rows = sample_rows(original).astype(np.float32)
    if original.classes is None:
        expected = np.asarray(
            original.labels(rows.astype(original.dtype)), dtype=np.float64
        ).ravel()
        got = np.asarray(onnx.labels(rows), dtype=np.float64).ravel()
        worst = float(np.max(np.abs(expected - got) / np.maximum(1.0, np.abs(expected))))
        return None if worst <= TOLERANCE else f"values differ by up to {worst:.3g} (> {TOLERANCE})"
    expected_p = np.asarray(original.probabilities(rows.astype(original.dtype)), dtype=np.float64)
    got_p = np.asarray(onnx.probabilities(rows), dtype=np.float64)
    if expected_p.shape != got_p.shape:
        return f"probabilities have shape {got_p.shape}, the original's {expected_p.shape}"
    worst = float(np.max(np.abs(expected_p - got_p)))
    ordered = np.sort(expected_p, axis=1)
    decided = (ordered[:, -1] - ordered[:, -2]) > TOLERANCE
    labels = np.asarray(original.labels(rows.astype(original.dtype)))
    onnx_labels = np.asarray(onnx.labels(rows)).ravel()
    differing = int(np.sum((labels.astype(str) != onnx_labels.astype(str)) & decided))
    if worst > TOLERANCE or differing:
        return (
            f"{differing} of {len(rows)} sample labels differ and probabilities differ by up to "
            f"{worst:.3g} (tolerance {TOLERANCE})"
        )
    return None


def sample_rows(original: TabularPredictor, count: int = SAMPLE_ROWS, seed: int = 0) -> np.ndarray:
    """Rows spread over each feature's split thresholds (or N(0, 1) where none are known)."""
    width = original.n_features or 1
    random = np.random.default_rng(seed)
    rows = random.normal(size=(count, width))
    for feature, values in _thresholds(original).items():
        if values and feature < width:
            low, high = min(values), max(values)
            margin = max(1.0, 0.1 * (high - low))
            rows[:, feature] = random.uniform(low - margin, high + margin, size=count)
    return rows


def _thresholds(original: Any) -> dict[int, list[float]]:
    found: dict[int, list[float]] = {}
    if hasattr(original, "model"):
        for tree in _sklearn_trees(original.model):
            for feature, value in zip(tree.feature, tree.threshold, strict=True):
                if feature >= 0:
                    found.setdefault(int(feature), []).append(float(value))
    elif hasattr(original, "booster") and hasattr(original.booster, "get_dump"):
        booster = original.booster.copy()
        booster.feature_names = None  # dumps name features f0, f1, …
        for dump in booster.get_dump():
            for feature, value in re.findall(r"\[f?(\d+)<([-0-9.e+]+)\]", dump):
                found.setdefault(int(feature), []).append(float(value))
    elif hasattr(original, "booster"):
        model = original.booster.dump_model()
        _lightgbm_splits(model.get("tree_info", []), found)
    return found


def _sklearn_trees(model: Any) -> list[Any]:
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    estimators = getattr(final, "estimators_", [final])
    flat = np.asarray(estimators, dtype=object).ravel()
    return [item.tree_ for item in flat if hasattr(item, "tree_")]


def _lightgbm_splits(trees: list[dict[str, Any]], found: dict[int, list[float]]) -> None:
    stack = [tree["tree_structure"] for tree in trees]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            found.setdefault(int(node["split_feature"]), []).append(float(node["threshold"]))
            stack += [node["left_child"], node["right_child"]]
