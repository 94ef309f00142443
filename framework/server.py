"""Serve predictors on the real ``kserve.ModelServer``, bound to a chosen host.

KServe's REST server binds ``0.0.0.0`` and has no flag for it. zeroserve binds the listening socket
itself (so a busy port is a clear error before anything loads) and hands it to KServe's uvicorn
server through uvicorn's public ``serve(sockets=...)``. Models are registered before the socket
accepts traffic and turn ready only after ``load()`` and ``warmup()`` returned, so readiness routes
(``/v2/models/NAME/ready``, ``/v1/models/NAME``) tell the truth while a model loads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse
from uvicorn.importer import import_from_string

from zeroserve._kserve import kserve_argv
from zeroserve.adapter import PredictorModel
from zeroserve.errors import (
    LoadError,
    PayloadTooLarge,
    PredictError,
    UsageError,
    ZeroserveError,
    http_status_for,
)
from zeroserve.settings import ServerSettings

with kserve_argv():
    from kserve import ModelServer
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.errors import ModelNotReady
    from kserve.protocol.rest.server import RESTServer

logger = logging.getLogger("zeroserve")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodySizeLimit:
    """ASGI middleware: a body over ``limit`` bytes answers 413 with a JSON error.

    A declared ``Content-Length`` over the limit is refused before the body is read; a streamed
    body is counted as it arrives and refused once it passes the limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            error = PayloadTooLarge(limit_bytes=self.limit, received_bytes=declared)
            await JSONResponse(error.to_body(), status_code=413)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise PayloadTooLarge(limit_bytes=self.limit, received_bytes=received)
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def zeroserve_error_response(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler for every ZeroserveError: status from HTTP_STATUS, JSON body."""
    assert isinstance(exc, ZeroserveError)
    status = http_status_for(exc)
    if not isinstance(exc, PredictError):  # predict errors were logged with their traceback
        logger.warning("%s %s -> %d: %s", request.method, request.url.path, status, exc)
    return JSONResponse(exc.to_body(), status_code=status)


async def model_not_ready_response(request: Request, exc: Exception) -> JSONResponse:
    """503 for a model still loading, with Retry-After, logged as one line (not a traceback)."""
    logger.info("%s %s -> 503: %s", request.method, request.url.path, exc)
    body = {"error": str(exc), "type": "ModelNotReady"}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})


def _note_signal(signum: int, frame: object) -> None:
    logger.info("stopped by %s", signal.Signals(signum).name)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or UsageError saying what to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says so, and without it Nagle's algorithm costs about 30% of throughput.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} on {host} is in use by another program; pass --port with a free port"
            ) from None
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}; check --host") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class LocalModelServer(ModelServer):  # type: ignore[misc]
    """``kserve.ModelServer`` serving zeroserve predictors on a socket zeroserve bound."""

    def __init__(self, settings: ServerSettings) -> None:
        super().__init__(http_port=settings.port, enable_grpc=False, enable_docs_url=True)
        self.settings = settings
        self.load_error: LoadError | None = None
        self._http: uvicorn.Server | None = None

    def serve(self, models: list[PredictorModel], sock: socket.socket) -> None:
        """Serve until stopped (SIGINT/SIGTERM); raise LoadError if a model failed to load."""
        for model in models:
            self.register_model(model)
            model.enable_latency_logging = self.enable_latency_logging
        rest = RESTServer(
            FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            grace_period=self.grace_period,
            timeout_keep_alive=self.timeout_keep_alive,
        )
        rest.create_application()
        app = import_from_string(FASTAPI_APP_IMPORT_STRING)
        app.add_exception_handler(ZeroserveError, zeroserve_error_response)
        app.add_exception_handler(ModelNotReady, model_not_ready_response)
        app.add_middleware(BodySizeLimit, limit=self.settings.max_body_size)
        rest.config.host = self.settings.host
        rest.config.access_log = self.settings.access_log
        self._http = uvicorn.Server(rest.config)
        # uvicorn re-raises SIGINT/SIGTERM once it has drained; a stop by signal is a clean exit.
        previous = {sig: signal.signal(sig, _note_signal) for sig in STOP_SIGNALS}
        try:
            asyncio.run(self._run(models, sock))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.load_error is not None:
            raise self.load_error

    async def _run(self, models: list[PredictorModel], sock: socket.socket) -> None:
        assert self._http is not None
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(self.max_asyncio_workers))
        loader = asyncio.create_task(self._load(models))
        try:
            await self._http.serve(sockets=[sock])
        finally:
            loader.cancel()

    async def _load(self, models: list[PredictorModel]) -> None:
        assert self._http is not None
        loop = asyncio.get_running_loop()
        for model in models:
            try:
                await loop.run_in_executor(None, model.load)
            except LoadError as exc:
                logger.error("%s", exc, exc_info=exc.__cause__)
                self.load_error = exc
                self._http.should_exit = True
                return
            logger.info("model '%s' is ready", model.name)
