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
import time
import uuid
from http import HTTPStatus
from pathlib import Path
from typing import Any

from zeroserve import LLMEngine, predictor, spec_of
from zeroserve.coldstart import StartupTimeline, active_timeline
from zeroserve.predictors.vllm_sleep import IdleSleep
from zeroserve.predictors.vllm_start import (
    forked_engine,
    sleep_mode_available,
    streaming_load_format,
    vllm_name,
)

logger = logging.getLogger("zeroserve")
ARGS_VARIABLE = "ZEROSERVE_VLLM_ARGS"


class VLLMPredictor:
    """Serve a causal language model with vLLM; see the module's documentation."""

    model: str | None = None  # used when the predictor has no model_uri
    max_tokens: int = 64  # per prompt of predict(); OpenAI requests say their own
    # imported once by the local model host, before it forks a worker per replica
    # (the server's modules and what the engine's processes import as they start)
    preimport_modules = ("zeroserve.predictors.vllm_preimport",)

    engine: Any = None
    sleeper: IdleSleep | None = None  # with llm=LLMEngine(sleep_after=...), where vLLM can sleep

    async def load(self, model_dir: Path | None = None) -> None:
        """Start vLLM's engine on the model folder and its OpenAI serving objects."""
        spec = spec_of(type(self))
        source = str(model_dir) if model_dir is not None else self.model
        if source is None:
            raise ValueError("give the predictor model_uri=... or a `model` class attribute")
        settings = spec.llm or LLMEngine()
        can_sleep = settings.sleep_after is not None and _sleep_mode(spec.name)
        args = await self._start_engine(source, spec.name, settings, can_sleep)
        if can_sleep and settings.sleep_after is not None:
            self.sleeper = IdleSleep(self.engine, spec.name, settings.sleep_after)
            self._watching = asyncio.get_running_loop().create_task(self.sleeper.watch())
        self.engine.generate = _observed(self.engine.generate, active_timeline(), self.sleeper)
        from starlette.datastructures import State

        state = State()
        tasks = await self.engine.get_supported_tasks()
        await vllm_name("init_app_state")(self.engine, state, args, tasks)
        self.completions = state.openai_serving_completion
        self.chats = state.openai_serving_chat

    async def _start_engine(
        self, source: str, name: str, settings: LLMEngine, sleep_mode: bool
    ) -> Any:
        """Start the engine, with a streaming loader where one was chosen for these weights and
        with vLLM's default loader if that start fails; return the arguments it started with."""
        args = engine_arguments(source, name, settings, sleep_mode, streaming=True)
        try:
            self._scope = forked_engine(args)
            self.engine = await self._scope.__aenter__()
            return args
        except Exception as exc:
            default = engine_arguments(source, name, settings, sleep_mode, streaming=False)
            if default.load_format == args.load_format:  # not a loader chosen here: no retry
                raise
            logger.warning(
                "model '%s': loading with %s failed (%s); loading with vLLM's default loader",
                name,
                args.load_format,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
        self._scope = forked_engine(default)
        self.engine = await self._scope.__aenter__()
        return default

    async def close(self) -> None:
        """Shut the engine down (its core process and shared memory) when the server stops."""
        if self.sleeper is not None:
            self._watching.cancel()
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
            answer = await self.completions.create_completion(request, raw_request)
        except Exception as exc:  # vLLM raises what its own server answers as an error body
            answer = _error_response(exc)
        return self._unless_engine_died(answer)

    async def create_chat_completion(self, request: Any, raw_request: Any = None) -> Any:
        """An OpenAI chat completion (with the tokenizer's chat template), as above."""
        try:
            answer = await self.chats.create_chat_completion(request, raw_request)
        except Exception as exc:
            answer = _error_response(exc)
        return self._unless_engine_died(answer)

    def _unless_engine_died(self, answer: Any) -> Any:
        """The answer, or where the engine died under it (vLLM answers 500) a 503 that says the
        worker is being replaced: the server's health watch stops it, a fresh one starts."""
        if self.engine is None or not getattr(self.engine, "errored", False):
            return answer
        if getattr(getattr(answer, "error", None), "code", 0) < 500:
            return answer
        message = "the model's engine stopped; a fresh worker replaces this one: retry the request"
        return vllm_name("create_error_response")(
            message, err_type="ServiceUnavailableError", status_code=HTTPStatus.SERVICE_UNAVAILABLE
        )

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
    return vllm_name("create_error_response")(exc)


def engine_arguments(
    source: str, name: str, settings: LLMEngine, sleep_mode: bool = False, streaming: bool = False
) -> Any:
    """vLLM's parsed server arguments: the model, its served name, and the engine settings
    (``ZEROSERVE_VLLM_ARGS`` replaces the settings where a manifest sets it); with
    ``--enable-sleep-mode`` where the engine is to sleep when idle, and with ``streaming`` the
    streaming loader chosen for these weights, if any (``vllm_start.streaming_load_format``)."""
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    override = os.environ.get(ARGS_VARIABLE)
    chosen = shlex.split(override) if override else settings.vllm_args()
    if sleep_mode and "--enable-sleep-mode" not in chosen:
        chosen.append("--enable-sleep-mode")
    if streaming:
        chosen += streaming_load_format(source, chosen)
    parser = vllm_name("make_arg_parser")(FlexibleArgumentParser(prog="zeroserve"))
    try:
        args = parser.parse_args(["--model", source, "--served-model-name", name, *chosen])
    except SystemExit:  # argparse printed what was wrong
        raise ValueError(f"vLLM refused the engine arguments {chosen}") from None
    vllm_name("validate_parsed_serve_args")(args)
    return args


def _sleep_mode(model: str) -> bool:
    """Whether this engine can sleep; where it cannot, say once that the state is skipped."""
    available = sleep_mode_available()
    timeline = active_timeline()
    if timeline is not None:
        timeline.mark("sleep_mode", available=available)
    if not available:
        logger.info(
            "model '%s': llm.sleep_after is set, but vLLM has no sleep mode on this device: "
            "the engine stays up until the model scales to zero",
            model,
        )
    return available


def _observed(generate: Any, timeline: StartupTimeline | None, sleeper: IdleSleep | None) -> Any:
    """The engine's ``generate`` (which vLLM's OpenAI serving calls too), waking a sleeping engine
    first, and adding a ``first_token`` phase to the start's timeline, from the engine up to its
    first output."""
    pending = [time.monotonic()] if timeline is not None else []
    serving = sleeper.serving if sleeper is not None else contextlib.nullcontext

    async def generate_observed(*args: Any, **kwargs: Any) -> Any:
        async with serving():
            async for output in generate(*args, **kwargs):
                if pending and timeline is not None:
                    timeline.record("first_token", pending.pop(), time.monotonic())
                yield output

    return generate_observed


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
