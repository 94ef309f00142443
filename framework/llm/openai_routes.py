"""KServe's OpenAI routes for predictors that answer them (``VLLMPredictor`` above all).

KServe's module (``kserve.protocol.rest.openai``) serves ``/openai/v1/completions``,
``/openai/v1/chat/completions`` and ``/openai/v1/models`` with vLLM's request types. KServe 0.21
imports those types from where vLLM 0.1x kept them; later vLLM releases moved them (the engine
protocol to ``vllm.entrypoints.serve.engine`` and ``vllm.entrypoints.generate.base``, the chat
types to ``vllm.renderers``). ``alias_moved_vllm_modules()`` registers the old module names as
aliases of the new ones, name by name, before KServe's module is imported; against a vLLM that
still has the old modules it changes nothing. This module imports vLLM: import it only for a
predictor that answers OpenAI routes.
"""

from __future__ import annotations

import functools
import importlib
import sys
import types
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse

from zeroserve.errors import VLLMVersionError, openai_error_body
from zeroserve.serving._kserve import kserve_argv
from zeroserve.serving.kserve_model import PredictorModel
from zeroserve.serving.runner import PredictorRunner

OPENAI_PREFIX = "/openai/"
# old module -> {name: the module that holds it now}; a module named alone moved whole
MOVED_VLLM_NAMES: dict[str, dict[str, str]] = {
    "vllm.entrypoints.openai.engine.protocol": {
        "DeltaMessage": "vllm.entrypoints.generate.base.protocol",
        "UsageInfo": "vllm.entrypoints.serve.engine.protocol",
        "ModelCard": "vllm.entrypoints.serve.engine.protocol",
        "ModelList": "vllm.entrypoints.serve.engine.protocol",
        "ErrorResponse": "vllm.entrypoints.serve.engine.protocol",
    },
}
MOVED_VLLM_MODULES = {"vllm.entrypoints.chat_utils": "vllm.renderers.chat_utils"}


def alias_moved_vllm_modules() -> None:
    """Let KServe 0.21's OpenAI module import vLLM's types under their old module names."""
    for old, new in MOVED_VLLM_MODULES.items():
        if not _importable(old):
            sys.modules[old] = _import_or_explain(new, old)
    for old, names in MOVED_VLLM_NAMES.items():
        if _importable(old):
            continue
        package, _, _ = old.rpartition(".")
        if not _importable(package):
            sys.modules[package] = types.ModuleType(package, "zeroserve: alias of moved vLLM code")
        alias = types.ModuleType(old, "zeroserve: alias of moved vLLM code")
        for name, home in names.items():
            setattr(alias, name, getattr(_import_or_explain(home, old), name))
        sys.modules[old] = alias


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError:
        return False
    return True


def _import_or_explain(module: str, wanted: str) -> types.ModuleType:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise VLLMVersionError(
            f"KServe's OpenAI routes need vLLM's {wanted} (or {module} in later vLLM releases) "
            "and the installed vLLM has neither; install a vLLM release from 0.8 on"
        ) from None


class _AnswersOpenAI:
    """The OpenAI methods of a predictor's ``kserve.Model``.

    The user's instance answers ``create_completion``/``create_chat_completion`` with a
    response, a stream of server-sent-event strings, or an OpenAI error; an error from vLLM is
    turned into KServe's error type so that KServe answers it with the error's status.
    """

    instance: Any

    async def create_completion(
        self, request: Any, raw_request: Request | None = None, context: Any = None
    ) -> Any:
        return _as_kserve_error(await self.instance.create_completion(request, raw_request))

    async def create_chat_completion(
        self, request: Any, raw_request: Request | None = None, context: Any = None
    ) -> Any:
        return _as_kserve_error(await self.instance.create_chat_completion(request, raw_request))


@functools.cache
def openai_model_class() -> type[PredictorModel]:
    """A ``PredictorModel`` that is also KServe's ``OpenAIGenerativeModel`` (imports vLLM)."""
    alias_moved_vllm_modules()
    with kserve_argv():
        from kserve.protocol.rest.openai import OpenAIGenerativeModel

    class OpenAIPredictorModel(_AnswersOpenAI, PredictorModel, OpenAIGenerativeModel):  # type: ignore[misc]
        def __init__(self, runner: PredictorRunner) -> None:
            super().__init__(runner)
            self.ready = False  # OpenAIModel assumes ready at once; this turns ready after load

    return OpenAIPredictorModel


def preimport_openai() -> list[str]:
    """Import what a model on the OpenAI routes needs (vLLM's request types, KServe's OpenAI
    module) in the model host, before it forks; return the module names."""
    openai_model_class()
    return ["kserve.protocol.rest.openai"]


def _as_kserve_error(result: Any) -> Any:
    error = getattr(result, "error", None)
    if error is None:  # a response or a stream: the usual case, nothing to import
        return result
    from kserve.protocol.rest.openai.errors import create_error_response
    from kserve.protocol.rest.openai.types import ErrorResponse

    if isinstance(result, ErrorResponse):
        return result
    return create_error_response(
        message=str(error.message),
        err_type=str(error.type),
        param=str(error.param or ""),
        status_code=HTTPStatus(int(error.code)),
    )


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """A request that does not fit OpenAI's schema: 400 in OpenAI's error shape on the OpenAI
    routes (as OpenAI and vLLM answer it); FastAPI's 422 elsewhere."""
    assert isinstance(exc, RequestValidationError)
    if not request.url.path.startswith(OPENAI_PREFIX):
        return await request_validation_exception_handler(request, exc)
    problems = "; ".join(_describe(error) for error in exc.errors())
    body = openai_error_body(problems or "invalid request", "BadRequestError", 400)
    return JSONResponse(body, status_code=400)


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{location}: {error.get('msg', 'invalid')}" if location else str(error.get("msg"))


async def unknown_model(request: Request, exc: Exception) -> JSONResponse:
    """An unknown model on an OpenAI route: 404 NotFoundError, as OpenAI and vLLM answer it."""
    if not request.url.path.startswith(OPENAI_PREFIX):
        from kserve.errors import model_not_found_handler

        return await model_not_found_handler(request, exc)  # type: ignore[no-any-return]
    body = openai_error_body(str(exc), "NotFoundError", 404, "model")
    return JSONResponse(body, status_code=404)


def install_openai_errors(app: FastAPI) -> None:
    """OpenAI-shaped errors on the OpenAI routes of ``app``."""
    from kserve.errors import ModelNotFound

    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(ModelNotFound, unknown_model)
