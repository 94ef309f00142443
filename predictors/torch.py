"""PyTorch models: ``torch.export`` programs (``.pt2``, ``torch.export.save``) and TorchScript
(``.pt``/``.pth``, ``torch.jit.save``), run in inference mode on the CPU (or the GPU there is).

Each instance is one input tensor without its batch dimension; a request's rows (and a batch's
requests) are stacked into one tensor, so one forward pass answers them all. An exported
program says the shape it takes: an instance of another shape answers 400 naming both. A program
exported with a fixed batch size is called in chunks of that size (the last one padded).
``parameters: {"output": "label"}`` answers the arg-max class, ``"probabilities"`` a softmax,
and ``"raw"`` (the default) the model's output as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from zeroserve import InvalidPayload
from zeroserve.predictors.tabular import model_file_in

TorchOutput = Literal["raw", "label", "probabilities"]


class TorchPredictor:
    """A torch.export program or a TorchScript module, see the module doc."""

    model_file: str = ""
    preimport_modules: tuple[str, ...] = ("torch",)

    def load(self, model_dir: Path) -> None:
        self.read(model_file_in(model_dir, self.model_file))

    def read(self, path: Path) -> None:
        import torch

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.instance_shape: list[int] | None = None
        self.fixed_batch: int | None = None
        self.program = None
        if path.suffix == ".pt2":
            self.program = torch.export.load(str(path))
            self._read_signature(self.program)
            self.module = self.program.module().to(self.device)
        else:
            self.module = torch.jit.load(str(path), map_location=self.device).eval()

    def _read_signature(self, program: Any) -> None:
        """The first input's shape: per instance, and the batch size where it is fixed."""
        placeholders = [node for node in program.graph.nodes if node.op == "placeholder"]
        user_inputs = set(program.graph_signature.user_inputs)
        first = next((node for node in placeholders if node.name in user_inputs), None)
        value = first.meta.get("val") if first is not None else None
        if value is None or not value.shape:
            return
        shape = list(value.shape)
        self.instance_shape = [int(size) if isinstance(size, int) else -1 for size in shape[1:]]
        self.fixed_batch = int(shape[0]) if isinstance(shape[0], int) else None

    def check_request(self, instances: list[Any], output: TorchOutput = "raw") -> None:
        if self.instance_shape is None:
            return
        for index, instance in enumerate(instances):
            shape = list(np.shape(instance))
            if len(shape) != len(self.instance_shape) or any(
                want not in (-1, got) for want, got in zip(self.instance_shape, shape, strict=False)
            ):
                raise InvalidPayload(
                    f"instances[{index}] has shape {shape}; the model takes instances of shape "
                    f"{self.instance_shape} (-1: any size)"
                )

    def predict(self, instances: list[Any], output: TorchOutput = "raw") -> list[Any]:
        import torch

        try:
            batch = torch.as_tensor(np.asarray(instances, dtype=np.float32), device=self.device)
        except ValueError as exc:
            raise InvalidPayload(f"the instances do not form one tensor: {exc}") from None
        with torch.inference_mode():
            result = self._forward(batch)
            if output == "label":
                result = result.argmax(dim=-1)
            elif output == "probabilities":
                result = torch.softmax(result, dim=-1)
        return result.cpu().tolist()  # type: ignore[no-any-return]

    def _forward(self, batch: Any) -> Any:
        import torch

        size = self.fixed_batch
        if size is None or len(batch) == size:
            return self.module(batch)
        parts = []
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            missing = size - len(chunk)
            if missing:
                chunk = torch.cat([chunk, chunk[-1:].expand(missing, *chunk.shape[1:])])
            parts.append(self.module(chunk)[: size - missing])
        return torch.cat(parts)

    def v2_metadata(self) -> dict[str, list[dict[str, Any]]]:
        shape = [-1, *(self.instance_shape or [-1])]
        return {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": shape}],
            "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, -1]}],
        }


class TorchOnnxPredictor(TorchPredictor):
    """A torch.export program converted by ``--optimize onnx``, run by onnxruntime with the
    same requests and answers as ``TorchPredictor`` (the program's shapes kept in the file)."""

    preimport_modules = ("torch", "onnxruntime")

    def read(self, path: Path) -> None:
        import json

        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # batching, not threads (as OnnxPredictor)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), sess_options=options)
        self.input_name = self.session.get_inputs()[0].name
        kept = json.loads(self.session.get_modelmeta().custom_metadata_map.get(SHAPES_KEY, "{}"))
        self.instance_shape = kept.get("instance_shape")
        self.fixed_batch = kept.get("fixed_batch")
        self.device = "cpu"
        self.module = self._run

    def _run(self, batch: Any) -> Any:
        import torch

        rows = batch.cpu().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: rows})[0])


SHAPES_KEY = "zeroserve.torch_shapes"  # what a conversion keeps of the program's signature
