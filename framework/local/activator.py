"""The local activator: one port, KServe's routes by model name, models scaled to and from zero.

Model and readiness routes that need no worker are answered here (``/v1/models``,
``/v2/models/NAME/ready``, health, ``/zeroserve/status``, the console at ``/zeroserve/``);
everything else for a model is
forwarded to one of its workers, which the model's pool starts on demand.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import signal
import socket
from typing import Any

import orjson

from zeroserve import __version__, console
from zeroserve.errors import (
    InvalidPayload,
    MethodNotAllowed,
    ModelNotBatched,
    RouteNotFound,
    ServeFailed,
    UnknownModel,
    UsageError,
)
from zeroserve.llm.routing import MODEL_LIST, OpenAIRouting
from zeroserve.local.background import Background
from zeroserve.local.host import HostEvent, HostLost, ModelHost
from zeroserve.local.lifecycle import ModelState
from zeroserve.local.pool import ModelPool
from zeroserve.local.protocol import Hello, WorkerOptions
from zeroserve.local.split import TrafficSplit
from zeroserve.local.split_config import SplitPlan, plan_splits
from zeroserve.local.status import pool_status
from zeroserve.local.upstream import ReplicaState
from zeroserve.local.wire import ClientConnection, Request, sweep_timeouts
from zeroserve.serving.sockets import run_event_loop
from zeroserve.settings import Settings
from zeroserve.spec.spec import Batching, changed_batching
from zeroserve.telemetry.metrics import record_startup
from zeroserve.telemetry.tracing import configure_tracing

logger = logging.getLogger("zeroserve")
MODEL_ROUTE = re.compile(r"^/v[12]/models/([^/:]+)(.*)$")
ADMIN_ROUTE = re.compile(r"^/zeroserve/models/([^/]+)/(batching|drift|schema)$")
SPLIT_ROUTE = re.compile(r"^/zeroserve/splits/([^/]+)$")
LOCAL_ROUTES = frozenset(
    ("/", "/v2/health/live", "/v2/health/ready", "/v1/health/ready", "/v2", "/v1/models")
    + (MODEL_LIST, "/zeroserve/status", "/metrics", console.OVERVIEW_PATH)
)


class Activator:
    """Serves a target's models behind one socket until SIGINT/SIGTERM, then drains them."""

    def __init__(self, target: str, settings: Settings) -> None:
        self.target = target
        self.all_settings = settings  # handed to the model host and its workers
        self.server_settings = settings.server
        self.settings = settings.local
        self.pools: dict[str, ModelPool] = {}
        self.splits: dict[str, TrafficSplit] = {}  # names answered by versions (--split)
        self.openai = OpenAIRouting([])  # the models answering /openai/v1/* (from the hello)
        self.hello: Hello | None = None
        self.stopping: asyncio.Event | None = None
        self.background = Background()
        self.connections: set[ClientConnection] = set()

    def serve(self, sock: socket.socket) -> None:
        """Run until stopped; raise ServeFailed if the target cannot be served."""
        run_event_loop(self._main(sock))

    async def _main(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        configure_tracing()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stop, signum)
        host = ModelHost(self.target, self.all_settings, self._on_event)
        try:
            self.hello = hello = await host.start(self.settings.start_timeout)
            plans = self._plan_splits(hello)
        except (ServeFailed, UsageError):
            await host.close()
            raise
        record_startup(hello.timeline, [model.name for model in hello.models])
        options = WorkerOptions(
            max_body_size=self.server_settings.max_body_size,
            max_header_size=self.server_settings.max_header_size,
            access_log=self.server_settings.access_log,
            fast_path=self.server_settings.fast_path,
        )
        for model in hello.models:
            self.pools[model.name] = ModelPool(model.spec, host, self.settings, options)
        self.splits = {plan.route: TrafficSplit(plan, self.pools) for plan in plans}
        self.openai = OpenAIRouting([model.name for model in hello.models if model.openai])
        limits, connections = self.server_settings, self.connections
        server = await loop.create_server(
            lambda: ClientConnection(self.handle, limits, connections), sock=sock
        )
        sweeper = loop.create_task(sweep_timeouts(connections))
        for pool in self.pools.values():
            pool.start_warm()
        ticker = loop.create_task(self._tick())
        gc.freeze()  # what start-up made lives as long as the process: no collection scans it
        where = "http://{}:{}".format(*sock.getsockname()[:2])
        logger.info(
            "zeroserve: serving %s on %s (console at %s/zeroserve/, docs at %s/docs); each model "
            "starts on its first request and stops when idle",
            ", ".join(self.pools),
            where,
            where,
            where,
        )
        await self.stopping.wait()
        server.close()
        ticker.cancel()
        sweeper.cancel()
        grace = self.settings.drain_grace
        await asyncio.gather(*(pool.shutdown(grace) for pool in self.pools.values()))
        await host.close()
        logger.info("activator stopped; every worker has exited")

    def _plan_splits(self, hello: Hello) -> list[SplitPlan]:
        specs = {model.name: model.spec for model in hello.models}
        plans = plan_splits(self.settings.splits, self.settings.shadows, specs)
        for plan in plans:
            shadow = f"; shadow {plan.shadow.model}" if plan.shadow else ""
            weights = ", ".join(f"{v.model} {v.weight}%" for v in plan.versions)
            logger.info("zeroserve: '%s' is answered by %s%s", plan.route, weights, shadow)
        return plans

    def _stop(self, signum: int) -> None:
        logger.info("stopped by %s: draining models", signal.Signals(signum).name)
        assert self.stopping is not None
        self.stopping.set()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick)
            for pool in self.pools.values():
                try:
                    pool.tick()
                except Exception:  # one model's bug must not stop scaling for the others
                    logger.exception("model '%s': scaling tick failed", pool.name)

    def _on_event(self, message: HostEvent) -> None:
        if isinstance(message, HostLost):
            for pool in self.pools.values():
                pool.host_lost(message.code)
            return
        replica_id = getattr(message, "replica_id", None)
        for pool in self.pools.values():
            replica = pool.replicas.get(replica_id) if replica_id else None
            if replica is not None:
                pool.on_event(replica, message)
                return

    # ---- routing -------------------------------------------------------------------------
    def handle(self, request: Request, client: ClientConnection) -> None:
        path = request.path
        match = MODEL_ROUTE.match(path)
        if match is not None:
            name, rest = match.groups()
            if rest == "/ready" or (rest == "" and path.startswith("/v1/")):
                self._readiness(name, client)
            else:
                self._forward(name, request, client)
            return
        match = ADMIN_ROUTE.match(path)
        split_match = SPLIT_ROUTE.match(path)
        if split_match is not None:
            self._split_admin(split_match.group(1), request, client)
        elif match is not None and match.group(2) == "batching":
            self._batching(match.group(1), request, client)
        elif match is not None:  # drift (one replica's window), schema
            self._forward(match.group(1), request, client)
        elif OpenAIRouting.routed(path):
            self._openai(request, client)
        elif path in ("/docs", "/openapi.json", "/docs/oauth2-redirect") and self.pools:
            self._forward(next(iter(self.pools)), request, client)  # KServe's routes: all alike
        else:
            self._local(path, request, client)

    def _forward(self, name: str, request: Request, client: ClientConnection) -> None:
        pool = self.pools.get(name)
        split = self.splits.get(name)
        if split is not None:
            split.route(request, client)
        elif pool is None:
            client.respond_error(self._unknown(name))
        else:
            pool.route(request, client)

    def _unknown(self, name: str) -> UnknownModel:
        return UnknownModel(model=name, served=[*self.pools, *self.splits.keys() - self.pools])

    def _readiness(self, name: str, client: ClientConnection) -> None:
        split = self.splits.get(name)
        names = [v.model for v in split.versions] if split is not None else [name]
        pools = [self.pools[each] for each in names if each in self.pools]
        if not pools:
            client.respond_error(self._unknown(name))
            return
        states = [pool.lifecycle.state for pool in pools]
        ready = any(state is not ModelState.FAILED for state in states)
        body = {"name": name, "ready": ready, "state": str(states[0])}
        if split is not None:
            body["versions"] = {
                v.label: str(self.pools[v.model].lifecycle.state) for v in split.versions
            }
        client.respond(200 if ready else 503, body)

    def _split_admin(self, name: str, request: Request, client: ClientConnection) -> None:
        """GET: a split's weights and figures (``?since=N``: answers numbered after N). PUT
        ``{"weights": {...}}``: new weights, from the next request on."""
        split = self.splits.get(name)
        if split is None:
            served = ", ".join(self.splits) or "none (serve with --split or --shadow)"
            client.respond_error(RouteNotFound(path=f"{request.path}: splits are {served}"))
        elif request.method in (b"GET", b"HEAD"):
            query = request.url.partition(b"?")[2].decode("latin-1")
            since = re.search(r"(?:^|&)since=(\d+)", query)
            client.respond(200, split.describe(int(since.group(1)) if since else 0))
        elif request.method != b"PUT":
            client.respond_error(MethodNotAllowed(allowed=("GET", "PUT")), {"allow": "GET, PUT"})
        else:
            try:
                split.change_weights(bytes(request.body))
            except InvalidPayload as exc:
                client.respond_error(exc)
                return
            client.respond(200, split.describe(split.numbered))

    def _batching(self, name: str, request: Request, client: ClientConnection) -> None:
        """GET: a running replica's settings and queue (the stored settings at zero). PUT:
        checked once here, kept for replicas started later, sent to each running one once."""
        pool = self.pools.get(name)
        if pool is None:
            client.respond_error(self._unknown(name))
            return
        current = pool.batching
        if current is None:
            client.respond_error(ModelNotBatched(model=name))
            return
        if request.method == b"GET" and pool.least_loaded() is not None:
            self._forward(name, request, client)
        elif request.method in (b"GET", b"HEAD"):
            at_zero = {"model": name, "batching": current.model_dump(), "queued_instances": 0}
            client.respond(200, {**at_zero, "replicas": 0})
        elif request.method != b"PUT":
            client.respond_error(MethodNotAllowed(allowed=("GET", "PUT")))
        else:
            try:
                changed = changed_batching(current, orjson.loads(request.body))
            except orjson.JSONDecodeError:
                changed = None
            except InvalidPayload as exc:
                client.respond_error(exc)
                return
            if changed is None:
                client.respond_error(InvalidPayload("batching: the body is not JSON"))
                return
            pool.change_batching(changed)  # replicas started later get it
            task = self.background.keep(self._push_batching(pool, changed, client))
            client.on_lost = task.cancel

    async def _push_batching(self, pool: ModelPool, changed: Batching, client: Any) -> None:
        """Send a batching change to every running replica once, then answer the client."""
        import httpx

        body = orjson.dumps(changed.model_dump())
        ports = [r.port for r in pool.replicas.values() if r.state is ReplicaState.READY]
        async with httpx.AsyncClient(timeout=10) as http:
            for port in ports:
                url = f"http://127.0.0.1:{port}/zeroserve/models/{pool.name}/batching"
                try:
                    await http.put(url, content=body)
                except httpx.TransportError as exc:  # a replica that is stopping
                    logger.warning("batching change not delivered to port %s: %s", port, exc)
        logger.info("model '%s' batching is now %s", pool.name, changed.model_dump())
        answer = {"model": pool.name, "batching": changed.model_dump(), "replicas": len(ports)}
        client.respond(200, answer)

    def _openai(self, request: Request, client: ClientConnection) -> None:
        name, refusal = self.openai.model_for(request.body, request.method)
        if refusal is not None:
            status, body = refusal
            client.respond(status, body, {"allow": "POST"} if status == 405 else None)
        else:
            self._forward(str(name), request, client)

    def _local(self, path: str, request: Request, client: ClientConnection) -> None:
        """The routes answered here: each reads, so only GET and HEAD are taken."""
        if request.method not in (b"GET", b"HEAD") and (
            path in LOCAL_ROUTES or console.asset(path)
        ):
            client.respond_error(MethodNotAllowed(allowed=("GET", "HEAD")), {"allow": "GET, HEAD"})
        else:
            self._read(path, client)

    def _read(self, path: str, client: ClientConnection) -> None:
        if path in ("/", "/v2/health/live"):
            client.respond(200, {"status": "alive"})
        elif path in ("/v2/health/ready", "/v1/health/ready"):
            client.respond(200, {"ready": True})
        elif path == "/v2":
            client.respond(200, {"name": "zeroserve", "version": __version__, "extensions": []})
        elif path == "/v1/models":
            states = {name: str(pool.lifecycle.state) for name, pool in self.pools.items()}
            names = [*self.pools, *self.splits.keys() - self.pools]
            client.respond(200, {"models": names, "states": states})
        elif path == MODEL_LIST:
            client.respond(200, self.openai.model_list())
        elif path == "/zeroserve/status":
            client.respond(200, self.status())
        elif path == "/metrics":
            client.on_lost = self.background.keep(self._metrics(client)).cancel
        elif path == console.OVERVIEW_PATH:
            client.on_lost = self.background.keep(self._overview(client)).cancel
        elif (page := console.asset(path)) is not None:
            client.respond_bytes(200, *page, console.HEADERS)
        else:
            client.respond_error(RouteNotFound(path=path))

    async def _metrics(self, client: ClientConnection) -> None:
        from zeroserve.local.metrics import PROMETHEUS_TEXT, scrape

        client.respond_bytes(200, await scrape(self.pools), PROMETHEUS_TEXT)

    async def _overview(self, client: ClientConnection) -> None:
        from zeroserve.local.metrics import scraped_families
        from zeroserve.telemetry.overview import overview

        client.respond(200, overview(await scraped_families(self.pools), self.pools))

    def status(self) -> dict[str, Any]:
        hello = self.hello
        return {
            "pid": os.getpid(),
            "target": self.target,
            "fork": hello is not None and hello.fork,
            "fork_off_reason": hello.reason if hello is not None else None,
            "host_timeline": hello.timeline if hello is not None else None,
            "models": {name: pool_status(pool) for name, pool in self.pools.items()},
            "splits": {name: split.summary() for name, split in self.splits.items()},
        }
