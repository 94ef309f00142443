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
import functools
import gc
import json
import logging
import signal
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from uvicorn.importer import import_from_string

from zeroserve.coldstart import StartupTimeline
from zeroserve.errors import (
    LoadError,
    ModelNotBatched,
    ModelUnhealthy,
    NotSupported,
    Unavailable,
    ZeroserveError,
    http_status_for,
)
from zeroserve.errors import (
    ModelNotReady as ZeroserveModelNotReady,
)
from zeroserve.serving._kserve import kserve_argv
from zeroserve.serving.fast_path import FastPath
from zeroserve.serving.guarded_http import guarded_protocol
from zeroserve.serving.hot_route import HotRoute
from zeroserve.serving.kserve_model import PredictorModel
from zeroserve.serving.middleware import BodySizeLimit, CancelOnDisconnect
from zeroserve.serving.sockets import run_event_loop
from zeroserve.settings import ServerSettings
from zeroserve.spec.spec import changed_batching
from zeroserve.telemetry.logs import log_event, trace_id_of
from zeroserve.telemetry.metrics import record_error, record_startup
from zeroserve.telemetry.tracing import configure_tracing, timeline_spans

with kserve_argv():
    from kserve import ModelServer
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.errors import ModelNotFound, ModelNotReady
    from kserve.protocol.rest.server import RESTServer

logger = logging.getLogger("zeroserve")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
HEALTH_WATCH_S = 2.0  # how often a ready model's own healthy() is asked


async def zeroserve_error_response(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler for every ZeroserveError: status from HTTP_STATUS, JSON body."""
    assert isinstance(exc, ZeroserveError)
    status = http_status_for(exc)
    _error_seen(request, status, type(exc).__name__, str(exc))
    answer = JSONResponse(exc.to_body(), status_code=status)
    if isinstance(exc, Unavailable):  # a limit or a failed start: when to ask again
        answer.headers["Retry-After"] = str(exc.retry_after)
    return answer


async def fast_error_answer(
    scope: dict[str, Any], model: str, exc: ZeroserveError, receive: Any, send: Any
) -> None:
    """The fast path's answer to an error: the app's own handler, on the same request."""
    scope = {**scope, "path_params": {"model_name": model}}
    answer = await zeroserve_error_response(Request(scope, receive), exc)
    await answer(scope, receive, send)


async def not_implemented_response(request: Request, exc: Exception) -> JSONResponse:
    """KServe raises NotImplementedError for what a request asks of it and it lacks (a model
    version): the client can fix that, so 404 with a JSON body, not 501."""
    message = f"{exc}; this server keeps one version of each model: leave the version out"
    return await zeroserve_error_response(request, NotSupported(message))


async def client_left_response(request: Request, exc: Exception) -> Response:
    """A client that left before its body ended: nobody reads an answer (the HTTP layer told a
    half-closed one why with 400), and it is no server error to log a traceback for."""
    return Response(status_code=400)


async def model_not_ready_response(request: Request, exc: Exception) -> JSONResponse:
    """503 for a model still loading, with Retry-After, logged as one line (not a traceback)."""
    answer = await zeroserve_error_response(request, ZeroserveModelNotReady(str(exc)))
    answer.headers["Retry-After"] = "1"
    return answer


def _error_seen(request: Request, status: int, kind: str, message: str) -> None:
    """Count the error answer and log it as one JSON line with the request's trace id."""
    model = _model_of(request)
    record_error(model, status, kind)
    log_event(
        logging.WARNING if status >= 500 else logging.INFO,
        "error",
        status=status,
        type=kind,
        model=model,
        method=request.method,
        path=request.url.path,
        message=message,
        trace_id=trace_id_of(request.headers.get("traceparent")),
    )


def _model_of(request: Request) -> str:
    return str(request.path_params.get("model_name", ""))


def _note_signal(signum: int, frame: object) -> None:
    logger.info("stopped by %s", signal.Signals(signum).name)


class BatchingRoutes:
    """``GET|PUT /zeroserve/models/NAME/batching``: read or change batching while serving;
    ``GET /zeroserve/models/NAME/drift`` and ``/schema`` (what ``predict`` accepts, returns)."""

    PATH = "/zeroserve/models/{name}/batching"

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def install(self, app: Any) -> None:
        app.add_api_route(self.PATH, self.read, methods=["GET", "HEAD"])
        app.add_api_route(self.PATH, self.change, methods=["PUT"])
        app.add_api_route("/zeroserve/models/{name}/drift", self.drift, methods=["GET", "HEAD"])
        app.add_api_route("/zeroserve/models/{name}/schema", self.schema, methods=["GET", "HEAD"])

    async def schema(self, name: str) -> dict[str, Any]:
        """The JSON schemas of model NAME's request and result (``zeroserve validate``)."""
        model = self.registry.get_model(name)
        if not isinstance(model, PredictorModel):
            raise ModelNotFound(name)
        return {"model": name, **model.runner.declaration.signature.schemas()}

    async def drift(self, name: str) -> dict[str, Any]:
        """Input drift against the reference profile, and the outputs seen, for model NAME."""
        model = self.registry.get_model(name)
        if not isinstance(model, PredictorModel):
            raise ModelNotFound(name)
        if model.runner.monitor is None:  # its replicas count it, each their own (Ray)
            raise NotSupported(
                f"model '{name}' runs in Ray Serve replicas, which count drift each on their "
                "own; this server has no report of it"
            )
        report = model.runner.monitor.report()
        return {"model": name, "profile": model.runner.monitor.watches_inputs, **report}

    def _model(self, name: str) -> PredictorModel:
        model = self.registry.get_model(name)
        if model is None:
            raise ModelNotFound(name)
        if not isinstance(model, PredictorModel) or model.batchers is None:
            raise ModelNotBatched(model=name)
        return model

    async def read(self, name: str) -> dict[str, Any]:
        """The model's batching settings and how many instances wait in its queues."""
        batchers = self._model(name).batchers
        assert batchers is not None
        return {
            "model": name,
            "batching": batchers.settings.model_dump(),
            "queued_instances": batchers.queued_instances,
        }

    async def change(self, name: str, request: Request) -> dict[str, Any]:
        """Merge the JSON body into the settings; the next batch uses them."""
        batchers = self._model(name).batchers
        assert batchers is not None
        try:
            changes = await request.json()
        except ValueError:
            changes = None  # refused below, as every body that is not a JSON object
        settings = changed_batching(batchers.settings, changes)
        batchers.update(settings)
        logger.info("model '%s' batching is now %s", name, settings.model_dump())
        return await self.read(name)


def import_serving_dependencies() -> None:
    """Do the imports a server makes lazily on its way up (FastAPI imports ``pydantic.v1`` at its
    first route, uvicorn its protocol modules at start: ~0.3 s), so a forked worker skips them."""
    import pydantic.v1  # noqa: F401

    async def no_app(scope: Any, receive: Any, send: Any) -> None:
        return None

    uvicorn.Config(no_app, log_config=None, lifespan="on").load()


class LocalModelServer(ModelServer):  # type: ignore[misc]
    """``kserve.ModelServer`` serving zeroserve predictors on a socket zeroserve bound."""

    def __init__(self, settings: ServerSettings, timeout_keep_alive: int | None = None) -> None:
        super().__init__(
            http_port=settings.port,
            enable_grpc=False,
            enable_docs_url=True,
            timeout_keep_alive=timeout_keep_alive or max(1, round(settings.keep_alive_timeout)),
        )
        self.settings = settings
        self.on_ready: Callable[[], None] | None = None
        self.on_stopping: Callable[[str], None] | None = None  # a model asked the server to stop
        self.load_error: LoadError | None = None
        self.fatal_error: ZeroserveError | None = None
        self._http: uvicorn.Server | None = None
        self._health_watch: asyncio.Task[None] | None = None

    def serve(
        self,
        models: list[PredictorModel],
        sock: socket.socket,
        timeline: StartupTimeline | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """Serve until stopped (SIGINT/SIGTERM); raise LoadError if a model failed to load.

        ``on_ready`` is called once every model has loaded and warmed up.
        """
        self.timeline = timeline or StartupTimeline()
        self.on_ready = on_ready
        configure_tracing()
        for model in models:
            self.register_model(model)
            model.enable_latency_logging = self.settings.access_log  # KServe's per-request line
            model.runner.on_fatal = self._stop_for
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
        rest.config.app, fast_path = self._extend_app(app, models)
        rest.config.host = self.settings.host
        hot_route = None if fast_path is None else HotRoute(fast_path, self.settings.max_body_size)
        rest.config.http = guarded_protocol(self.settings, hot_route)  # head size and time limits
        self._http = uvicorn.Server(rest.config)
        # uvicorn re-raises SIGINT/SIGTERM once it has drained; a stop by signal is a clean exit.
        previous = {sig: signal.signal(sig, _note_signal) for sig in STOP_SIGNALS}
        try:
            run_event_loop(self._run(models, sock))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.load_error is not None:
            raise self.load_error
        if self.fatal_error is not None:
            raise self.fatal_error

    def _stop_for(self, error: ZeroserveError) -> None:
        """A model can no longer be trusted in this process: finish what is in flight, stop."""
        if self.fatal_error is not None:
            return
        logger.error("%s", error)
        self.fatal_error = error
        if self.on_stopping is not None:
            self.on_stopping(str(error))
        if self._http is not None:
            self._http.should_exit = True

    def _extend_app(
        self, app: Any, models: list[PredictorModel]
    ) -> tuple[BodySizeLimit, FastPath | None]:
        """zeroserve's error answers and routes on KServe's FastAPI app; the app to serve (it
        behind zeroserve's middleware), and its fast path (None when turned off)."""
        # KServe's model-repository routes load and unload models by name: any client could
        # unload a pod's only model while readiness still said ready. A zeroserve server serves
        # the models it was started with, so they are not offered.
        app.router.routes[:] = [
            route for route in app.router.routes if "/repository/" not in getattr(route, "path", "")
        ]
        app.add_exception_handler(ZeroserveError, zeroserve_error_response)
        app.add_exception_handler(ModelNotReady, model_not_ready_response)
        app.add_exception_handler(NotImplementedError, not_implemented_response)
        app.add_exception_handler(ClientDisconnect, client_left_response)
        BatchingRoutes(self.registered_models).install(app)
        if any(model.declaration.openai for model in models):
            from zeroserve.llm.openai_routes import install_openai_errors

            install_openai_errors(app)
        # Around the app, not inside its middleware stack: the hot routes skip FastAPI's and
        # Starlette's layers (the exception handlers above answer the same errors either way).
        served: Any = app
        fast_path = None
        if self.settings.fast_path:  # inside the body limit and the disconnect watch
            by_name = {model.name: model for model in models}
            served = fast_path = FastPath(served, models=by_name, error_answer=fast_error_answer)
        batched = [model.name for model in models if model.batchers is not None]
        if batched:
            paths = {f"/v1/models/{name}:predict" for name in batched}
            paths |= {f"/v2/models/{name}/infer" for name in batched}
            served = CancelOnDisconnect(served, paths=frozenset(paths))
        return BodySizeLimit(served, limit=self.settings.max_body_size), fast_path

    async def _run(self, models: list[PredictorModel], sock: socket.socket) -> None:
        assert self._http is not None
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(self.max_asyncio_workers))
        loader = asyncio.create_task(self._load(models))
        try:
            await self._http.serve(sockets=[sock])
        finally:
            loader.cancel()
            if self._health_watch is not None:
                self._health_watch.cancel()
            for model in models:
                await model.close_in_server()

    async def _load(self, models: list[PredictorModel]) -> None:
        assert self._http is not None
        for model in models:
            try:
                await model.load_in_server()
            except Exception as exc:  # never left running with a model that cannot get ready
                error = exc if isinstance(exc, LoadError) else _load_error(model.name, exc)
                logger.error("%s", error, exc_info=error.__cause__)
                self.load_error = error
                self._http.should_exit = True
                return
            logger.info("model '%s' is ready", model.name)
        # Imports and models are now loaded and live as long as the process; a full collection
        # over them took about 100 ms here, a pause every request in flight would wait out.
        gc.freeze()
        self.timeline.mark("ready", models=[model.name for model in models])
        logger.info("%s", self.timeline.to_json())
        names = [model.name for model in models]
        record_startup(self.timeline.as_dict(), names)
        timeline_spans(self.timeline.as_dict(), self.timeline.origin, ",".join(names))
        self.timeline.on_late_phase = functools.partial(_late_phase, self.timeline, names)
        self._health_watch = asyncio.create_task(self._watch_health(models))
        if self.on_ready is not None:
            self.on_ready()

    async def _watch_health(self, models: list[PredictorModel]) -> None:
        """Ask every model with its own ``healthy()`` each ``HEALTH_WATCH_S``; once one says no
        (or raises, or an ``async def`` hangs past ``HEALTH_CHECK_TIMEOUT_S``), stop, so that a
        fresh process replaces this one: under ``zeroserve serve`` the activator starts another
        replica, in a pod the container restarts."""
        watched = [model for model in models if model.runner.health_check is not None]
        while watched and self.fatal_error is None:
            await asyncio.sleep(HEALTH_WATCH_S)
            for model in watched:
                healthy, reason = await model.runner.health()
                if not healthy:
                    model.runner.ready = False
                    self._stop_for(ModelUnhealthy(model=model.name, reason=reason))
                    return


def _late_phase(timeline: StartupTimeline, models: list[str], phase: dict[str, Any]) -> None:
    """A phase of the start seen after ready (an LLM's first token): logged and counted too."""
    logger.info("%s", json.dumps({"event": "startup_phase", "models": models, **phase}))
    record_startup({"phases": [phase]}, models)
    timeline_spans({"phases": [phase]}, timeline.origin, ",".join(models))


def _load_error(model: str, cause: Exception) -> LoadError:
    error = LoadError(model=model, phase="load", cause=cause)
    error.__cause__ = cause
    return error
