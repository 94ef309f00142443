"""A thin ``kserve.Model`` over the engine-neutral ``PredictorRunner``.

KServe decodes the request (a v1 dict or a v2 ``InferRequest``) and encodes the answer; the
runner does everything in between. Only this module (and the server) knows KServe's types.
"""

from __future__ import annotations

import functools
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from zeroserve.coldstart import StartupTimeline
from zeroserve.errors import InvalidPayload, PredictError, UnencodableResult
from zeroserve.serving._kserve import kserve_argv
from zeroserve.serving.batching import BatcherPool
from zeroserve.serving.runner import PredictorRunner, describe_result
from zeroserve.spec.decorator import Declaration

with kserve_argv():
    import kserve
    from kserve.logging import trace_logger
    from kserve.metrics import POST_HIST_TIME, PRE_HIST_TIME, PREDICT_HIST_TIME, get_labels
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
    from kserve.utils.numpy_codec import from_np_dtype, to_np_dtype


OUTPUT_NAME = "output-0"


class PredictorModel(kserve.Model):  # type: ignore[misc]
    """A ``kserve.Model`` whose request path is a ``PredictorRunner``.

    Readiness (KServe's ``ready``) is the runner's: true only after ``load()`` and ``warmup()``.
    """

    def __init__(self, runner: PredictorRunner) -> None:
        self.runner = runner
        super().__init__(runner.name)

    @property
    def ready(self) -> bool:
        return self.runner.ready

    @ready.setter
    def ready(self, value: bool) -> None:  # kserve.Model's own __init__ sets it
        self.runner.ready = value

    @property
    def declaration(self) -> Declaration:
        return self.runner.declaration

    @property
    def instance(self) -> Any:
        """The user's predictor object."""
        return self.runner.instance

    @property
    def batchers(self) -> BatcherPool | None:
        return self.runner.batchers

    async def load_in_server(self) -> None:
        """Run the user's load() and warmup(); raise LoadError naming the phase that failed."""
        await self.runner.load()

    async def close_in_server(self) -> None:
        """Run the user's optional close() once the server stopped."""
        await self.runner.close()

    async def healthy(self) -> bool:
        """KServe's readiness routes (and its data plane, on every request) answer from this."""
        runner = self.runner
        if not runner.ready or runner.health_check is None:
            return runner.ready  # the usual case: no coroutine more
        return await runner.healthy()

    async def predict(
        self,
        payload: dict[str, Any] | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict[str, Any] | InferResponse:
        if isinstance(payload, InferRequest):
            inputs = {tensor.name: _tensor_values(tensor) for tensor in payload.inputs}
            result = await self.runner.predict_v2(inputs, payload.parameters, headers)
            return self._v2_response(payload, result)
        return {"predictions": await self.runner.predict_v1(payload, headers)}

    def _v2_response(self, request: InferRequest, result: Any) -> InferResponse:
        array, datatype = result_tensor(self, result)
        output = InferOutput(name=OUTPUT_NAME, shape=list(array.shape), datatype=datatype)
        output.set_data_from_numpy(array, binary_data=False)
        return InferResponse(
            model_name=self.name,
            infer_outputs=[output],
            response_id=request.id or str(uuid.uuid4()),
        )

    def get_input_types(self) -> list[dict[str, Any]]:
        """v2 metadata: the model's own inputs where its predictor says them (``v2_metadata``),
        else the instances input typed from the request schema."""
        described = self._described()
        if described is not None:
            return list(described.get("inputs", []))
        signature = self.declaration.signature
        return [
            {
                "name": signature.instances.name,
                "datatype": "BYTES" if _is_text(signature.instances_schema()) else "FP64",
                "shape": [-1],
            }
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        described = self._described()
        return list(described.get("outputs", [])) if described is not None else []

    def _described(self) -> dict[str, Any] | None:
        describe = getattr(self.instance, "v2_metadata", None)
        if describe is None or not self.ready:
            return None
        return describe()  # type: ignore[no-any-return]


def result_tensor(model: PredictorModel, result: Any) -> tuple[np.ndarray, str]:
    """predict()'s result as one v2 tensor and its datatype; UnencodableResult or PredictError
    naming why it is not one."""
    try:
        array = np.asarray(result)
    except ValueError as exc:  # ragged lists
        raise UnencodableResult(
            model=model.name,
            returned=describe_result(result),
            declared=model.declaration.signature.returns_text,
            reason=f"a v2 tensor must be rectangular ({exc})",
        ) from None
    if array.dtype.kind in "USO":
        array = array.astype(np.object_)
    try:
        datatype = from_np_dtype(array.dtype)
    except Exception:
        datatype = None
    if datatype is None:
        raise PredictError(
            model=model.name,
            cause=TypeError(f"predict() returned {array.dtype} values, not a tensor type"),
        )
    return array, datatype


def v2_output(model: PredictorModel, result: Any) -> tuple[str, list[int], str, list[Any]]:
    """The v2 response's one output (name, shape, datatype, data) for predict()'s result, as
    KServe's InferResponse writes it in JSON."""
    array, datatype = result_tensor(model, result)
    if datatype == "BYTES":  # KServe's own text conversion
        output = InferOutput(name=OUTPUT_NAME, shape=list(array.shape), datatype=datatype)
        output.set_data_from_numpy(array, binary_data=False)
        return OUTPUT_NAME, list(array.shape), datatype, list(output.data)
    return OUTPUT_NAME, list(array.shape), datatype, array.ravel().tolist()


def numeric_dtype(datatype: object) -> Any:
    """numpy's dtype for a numeric v2 datatype, from KServe's own table; None for BYTES, FP16
    (which KServe's JSON decoding treats apart) and names that are not v2 datatypes."""
    if not isinstance(datatype, str) or datatype in ("BYTES", "FP16"):
        return None
    return to_np_dtype(datatype)


def record_predict(model: PredictorModel, seconds: float, headers: dict[str, str]) -> None:
    """KServe's request histograms for one prediction, and its latency line where the model
    logs one, as ``kserve.Model.__call__`` records them (the fast path does not pass through
    it)."""
    pre, predict, post = _histograms(model.name)
    pre.observe(0.0)
    predict.observe(seconds)
    post.observe(0.0)
    if model.enable_latency_logging:
        request_id = headers.get("x-request-id", "N.A.")
        trace_logger.info(
            f"requestId: {request_id}, preprocess_ms: 0, explain_ms: 0, "
            f"predict_ms: {1000 * seconds}, postprocess_ms: 0"
        )


@functools.cache
def _histograms(model: str) -> tuple[Any, Any, Any]:
    """KServe's three request histograms with ``model``'s labels (the lookup costs more than
    the observation)."""
    labels = get_labels(model)
    histograms = (PRE_HIST_TIME, PREDICT_HIST_TIME, POST_HIST_TIME)
    pre, predict, post = (histogram.labels(**labels) for histogram in histograms)
    return pre, predict, post


def serving_model(
    user_class: type,
    declaration: Declaration,
    model_dir: Path | None,
    timeline: StartupTimeline | None = None,
) -> PredictorModel:
    """The ``kserve.Model`` for a predictor class: also on the OpenAI routes when it answers them
    (those routes need vLLM's request types, so that bridge is imported only then)."""
    runner = PredictorRunner(user_class, declaration, model_dir, timeline=timeline)
    if declaration.openai:
        from zeroserve.llm.openai_routes import openai_model_class

        return openai_model_class()(runner)
    return PredictorModel(runner)


def _tensor_values(tensor: Any) -> Any:
    """A v2 input tensor's data as nested lists; InvalidPayload when its data does not fit its
    shape and datatype, or holds NaN or infinite numbers (which v1's JSON refuses too)."""
    try:
        array = tensor.as_numpy()
    except (ValueError, OverflowError, TypeError) as exc:
        raise InvalidPayload(
            f"inputs[{tensor.name}]: the data does not fit shape {tensor.shape} and datatype "
            f"{tensor.datatype} ({exc}); send exactly as many values as the shape holds, each "
            "in the datatype's range"
        ) from None
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidPayload(
            f"inputs[{tensor.name}]: NaN and infinite numbers are not accepted (JSON has none); "
            "send finite numbers"
        )
    return array.tolist()


def _is_text(schema: dict[str, Any]) -> bool:
    while schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        schema = schema["items"]
    return schema.get("type") == "string"
