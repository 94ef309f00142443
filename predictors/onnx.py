"""ONNX models on onnxruntime (CPU, or CUDA where onnxruntime-gpu is installed).

The first input takes the rows; its shape gives the feature count. A converted classifier (from
skl2onnx or onnxmltools, as ``--optimize onnx`` makes them) has outputs ``label`` and
``probabilities``; any other model's first output is its answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from zeroserve.predictors.tabular import TabularPredictor, two_columns

ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}
PROBABILITY_OUTPUTS = ("probabilities", "output_probability")
SCHEMA_KEY = "zeroserve.schema"  # metadata a conversion keeps: the original's features, classes


class OnnxPredictor(TabularPredictor):
    """An onnxruntime session over the model file."""

    preimport_modules = ("onnxruntime",)
    threads = 1  # onnxruntime's intra-op threads; raise it on a subclass for large models

    def read(self, path: Path) -> None:
        import onnxruntime

        providers = [p for p in onnxruntime.get_available_providers() if p in _PREFERRED]
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: not a warning per converted-label shape
        # one thread, no spinning: a served model shares its CPUs with the server's own work,
        # and batching, not threads, is what makes one call predict many rows
        options.intra_op_num_threads = self.threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=providers
        )
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.dtype = ONNX_DTYPES.get(first.type, np.float32)
        width = first.shape[1] if len(first.shape) == 2 else None
        self.n_features = width if isinstance(width, int) else None
        outputs = [output.name for output in self.session.get_outputs()]
        self.probability_output = next((n for n in outputs if n in PROBABILITY_OUTPUTS), None)
        self.label_output = "label" if "label" in outputs else outputs[0]
        self.classes = None
        self.zipmap = False
        if self.probability_output is not None:
            self.classes = self._class_names()
        kept = self.session.get_modelmeta().custom_metadata_map.get(SCHEMA_KEY)
        if kept:  # converted by --optimize onnx: the original's names and classes
            schema = json.loads(kept)
            self.feature_names = schema.get("feature_names")
            self.classes = schema.get("classes") if self.classes is not None else None

    def _class_names(self) -> list[Any]:
        """The classes a probabilities output has: its width, or a ZipMap's keys (asked once
        with a row of zeros, as the keys are in no shape)."""
        output = next(o for o in self.session.get_outputs() if o.name == self.probability_output)
        if output.type.startswith("seq(map"):
            self.zipmap = True
            if self.n_features is None:
                return [0, 1]
            row = np.zeros((1, self.n_features), dtype=self.dtype)
            first = self.session.run([self.probability_output], {self.input_name: row})[0][0]
            return list(first)
        width = output.shape[-1] if output.shape else None
        return list(range(width if isinstance(width, int) else 2))

    def labels(self, rows: np.ndarray) -> Any:
        result = np.asarray(self.session.run([self.label_output], {self.input_name: rows})[0])
        return result[:, 0] if result.ndim == 2 and result.shape[1] == 1 else result

    def probabilities(self, rows: np.ndarray) -> Any:
        result = self.session.run([self.probability_output], {self.input_name: rows})[0]
        if self.zipmap:  # one {class: probability} per row
            return [[row[name] for name in self.classes or []] for row in result]
        return two_columns(np.asarray(result))


_PREFERRED = ("CUDAExecutionProvider", "CPUExecutionProvider")
