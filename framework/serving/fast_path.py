"""The warm path of the two hot routes, in front of KServe's FastAPI app.

A plain JSON ``POST /v1/models/NAME:predict`` or ``POST /v2/models/NAME/infer`` for a ready model
is decoded with orjson, run through the model's runner (validation, batching, drift, tracing, as
always) and encoded with orjson: no routing table, dependency injection, pydantic request model,
``InferRequest`` or ``Model.__call__`` in between, which cost more than a small model's
prediction. KServe's request metrics (and, with the access log on, its latency line) are
recorded as its ``Model.__call__`` records them.

Everything else goes to KServe's app unchanged, with the body already read handed on: another
route or method, a body that is not plain JSON (CloudEvents, v2's binary extension, a BYTES or
FP16 tensor, requested outputs), a model that is not ready. Nothing has been predicted by then, so
the app answers as if the fast path did not exist. An error raised by the model is answered by the
same handler the app uses (``server.zeroserve_error_response``), so statuses, headers and bodies
match; ``tests/integration/test_fast_path.py`` compares the two paths request by request.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np
import orjson

from zeroserve.errors import ZeroserveError
from zeroserve.serving.kserve_model import (
    PredictorModel,
    numeric_dtype,
    record_predict,
    v2_output,
)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ErrorAnswer = Callable[[Scope, str, ZeroserveError, Receive, Send], Awaitable[None]]

V1_PATH = re.compile(r"^/v1/models/([^/:]+):predict$")
V2_PATH = re.compile(r"^/v2/models/([^/]+)/infer$")
JSON_TYPES = (b"application/json", b"application/json; charset=utf-8")
V2_REQUEST_KEYS = {"id", "inputs", "parameters"}
V2_TENSOR_KEYS = {"name", "shape", "datatype", "data"}
ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY  # as ORJSONResponse
HEADER_JSON = (b"content-type", b"application/json")


class NotFast(Exception):
    """The request is not one the fast path takes; KServe's app answers it."""


class FastPath:
    """ASGI middleware: see the module doc. ``models``: the server's models by name."""

    def __init__(self, app: ASGIApp, models: Mapping[str, Any], error_answer: ErrorAnswer) -> None:
        self.app = app
        self.models = models
        self.error_answer = error_answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        taken = self.takes(scope)
        if taken is None:
            await self.app(scope, receive, send)
            return
        model, version, headers = taken
        try:
            body, left = await _read_body(receive)
        except ZeroserveError as exc:  # a streamed body over the limit (BodySizeLimit's count)
            await self.error_answer(scope, model.name, exc, receive, send)
            return
        if left:  # the client left before sending it all: nothing to answer (a half-closed
            return  # one was answered 400 by the HTTP layer), and no one to log a traceback for
        replay = _replay(body, receive)
        try:
            payload, seconds = await self.answer(model, version, body, headers)
        except NotFast:
            await self.app(scope, replay, send)
            return
        except ZeroserveError as exc:
            await self.error_answer(scope, model.name, exc, replay, send)
            return
        start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(payload)).encode()), HEADER_JSON],
        }
        await send(start)
        await send({"type": "http.response.body", "body": payload})
        record_predict(model, seconds, headers)  # once the answer is on its way

    def takes(self, scope: Scope) -> tuple[PredictorModel, int, dict[str, str]] | None:
        """The model, protocol version (1 or 2) and headers of a request this path may take
        (its body decides the rest: ``answer`` raises NotFast), or None."""
        model, version = self._model_for(scope)
        if model is None:
            return None
        headers = _json_headers(scope)
        return None if headers is None else (model, version, headers)

    async def answer(
        self, model: PredictorModel, version: int, body: bytes, headers: dict[str, str]
    ) -> tuple[bytes, float]:
        """The JSON answer's body, and the seconds predict took; NotFast where KServe's app is
        to answer instead (nothing was predicted), or the ZeroserveError to answer."""
        return await (self._v1 if version == 1 else self._v2)(model, body, headers)

    def _model_for(self, scope: Scope) -> tuple[PredictorModel | None, int]:
        if scope["type"] != "http" or scope["method"] != "POST":
            return None, 0
        path = scope["path"]
        match, version = V1_PATH.match(path), 1
        if match is None:
            match, version = V2_PATH.match(path), 2
        if match is None:
            return None, 0
        model = self.models.get(match.group(1))
        if not isinstance(model, PredictorModel) or not model.ready:
            return None, 0
        return model, version

    async def _v1(
        self, model: PredictorModel, body: bytes, headers: dict[str, str]
    ) -> tuple[bytes, float]:
        """The answer's body, and the seconds predict took."""
        decoded = _decoded(body)
        if not isinstance(decoded, dict):
            raise NotFast  # KServe's v1 decoding says what is wrong with it
        try:
            model.validate(decoded)  # KServe's own checks, before anything is predicted
        except Exception:
            raise NotFast from None  # its app answers them with its handlers
        started = time.perf_counter()
        predictions = await model.runner.predict_v1(decoded, headers)
        seconds = time.perf_counter() - started
        return orjson.dumps({"predictions": predictions}, option=ORJSON_OPTIONS), seconds

    async def _v2(
        self, model: PredictorModel, body: bytes, headers: dict[str, str]
    ) -> tuple[bytes, float]:
        """The answer's body (KServe's ``InferResponse`` as JSON), and the seconds predict took."""
        request = _decoded(body)
        if not isinstance(request, dict) or not set(request) <= V2_REQUEST_KEYS:
            raise NotFast
        if not isinstance(request.get("id") or "", str):
            raise NotFast  # KServe's request model says what is wrong with it
        parameters = request.get("parameters")
        if parameters is not None and (
            not isinstance(parameters, dict) or "binary_data_output" in parameters
        ):
            raise NotFast
        inputs = _v2_inputs(request.get("inputs"))
        started = time.perf_counter()
        result = await model.runner.predict_v2(inputs, parameters, headers)
        seconds = time.perf_counter() - started
        name, shape, datatype, data = v2_output(model, result)
        answer = {
            "model_name": model.name,
            "model_version": None,
            "id": request.get("id") or str(uuid.uuid4()),
            "parameters": None,
            "outputs": [
                {
                    "name": name,
                    "shape": shape,
                    "datatype": datatype,
                    "parameters": None,
                    "data": data,
                }
            ],
        }
        return orjson.dumps(answer, option=ORJSON_OPTIONS), seconds


def _decoded(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise NotFast from None


def _v2_inputs(tensors: object) -> dict[str, Any]:
    """name -> nested lists, as ``kserve_model._tensor_values`` gives them (the numbers through
    the tensor's own dtype); NotFast for anything but plain, finite, numeric JSON tensors."""
    if not isinstance(tensors, list) or not tensors:
        raise NotFast
    inputs: dict[str, Any] = {}
    for tensor in tensors:
        if not isinstance(tensor, dict) or set(tensor) != V2_TENSOR_KEYS:
            raise NotFast
        dtype = numeric_dtype(tensor["datatype"])
        shape, name = tensor["shape"], tensor["name"]
        if dtype is None or not isinstance(name, str) or name in inputs:
            raise NotFast
        if not isinstance(shape, list) or not all(
            type(size) is int and size >= 0 for size in shape
        ):
            raise NotFast
        try:
            array: np.ndarray = np.asarray(tensor["data"], dtype=dtype)
            if array.size != int(np.prod(shape)):
                raise NotFast
            array = array.reshape(shape)
        except (ValueError, TypeError, OverflowError):
            raise NotFast from None
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise NotFast
        inputs[name] = array.tolist()
    return inputs


def _json_headers(scope: Scope) -> dict[str, str] | None:
    """The request's headers as KServe hands them to a model, or None where the body is not
    plain JSON (another content type, CloudEvents, v2's binary extension)."""
    found: dict[str, str] = {}
    content_type = b""
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        if name == "content-type":
            content_type = raw_value.lower()
        elif name.startswith("ce-") or name == "inference-header-content-length":
            return None
        found[name] = raw_value.decode("latin-1")
    return found if content_type in JSON_TYPES else None


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole body, and whether the client left before it ended."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the app the body already read, then what the client does next."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
