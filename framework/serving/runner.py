"""The engine-neutral request path: validate, batch, call predict(), check, count for drift.

A ``PredictorRunner`` takes decoded requests (a v1 body, or v2 tensors as nested lists) and
returns results that JSON can carry, or raises an error from ``zeroserve.errors``. It imports no
serving engine: ``kserve_model.PredictorModel`` is a thin ``kserve.Model`` over it, and a second
engine (Ray Serve) reuses it as it is.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import resource
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from opentelemetry import trace

from zeroserve.coldstart import StartupTimeline
from zeroserve.errors import (
    InvalidPayload,
    LoadError,
    OutOfMemory,
    PredictError,
    UnencodableResult,
    ZeroserveError,
)
from zeroserve.serving.batching import BatcherPool, BatchObserver
from zeroserve.spec.decorator import Declaration
from zeroserve.telemetry.drift import DriftMonitor
from zeroserve.telemetry.metrics import PrometheusBatchObserver, drift_collector
from zeroserve.telemetry.tracing import server_span, tracer, tracing_on

logger = logging.getLogger("zeroserve")
OFFLOAD_AFTER_S = 0.02
HEALTH_CHECK_TIMEOUT_S = 10.0  # an async healthy() that hangs counts as unhealthy after it
OFFLOAD_AFTER_SLOW_CALLS = 3
PROBE_CALLS = 5
_RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)  # Linux: per thread


class PredictorRunner:
    """One predictor class, instantiated, behind the request path every engine shares.

    Readiness turns true only after ``load()`` and ``warmup()`` returned.
    """

    def __init__(
        self,
        user_class: type,
        declaration: Declaration,
        model_dir: Path | None,
        batch_observer: BatchObserver | None = None,
        timeline: StartupTimeline | None = None,
    ) -> None:
        self.name = declaration.spec.name
        self.declaration = declaration
        self.model_dir = model_dir
        self.instance = user_class()
        self.ready = False
        self.health_check = getattr(self.instance, "healthy", None)  # the user's, or None
        self.check_request = getattr(self.instance, "check_request", None)  # per request
        self.timeline = timeline or StartupTimeline()
        self.offload_predict = False
        self.span_attributes = {"zeroserve.model": self.name}
        self.monitor = DriftMonitor.for_folder(model_dir)
        drift_collector().monitors[self.name] = self.monitor
        self.slow_calls = 0
        self.probing = 0  # calls left to measure closely after one ran long
        self.on_fatal: Callable[[ZeroserveError], None] | None = None  # set by the server
        batching = declaration.spec.batching
        self.batchers: BatcherPool | None = None
        if batching is not None:
            observer = batch_observer or PrometheusBatchObserver(self.name)
            self.batchers = BatcherPool(
                declaration.signature.instances.name, self._predict_batch, batching, observer
            )

    async def load(self) -> None:
        """Run the user's load() and warmup(); raise LoadError naming the phase that failed.

        A plain ``def`` runs in a thread; an ``async def load`` (an engine with its own event
        loop tasks, such as vLLM's) runs on the server's event loop.
        """
        for phase in ("load", "warmup"):
            method = getattr(self.instance, phase, None)
            if method is None:
                continue
            args = (self.model_dir,) if phase == "load" and self.declaration.takes_model_dir else ()
            try:
                with self.timeline.phase(phase, model=self.name), self.timeline.active():
                    await _call_user(method, *args)
            except Exception as exc:
                raise LoadError(model=self.name, phase=phase, cause=exc) from exc
        self.ready = True

    async def close(self) -> None:
        """Run the user's optional close() once the server stopped (an engine's shutdown)."""
        close = getattr(self.instance, "close", None)
        if close is None:
            return
        try:
            await _call_user(close)
        except Exception:
            logger.exception("close() of model '%s' raised", self.name)

    async def healthy(self) -> bool:
        """Ready once loaded, and while the user's optional ``healthy()`` says so (vLLM's
        predictor asks its engine)."""
        return (await self.health())[0]

    async def health(self) -> tuple[bool, str]:
        """Whether the model is healthy, and if not why ("" if it is): not loaded, or its
        ``healthy()`` said no, raised, or (an ``async def``) gave no answer within
        ``HEALTH_CHECK_TIMEOUT_S``."""
        check = self.health_check
        if not self.ready:
            return False, "not loaded"
        if check is None:
            return True, ""
        try:
            answer = check()  # a plain def answers at once; an async def is awaited
            if inspect.isawaitable(answer):
                answer = await asyncio.wait_for(answer, HEALTH_CHECK_TIMEOUT_S)
        except TimeoutError:
            return False, f"healthy() gave no answer within {HEALTH_CHECK_TIMEOUT_S:g} s"
        except Exception as exc:
            return False, f"healthy() raised {type(exc).__name__}: {exc}"
        return (True, "") if answer else (False, "healthy() returned False")

    async def predict_v1(self, body: object, headers: Mapping[str, str] | None = None) -> Any:
        """The predictions for a v1 body (``{"instances": [...], "parameters": {...}}``)."""
        if isinstance(body, bytes | str):  # a JSON body sent without a JSON content type
            body = _json_body(body)
        kwargs = self.declaration.signature.bind_v1(body)
        if not tracing_on():  # the warm path: one coroutine less
            return await self._monitored(kwargs)
        return await self._traced(kwargs, headers)

    async def predict_v2(
        self,
        inputs: Mapping[str, Any],
        parameters: object,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The result for v2 input tensors (name -> nested lists) and their parameters."""
        kwargs = self.declaration.signature.bind_v2(inputs, parameters)
        return await self._traced(kwargs, headers)

    async def _traced(self, kwargs: dict[str, Any], headers: Mapping[str, str] | None) -> Any:
        with server_span("predict", headers, self.span_attributes):
            return await self._monitored(kwargs)

    async def _monitored(self, kwargs: dict[str, Any]) -> Any:
        """predict(), with its inputs and outputs counted for drift and output distribution."""
        instances = kwargs[self.declaration.signature.instances.name]
        if isinstance(instances, list) and not instances:
            return []  # no instances, no predictions: predict() is not asked
        if self.check_request is not None:  # before batching: a bad row fails its request only
            self.check_request(**kwargs)
        if self.monitor.watches_inputs:
            self.monitor.observe(instances)
        result = _plain(await self._call(kwargs))
        self._check_result(result)
        self.monitor.observe_outputs(result)
        return result

    def _check_result(self, result: Any) -> None:
        """UnencodableResult unless ``result`` fits the declared return type and JSON."""
        signature = self.declaration.signature
        reason = signature.check_result(result)
        if reason is None:
            try:
                orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
            except TypeError as exc:  # orjson.JSONEncodeError: a set, an object, a generator
                reason = str(exc)
        if reason is not None:
            raise UnencodableResult(
                model=self.name,
                returned=describe_result(result),
                declared=signature.returns_text,
                reason=reason,
            )

    async def _call(self, kwargs: dict[str, Any]) -> Any:
        if self.batchers is not None:
            if not tracing_on() or not trace.get_current_span().is_recording():
                return await self.batchers.submit(kwargs)
            with tracer().start_as_current_span("batch"):  # the queue wait and the batch call
                return await self.batchers.submit(kwargs)
        try:
            if self.declaration.signature.is_async:
                return await self.instance.predict(**kwargs)
            if self.offload_predict:
                call = functools.partial(self.instance.predict, **kwargs)
                return await asyncio.get_running_loop().run_in_executor(None, call)
            return self._call_inline(kwargs)
        except ZeroserveError:
            raise  # raised on purpose (InvalidPayload): answered as it says
        except Exception as exc:
            logger.exception("predict() of model '%s' raised", self.name)
            raise self._predict_error(exc) from exc

    async def _predict_batch(self, batch: list[Any], options: dict[str, Any]) -> list[Any]:
        """One predict() call for a whole batch; a plain ``def`` runs in a thread."""
        instances = {self.declaration.signature.instances.name: batch}
        try:
            if self.declaration.signature.is_async:
                result = await self.instance.predict(**instances, **options)
            else:
                call = functools.partial(self.instance.predict, **instances, **options)
                result = await asyncio.get_running_loop().run_in_executor(None, call)
            return list(_plain(result))
        except ZeroserveError:
            raise
        except Exception as exc:
            logger.exception(
                "predict() of model '%s' raised on a batch of %d", self.name, len(batch)
            )
            raise self._predict_error(exc) from exc

    def _predict_error(self, exc: Exception) -> PredictError:
        """The error to answer; after a MemoryError the process is no longer to be trusted, so
        readiness turns false and the server is asked to stop (a fresh process replaces it)."""
        if not isinstance(exc, MemoryError):
            return PredictError(model=self.name, cause=exc)
        error = OutOfMemory(model=self.name, cause=exc)
        self.ready = False
        if self.on_fatal is not None:
            self.on_fatal(error)
        return error

    def _call_inline(self, kwargs: dict[str, Any]) -> Any:
        """Run a plain ``def predict`` inline while it is fast, in a thread once it is slow.

        Handing a call to a thread costs about 0.2 ms here, more than a small model's whole
        prediction; but predictions that hold the event loop over OFFLOAD_AFTER_S would hold up
        health checks and other requests, so once a few did, every later call of this model runs
        in a thread. Time the process spent descheduled on a busy machine is not the model's:
        only its own CPU time, or a wait it made (I/O, sleep, a lock), counts. Measuring that
        costs system calls, so only the PROBE_CALLS calls after one that ran long are measured.
        """
        if self.probing:  # a call ran long lately: measure closely whose time it was
            return self._call_measured(kwargs)
        started = time.perf_counter()
        result = self.instance.predict(**kwargs)
        if time.perf_counter() - started > OFFLOAD_AFTER_S:
            self.probing = PROBE_CALLS
        return result

    def _call_measured(self, kwargs: dict[str, Any]) -> Any:
        """One inline call with its CPU time and context switches measured (system calls)."""
        self.probing -= 1
        switches, cpu_started = _context_switches(), time.thread_time()
        started = time.perf_counter()
        result = self.instance.predict(**kwargs)
        elapsed = time.perf_counter() - started
        cpu = time.thread_time() - cpu_started
        waits, preemptions = (
            after - before for after, before in zip(_context_switches(), switches, strict=True)
        )
        if held_the_loop(elapsed, cpu, waited=waits > 0 and preemptions == 0):
            self.slow_calls += 1
        if self.slow_calls >= OFFLOAD_AFTER_SLOW_CALLS:
            self.offload_predict = True
            logger.info(
                "predict() of model '%s' took %.0f ms; later calls run in a thread so the "
                "server keeps answering meanwhile",
                self.name,
                1000 * elapsed,
            )
        elif not self.probing:
            self.slow_calls = 0  # the long calls were the machine's, not the model's
        return result


def held_the_loop(elapsed_s: float, cpu_s: float, *, waited: bool) -> bool:
    """Whether an inline call held the event loop over OFFLOAD_AFTER_S by itself: with its own
    CPU time, or by waiting (it gave up the CPU: I/O, sleep, a lock, and was never preempted,
    so the time was the wait's). A call that ran long because other processes had the CPU
    did not: only a call that was never preempted counts its wall time."""
    return cpu_s > OFFLOAD_AFTER_S or (elapsed_s > OFFLOAD_AFTER_S and waited)


def _context_switches() -> tuple[int, int]:
    """This thread's voluntary (it waited) and involuntary (it was preempted) switches so far."""
    usage = resource.getrusage(_RUSAGE_THREAD)
    return usage.ru_nvcsw, usage.ru_nivcsw


async def _call_user(method: Any, *args: Any) -> Any:
    """Await an ``async def`` on the event loop; run a plain ``def`` in a thread (in this
    context: ``active_timeline()`` and tracing work there too)."""
    if inspect.iscoroutinefunction(method):
        return await method(*args)
    run = functools.partial(contextvars.copy_context().run, method, *args)
    return await asyncio.get_running_loop().run_in_executor(None, run)


def describe_result(result: Any) -> str:
    """``a set`` / ``a list of 3`` / ``an int``: what predict() returned, without its text."""
    kind = type(result).__name__
    size = f" of {len(result)}" if isinstance(result, list | tuple | dict) else ""
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}{size}"


def _plain(result: Any) -> Any:
    """Turn numpy results into JSON-ready lists; leave plain Python values alone."""
    to_list = getattr(result, "tolist", None)
    return to_list() if callable(to_list) else result


def _json_body(body: bytes | str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload(
            f"the request body is not JSON ({exc}); send a JSON object with "
            "Content-Type: application/json"
        ) from None
