"""An LLM predictor on vLLM's async engine: continuous batching and OpenAI-compatible routes.

Subclass and decorate::

    @predictor(name="tiny-llm", model_uri="s3://models/tiny-llm", llm=LLMEngine(max_model_len=512))
    class TinyLLM(VLLMPredictor):
        pass

or configure one in a line: ``TinyLLM = vllm_predictor("tiny-llm", "s3://models/tiny-llm")``.
The weights come from ``model_uri`` through zeroserve's cache (or from ``model``, a local folder or
a model id vLLM resolves itself). The engine starts on the server's event loop with the arguments
in ``llm=LLMEngine(...)``, or those in ``ZEROSERVE_VLLM_ARGS`` where the manifest sets them.
Requests on ``/openai/v1/completions`` and ``/openai/v1/chat/completions`` are answered by vLLM's
own OpenAI serving code (validation, chat template, streaming, usage); ``predict`` completes a list
of prompts for the v1/v2 routes. vLLM is imported only here, when the engine starts
(``pip install 'zeroserve[llm]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import sys
import uuid
from pathlib import Path
from typing import Any

from zeroserve import LLMEngine, predictor, spec_of

logger = logging.getLogger("zeroserve")
ARGS_VARIABLE = "ZEROSERVE_VLLM_ARGS"


class VLLMPredictor:
    """Serve a causal language model with vLLM; see the module's documentation."""

    model: str | None = None  # used when the predictor has no model_uri
    max_tokens: int = 64  # per prompt of predict(); OpenAI requests say their own
    # imported once by the local model host, before it forks a worker per replica
    preimport_modules = (
        "vllm.entrypoints.launchers.api_server.entry",
        "vllm.entrypoints.launchers.api_server.app_state",
        "vllm.entrypoints.launchers.cli_args",
    )

    engine: Any = None

    async def load(self, model_dir: Path | None = None) -> None:
        """Start vLLM's engine on the model folder and its OpenAI serving objects."""
        spec = spec_of(type(self))
        source = str(model_dir) if model_dir is not None else self.model
        if source is None:
            raise ValueError("give the predictor model_uri=... or a `model` class attribute")
        args = engine_arguments(source, spec.name, spec.llm or LLMEngine())
        self._scope = _engine_scope(args)
        self.engine = await self._scope.__aenter__()
        from starlette.datastructures import State
        from vllm.entrypoints.launchers.api_server.app_state import init_app_state

        state = State()
        tasks = await self.engine.get_supported_tasks()
        await init_app_state(self.engine, state, args, tasks)
        self.completions = state.openai_serving_completion
        self.chats = state.openai_serving_chat

    async def close(self) -> None:
        """Shut the engine down (its core process and shared memory) when the server stops."""
        if self.engine is not None:
            self.engine = None
            await self._scope.__aexit__(None, None, None)

    async def predict(self, instances: list[str]) -> list[str]:
        """Complete each prompt (up to ``max_tokens`` tokens); they share the engine's batches."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=self.max_tokens)
        return list(await asyncio.gather(*(self._complete(p, params) for p in instances)))

    async def _complete(self, prompt: str, params: Any) -> str:
        text = ""
        async for output in self.engine.generate(prompt, params, uuid.uuid4().hex):
            text = output.outputs[0].text
        return text

    async def create_completion(self, request: Any, raw_request: Any = None) -> Any:
        """An OpenAI completion: the response, its stream of events, or an OpenAI error."""
        try:
            return await self.completions.create_completion(request, raw_request)
        except Exception as exc:  # vLLM raises what its own server answers as an error body
            return _error_response(exc)

    async def create_chat_completion(self, request: Any, raw_request: Any = None) -> Any:
        """An OpenAI chat completion (with the tokenizer's chat template), as above."""
        try:
            return await self.chats.create_chat_completion(request, raw_request)
        except Exception as exc:
            return _error_response(exc)

    async def healthy(self) -> bool:
        """Whether the engine can still serve (False once its core process died)."""
        if self.engine is None:
            return False
        try:
            await self.engine.check_health()
        except Exception:
            return False
        return True


def _error_response(exc: Exception) -> Any:
    """vLLM's own mapping of an exception to an OpenAI error (a bad request answers 400)."""
    from vllm.entrypoints.serve.exception_handling.error_response import create_error_response

    return create_error_response(exc)


def engine_arguments(source: str, name: str, settings: LLMEngine) -> Any:
    """vLLM's parsed server arguments: the model, its served name, and the engine settings
    (``ZEROSERVE_VLLM_ARGS`` replaces the settings where a manifest sets it)."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    override = os.environ.get(ARGS_VARIABLE)
    chosen = shlex.split(override) if override else settings.vllm_args()
    parser = make_arg_parser(FlexibleArgumentParser(prog="zeroserve"))
    try:
        args = parser.parse_args(["--model", source, "--served-model-name", name, *chosen])
    except SystemExit:  # argparse printed what was wrong
        raise ValueError(f"vLLM refused the engine arguments {chosen}") from None
    validate_parsed_serve_args(args)
    return args


def _engine_scope(args: Any) -> contextlib.AbstractAsyncContextManager[Any]:
    from vllm.entrypoints.launchers.api_server.entry import build_async_engine_client

    return build_async_engine_client(args)  # type: ignore[no-any-return]


def vllm_predictor(
    name: str, model_uri: str | None = None, *, model: str | None = None, **settings: Any
) -> type[VLLMPredictor]:
    """A decorated VLLMPredictor from configuration alone, e.g.
    ``TinyLLM = vllm_predictor("tiny-llm", "s3://models/tiny-llm", llm={"max_model_len": 512})``;
    ``settings`` are the other ``@predictor`` arguments."""
    class_name = "".join(part.capitalize() for part in name.split("-")) or "LLM"
    caller = sys._getframe(1).f_globals.get("__name__", __name__)
    namespace = {"model": model, "__module__": caller, "__qualname__": class_name}
    cls = type(class_name, (VLLMPredictor,), namespace)
    return predictor(name=name, model_uri=model_uri, **settings)(cls)
