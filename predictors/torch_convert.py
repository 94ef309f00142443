"""``--optimize onnx`` for torch.export programs: exported to ONNX by torch's own exporter (its
dynamic batch dimension kept), checked against the program on sample rows (every output within
the tolerance, absolute or relative over 1), served by onnxruntime (``TorchOnnxPredictor``).

TorchScript modules do not say the shape they take, so they are not converted: export them with
``torch.export`` (a ``.pt2`` file) to optimize them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from zeroserve.predictors.formats import FormatError
from zeroserve.predictors.torch import SHAPES_KEY, TorchOnnxPredictor

SAMPLE_ROWS = 64


def write_torch_onnx(original: Any, destination: Path) -> None:
    """Export the program ``original`` (a read ``TorchPredictor``) to ``destination``."""
    import onnx
    import torch

    if original.program is None or original.instance_shape is None:
        raise FormatError(
            "--optimize onnx converts torch.export programs (.pt2); a TorchScript module does not "
            "say the shape it takes: export it with torch.export"
        )
    with warnings.catch_warnings():  # the exporter's progress and deprecation notes
        warnings.simplefilter("ignore")
        exported = torch.onnx.export(original.program, dynamo=True, verbose=False)
    exported.save(str(destination))
    model = onnx.load(str(destination))
    entry = model.metadata_props.add()
    shapes = {"instance_shape": original.instance_shape, "fixed_batch": original.fixed_batch}
    entry.key, entry.value = SHAPES_KEY, json.dumps(shapes)
    onnx.save(model, str(destination))


def torch_disagreement(original: Any, converted: Path, tolerance: float) -> str | None:
    """Why the ONNX file does not stand in for the program, or None."""
    onnx = TorchOnnxPredictor()
    onnx.read(converted)
    shape = [size if size > 0 else 8 for size in original.instance_shape]
    rows = original.fixed_batch or SAMPLE_ROWS
    sample = np.random.default_rng(0).normal(size=(rows, *shape)).astype(np.float32).tolist()
    expected = np.asarray(original.predict(sample), dtype=np.float64)
    got = np.asarray(onnx.predict(sample), dtype=np.float64)
    if expected.shape != got.shape:
        return f"outputs have shape {got.shape}, the program's {expected.shape}"
    worst = float(np.max(np.abs(expected - got) / np.maximum(1.0, np.abs(expected))))
    if worst > tolerance:
        return f"outputs differ by up to {worst:.3g} (tolerance {tolerance})"
    return None
