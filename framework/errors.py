"""Errors raised by zeroserve, and the one table: each error's HTTP status and CLI exit code.

Every error answer's body comes from the error object (``to_body()``); every status from
``HTTP_STATUS``; every exit code of the command line from ``EXIT_CODE`` (a cold-start error exits
as ``python -m zeroserve.coldstart preload`` documents, 3 to 6).

Hierarchy::

    ZeroserveError            root: every error zeroserve raises on purpose
    ├── SpecError             a @predictor declaration that cannot work (at decoration time)
    ├── ValidationFailed      `validate` or an analysed rollout refused the candidate (exit 8)
    ├── AnalysisPaused        an analysed rollout could not read its figures: it stopped (exit 9)
    ├── UsageError            a mistake outside a request: a bad path, no predictor, port in use
    │   ├── ServeFailed       the model host could not import or fetch the target (its exit code)
    │   └── ChangedMeanwhile  a cluster object changed between a command's read and its write
    ├── LifecycleError        a model event its current state does not allow (a bug, not input)
    ├── VLLMVersionError      the installed vLLM has none of the layouts KServe's routes know
    ├── Unavailable           a held request that cannot be served now: 503 with Retry-After
    ├── WorkerUnreachable     the activator cannot connect to a ready worker (502)
    ├── WorkerDied            the worker ended while answering (502)
    ├── ReplicaLost           a Ray replica (or its node) ended while answering (502)
    ├── DeployFailed          Ray Serve gave up on a model's application, or did not run it in time
    ├── ModelNotReady         a request for a model still loading (503, Retry-After)
    ├── RequestError          a request the server refuses; the client can fix it
    │   ├── UnknownModel      a model name this server does not serve (404)
    │   ├── RouteNotFound     no route at this path (404)
    │   ├── MethodNotAllowed  a method the route does not take (405)
    │   ├── NotSupported      something KServe offers but this server does not (a version) (404)
    │   ├── InvalidPayload    the body does not fit the predictor's request schema (400)
    │   ├── PayloadTooLarge   the body is over the configured size limit (413)
    │   ├── BatchTooLarge     more instances than max_batch_size where splitting is off (413)
    │   ├── MalformedRequest  bytes that are not HTTP/1.1 the server accepts (400)
    │   │   └── RequestCutShort  the client closed its sending side mid-request (400)
    │   ├── RequestTimeout    a client that stopped sending in the middle of a request (408)
    │   ├── HeadersTooLarge   a request line or headers over the configured size limit (431)
    │   ├── ExpectationFailed an Expect header other than 100-continue (417)
    │   └── ModelNotBatched   batching settings asked of a model that does not batch (409)
    ├── PredictError          the predictor's own predict() raised (500)
    │   └── OutOfMemory       predict() raised MemoryError: the process is replaced (503)
    ├── BatchResultMismatch   a batched predict() returned a wrong number of results (500)
    ├── UnencodableResult     predict() returned what cannot be answered as declared (500)
    ├── LoadError             the predictor's load() or warmup() raised; the server cannot serve it
    └── ModelUnhealthy        the predictor's healthy() said no once ready: the process is replaced
"""

from __future__ import annotations

import math
from typing import Any


class ZeroserveError(Exception):
    """Root of every error that zeroserve raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_body(self) -> dict[str, Any]:
        """The JSON body a client receives for this error."""
        return {"error": self.message, "type": type(self).__name__}

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by state, not by constructor (most take keyword arguments only), so an error
        raised in another process (a Ray replica) arrives as the same class and body."""
        return (_restore_error, (type(self), self.args, self.__dict__))


def _restore_error(
    kind: type[ZeroserveError], args: tuple[Any, ...], state: dict[str, Any]
) -> ZeroserveError:
    error = kind.__new__(kind)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class SpecError(ZeroserveError):
    """A @predictor declaration that cannot work; the message shows the fix."""


class UsageError(ZeroserveError):
    """A mistake in how zeroserve was called (bad path, no predictor found, port in use)."""


class ValidationFailed(ZeroserveError):
    """``zeroserve validate``: the candidate failed a check (the report says which and why)."""


class AnalysisPaused(ZeroserveError):
    """``zeroserve rollout --analyze``: the figures could not be read for too long; the rollout
    stopped where it was (never stepping, promoting or rolling back blind)."""


class ServeFailed(UsageError):
    """The model host could not import or fetch the target; ``exit_code`` is what its cause
    exits with (2 for a usage error, 3-6 for a cold-start error as ``preload`` documents)."""

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ChangedMeanwhile(UsageError):
    """A cluster object changed (not only its status) between a command's read and its write."""


class LifecycleError(ZeroserveError):
    """An event that the current state does not allow (a bug in the caller, not user input)."""


class VLLMVersionError(ZeroserveError):
    """The installed vLLM has none of the module layouts KServe's OpenAI routes know."""


class Unavailable(ZeroserveError):
    """A held request that cannot be served now: 503 with Retry-After; ``kind`` names the limit
    (QueueFull, StartTimeout, StartFailed, ModelFailed, ShuttingDown)."""

    def __init__(self, kind: str, message: str, *, model: str, retry_after: float) -> None:
        super().__init__(message)
        self.kind = kind
        self.model = model
        self.retry_after = max(1, math.ceil(retry_after))

    def to_body(self) -> dict[str, Any]:
        return {"error": self.message, "type": self.kind, "model": self.model}


class WorkerUnreachable(ZeroserveError):
    """The activator could not connect to a worker it had as ready."""

    def __init__(self, *, model: str, cause: BaseException) -> None:
        super().__init__(f"cannot reach the worker of model '{model}': {cause}; retry")
        self.model = model


class WorkerDied(ZeroserveError):
    """A worker ended while it answered a request."""

    def __init__(self, *, model: str, pid: int | None, code: int | None, how: str) -> None:
        super().__init__(
            f"the worker of model '{model}' (pid {pid}) ended while answering this request: "
            f"{how}; the model restarts on the next request"
        )
        self.model = model
        self.code = code

    def to_body(self) -> dict[str, Any]:
        return {**super().to_body(), "model": self.model, "exit_code": self.code}


class ReplicaLost(ZeroserveError):
    """A Ray replica, or the node it ran on, ended while it answered a request."""

    def __init__(self, *, model: str, cause: str) -> None:
        super().__init__(
            f"the Ray replica of model '{model}' ended while answering this request ({cause}); "
            "Ray Serve replaces it: retry the request"
        )
        self.model = model

    def to_body(self) -> dict[str, Any]:
        return {**super().to_body(), "model": self.model}


class DeployFailed(ZeroserveError):
    """Ray Serve did not run a model's application: it gave up on it, or the start timeout
    ended first; ``state`` and ``reason`` are what Serve said of it."""

    def __init__(self, model: str, state: str, reason: str) -> None:
        super().__init__(f"Ray Serve did not run model '{model}' (application {state}): {reason}")
        self.model = model
        self.state = state


class RequestError(ZeroserveError):
    """A request the server refuses because of what the client sent."""


class UnknownModel(RequestError):
    """A model name this server does not serve."""

    def __init__(self, *, model: str, served: list[str]) -> None:
        super().__init__(
            f"model '{model}' is not served here (models: {', '.join(served) or 'none'})"
        )
        self.model = model


class RouteNotFound(RequestError):
    """No route at this path."""

    def __init__(self, *, path: str) -> None:
        super().__init__(f"no route {path}")


class MethodNotAllowed(RequestError):
    """A method the route does not take."""

    def __init__(self, *, allowed: tuple[str, ...]) -> None:
        super().__init__(f"use {' or '.join(allowed)}")


class NotSupported(RequestError):
    """A request for what KServe offers but a zeroserve server does not (a model version)."""


class ModelNotReady(ZeroserveError):
    """A request for a model that is still loading (or no longer healthy)."""


class InvalidPayload(RequestError):
    """The request body does not fit the predictor's request schema."""

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        schema: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.details = details or []
        self.schema = schema

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        if self.details:
            body["details"] = self.details
        if self.schema is not None:
            body["expected_schema"] = self.schema
        return body


class PayloadTooLarge(RequestError):
    """The request body is larger than the server accepts."""

    def __init__(self, *, limit_bytes: int, received_bytes: int) -> None:
        super().__init__(
            f"request body of {received_bytes} bytes or more is over the limit of {limit_bytes} "
            "bytes; send fewer instances per request or raise the limit with "
            "--max-body-size (ZEROSERVE_SERVER__MAX_BODY_SIZE)"
        )
        self.limit_bytes = limit_bytes
        self.received_bytes = received_bytes


class MalformedRequest(RequestError):
    """Bytes the server cannot read as an HTTP/1.1 request it accepts."""


class RequestCutShort(MalformedRequest):
    """The client closed its sending side (a half-close) in the middle of a request: it can
    never complete, but the client can still read why."""

    def __init__(self, *, reading: str) -> None:
        super().__init__(
            f"the client stopped sending while the server was {reading}: the request is "
            "incomplete; send the whole request (its Content-Length bytes) before closing its "
            "sending side"
        )


class RequestTimeout(RequestError):
    """The client stopped sending in the middle of a request (slow headers, stalled body)."""

    def __init__(self, *, phase: str, limit_s: float) -> None:
        setting = "ZEROSERVE_SERVER__" + ("HEADER" if phase == "headers" else "BODY") + "_TIMEOUT"
        super().__init__(
            f"the request's {phase} did not arrive within {limit_s:g}s; send the whole request "
            f"without pausing, or raise the limit with {setting}"
        )
        self.phase = phase
        self.limit_s = limit_s


class HeadersTooLarge(RequestError):
    """The request line and headers are larger than the server accepts."""

    def __init__(self, *, limit_bytes: int) -> None:
        super().__init__(
            f"the request line and headers are over the limit of {limit_bytes} bytes; send "
            "smaller headers or raise the limit with --max-header-size "
            "(ZEROSERVE_SERVER__MAX_HEADER_SIZE)"
        )
        self.limit_bytes = limit_bytes


class ExpectationFailed(RequestError):
    """An Expect header asked for something other than 100-continue."""

    def __init__(self, *, expectation: str) -> None:
        super().__init__(
            f"Expect: {expectation!r} is not supported; the only expectation HTTP/1.1 defines is "
            "100-continue"
        )


class BatchTooLarge(RequestError):
    """A request carries more instances than one batch holds, and splitting is off."""

    def __init__(self, *, instances: int, max_batch_size: int) -> None:
        super().__init__(
            f"the request carries {instances} instances but a batch holds at most "
            f"{max_batch_size} and this model does not split requests (Batching(split=False)); "
            f"send at most {max_batch_size} instances per request"
        )
        self.instances = instances
        self.max_batch_size = max_batch_size


class ModelNotBatched(RequestError):
    """Batching settings were read or changed for a model declared without batching."""

    def __init__(self, *, model: str) -> None:
        super().__init__(
            f"model '{model}' does not batch; declare @predictor(batching=Batching(...)) to "
            "enable batching"
        )
        self.model = model


class BatchResultMismatch(ZeroserveError):
    """A batched predict() returned a number of results other than one per instance."""

    def __init__(self, *, instances: int, results: int) -> None:
        super().__init__(
            f"predict() returned {results} results for a batch of {instances} instances; "
            "a batched predict must return exactly one result per instance, in order"
        )
        self.instances = instances
        self.results = results


class UnencodableResult(ZeroserveError):
    """predict() returned a value that does not fit its declared return type, or that JSON or a
    v2 tensor cannot carry (a set, a generator, an arbitrary object)."""

    def __init__(self, *, model: str, returned: str, declared: str, reason: str) -> None:
        super().__init__(
            f"predict() of model '{model}' returned {returned}, which cannot be sent: {reason} "
            f"(declared return type: {declared}); return lists, numbers, strings, booleans or "
            "dicts of them (numpy arrays work too)"
        )
        self.model = model
        self.returned = returned
        self.declared = declared

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        body.update(model=self.model, returned=self.returned, declared=self.declared)
        return body


class PredictError(ZeroserveError):
    """The predictor's predict() raised; the original exception is the cause."""

    def __init__(self, *, model: str, cause: BaseException) -> None:
        super().__init__(f"predict() of model '{model}' raised {type(cause).__name__}: {cause}")
        self.model = model
        self.cause_type = type(cause).__name__

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        body.update(model=self.model, exception=self.cause_type)
        return body


class OutOfMemory(PredictError):
    """predict() raised MemoryError: the process stops so that a fresh one replaces it."""

    def __init__(self, *, model: str, cause: BaseException) -> None:
        super().__init__(model=model, cause=cause)
        self.message = (
            f"predict() of model '{model}' ran out of memory (MemoryError: {cause}); this server "
            "process stops so that a fresh one replaces it: retry the request"
        )
        self.args = (self.message,)


class LoadError(ZeroserveError):
    """The predictor's load() or warmup() raised, so the model cannot become ready."""

    def __init__(self, *, model: str, phase: str, cause: BaseException) -> None:
        super().__init__(f"{phase}() of model '{model}' raised {type(cause).__name__}: {cause}")
        self.model = model
        self.phase = phase


class ModelUnhealthy(ZeroserveError):
    """A ready model's own ``healthy()`` said no (an LLM whose engine died): the process stops so
    that a fresh one replaces it."""

    def __init__(self, *, model: str, reason: str) -> None:
        super().__init__(
            f"model '{model}' is no longer healthy ({reason}); this server process stops so that "
            "a fresh one replaces it"
        )
        self.model = model


# The one table: error class -> HTTP status, CLI exit code. Lookup walks the class's MRO, so a
# subclass inherits its parent's row unless it has one of its own.
HTTP_STATUS: dict[type[ZeroserveError], int] = {
    ZeroserveError: 500,
    RequestError: 400,
    UnknownModel: 404,
    RouteNotFound: 404,
    MethodNotAllowed: 405,
    NotSupported: 404,
    ModelNotReady: 503,
    InvalidPayload: 400,
    PayloadTooLarge: 413,
    BatchTooLarge: 413,
    MalformedRequest: 400,
    RequestTimeout: 408,
    HeadersTooLarge: 431,
    ExpectationFailed: 417,
    ModelNotBatched: 409,
    BatchResultMismatch: 500,
    UnencodableResult: 500,
    PredictError: 500,
    OutOfMemory: 503,
    LoadError: 503,
    ModelUnhealthy: 503,
    Unavailable: 503,
    WorkerUnreachable: 502,
    WorkerDied: 502,
    ReplicaLost: 502,
}
EXIT_CODE: dict[type[ZeroserveError], int] = {
    ZeroserveError: 1,
    SpecError: 2,
    UsageError: 2,
    ValidationFailed: 8,
    AnalysisPaused: 9,
}


def _row(table: dict[type[ZeroserveError], int], error: ZeroserveError, default: int) -> int:
    for klass in type(error).__mro__:
        if klass in table:
            return table[klass]
    return default


def http_status_for(error: ZeroserveError) -> int:
    """The HTTP status for an error, from HTTP_STATUS."""
    return _row(HTTP_STATUS, error, 500)


def exit_code_for(error: BaseException) -> int:
    """The CLI exit code for an error: EXIT_CODE for zeroserve's, preload's for cold-start ones."""
    if isinstance(error, ServeFailed):
        return error.exit_code
    if isinstance(error, ZeroserveError):
        return _row(EXIT_CODE, error, 1)
    from zeroserve.coldstart import ColdStartError
    from zeroserve.coldstart import exit_code_for as coldstart_exit_code

    return coldstart_exit_code(error) if isinstance(error, ColdStartError) else 1


def openai_error_body(message: str, err_type: str, status: int, param: str = "") -> dict[str, Any]:
    """OpenAI's error shape, which OpenAI's client libraries read: ``{"error": {"message",
    "type", "param", "code"}}``; the OpenAI routes answer their errors in it."""
    return {"error": {"message": message, "type": err_type, "param": param, "code": status}}
