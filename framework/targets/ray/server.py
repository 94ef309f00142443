"""``zeroserve serve --engine ray``: the front server, its status route and its Ray poller."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response

from zeroserve import console
from zeroserve.serving.fast_path import FastPath
from zeroserve.serving.kserve_model import PredictorModel
from zeroserve.serving.loader import FoundPredictor
from zeroserve.serving.middleware import BodySizeLimit
from zeroserve.serving.server import LocalModelServer
from zeroserve.settings import Settings
from zeroserve.targets.ray.engine import RayEngine
from zeroserve.targets.ray.front import ModelTracker, RemoteRunner
from zeroserve.telemetry.overview import overview

logger = logging.getLogger("zeroserve")
POLL_EVERY_S = 0.25


class RayFrontServer(LocalModelServer):
    """The local server's routes and answers, with the models' replicas on Ray."""

    def __init__(self, settings: Settings, engine: RayEngine) -> None:
        super().__init__(settings.server)
        self.engine = engine
        self.trackers: dict[str, ModelTracker] = {}

    def models_for(self, found: list[FoundPredictor], settings: Settings) -> list[PredictorModel]:
        models = []
        for item in found:
            tracker = self.trackers[item.name] = ModelTracker(item)
            runner = RemoteRunner(item, self.engine, tracker, settings.local)
            if item.declaration.openai:  # KServe's OpenAI routes (imports vLLM's request types)
                from zeroserve.llm.openai_routes import openai_model_class

                models.append(openai_model_class()(runner))
            else:
                models.append(PredictorModel(runner))
        return models

    def _extend_app(
        self, app: Any, models: list[PredictorModel]
    ) -> tuple[BodySizeLimit, FastPath | None]:
        served = super()._extend_app(app, models)
        app.add_api_route("/zeroserve/status", self.status, methods=["GET"])
        app.add_api_route(console.OVERVIEW_PATH, self.overview, methods=["GET"])
        for path in console.ASSETS:
            app.add_api_route(path, console_asset, methods=["GET"], include_in_schema=False)
        REGISTRY.register(ReplicaGauges(self.trackers))
        return served

    async def overview(self) -> dict[str, Any]:
        """Traffic, batch sizes and drift per model, from this front's metrics."""
        return overview(REGISTRY.collect(), self.trackers)

    async def status(self) -> dict[str, Any]:
        """Each model's state, replicas (with their Ray node) and last cold start."""
        return {
            "engine": "ray",
            "address": self.engine.address or "local",
            "nodes": await asyncio.to_thread(self.engine.nodes),
            "models": {name: tracker.as_status() for name, tracker in self.trackers.items()},
        }

    async def _run(self, models: list[PredictorModel], sock: socket.socket) -> None:
        poller = asyncio.create_task(self._poll())
        try:
            await super()._run(models, sock)
        finally:
            poller.cancel()

    async def _poll(self) -> None:
        """Read the applications' states and replicas from Ray, a few times a second (the front
        answers a held request's failure or timeout from these)."""
        while True:
            try:
                read_at = time.monotonic()
                states, replicas = await asyncio.to_thread(self._read_ray)
            except Exception as exc:  # the cluster is restarting, or gone: keep the last view
                logger.warning("reading Ray Serve's status failed: %s", exc)
                await asyncio.sleep(1.0)
                continue
            for name, state in states.items():
                tracker = self.trackers[name]
                tracker.serve_state = state["state"]
                tracker.message = state["message"]
                tracker.replica_states = state["replica_states"]
                tracker.replicas_seen(replicas.get(name, []), read_at)
            await asyncio.sleep(POLL_EVERY_S)

    def _read_ray(self) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
        return self.engine.status(), self.engine.replicas()


async def console_asset(request: Request) -> Response:
    """The console's page, script or style (the paths in ``console.ASSETS``)."""
    found = console.asset(request.url.path)
    assert found is not None  # only its paths are routed here
    return Response(found[0], media_type=found[1], headers=console.HEADERS)


class ReplicaGauges:
    """``zeroserve_replicas{model,state}`` and ``zeroserve_held_requests{model}`` on /metrics."""

    def __init__(self, trackers: dict[str, ModelTracker]) -> None:
        self.trackers = trackers

    def collect(self) -> Iterator[Metric]:
        replicas = GaugeMetricFamily(
            "zeroserve_replicas", "Ray Serve replicas by state.", labels=["model", "state"]
        )
        held = GaugeMetricFamily(
            "zeroserve_held_requests", "Requests waiting for a replica.", labels=["model"]
        )
        for name, tracker in self.trackers.items():
            for state, count in tracker.replica_states.items():
                replicas.add_metric([name, state.lower()], count)
            held.add_metric([name], tracker.waiting)
        yield replicas
        yield held


def serve_on_ray(
    found: list[FoundPredictor],
    settings: Settings,
    address: str | None,
    resources: dict[str, dict[str, float]],
    sock: socket.socket,
) -> None:
    """Deploy every model to Ray and serve them on ``sock`` until stopped; then delete them."""
    engine = RayEngine(address, resources)
    try:
        engine.connect(found)
        server = RayFrontServer(settings, engine)
        server.serve(server.models_for(found, settings), sock)
    finally:
        engine.close()
