"""What runs in each Ray Serve replica: one predictor behind the engine-neutral runner.

A replica imports the model's code from the application's working directory (Ray ships it to
every node), takes the weights through the cold-start cache on its node (``ZEROSERVE_CACHE__ROOT``
in the environment Ray's node was started with; one fill per node, the replicas there share
it), runs ``load()`` and ``warmup()``, and reports its start to the application's registry.
Errors zeroserve raises on purpose come back as values, not as Ray task errors, so the front
answers them with the same status and body as every engine (and Ray logs no traceback for a
client's 400).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any

from zeroserve.coldstart import ModelCache, StartupTimeline
from zeroserve.errors import ZeroserveError
from zeroserve.serving.loader import FoundPredictor, find_predictors
from zeroserve.serving.materialize import ModelFolders
from zeroserve.serving.runner import PredictorRunner
from zeroserve.settings import Settings

logger = logging.getLogger("zeroserve")
REGISTRY_NAMESPACE = "zeroserve"
FATAL_EXIT_AFTER_S = 1.0
Answer = tuple[bool, Any]  # (True, result) or (False, the ZeroserveError to answer)


class ModelReplica:
    """The deployment class of every model; one instance per replica."""

    async def __init__(  # type: ignore[misc]  # Ray Serve awaits an async constructor
        self, target: str, model: str, registry: str
    ) -> None:
        began = time.monotonic()
        timeline = StartupTimeline()
        with timeline.phase("imports", model=model):
            found = _the_predictor(target, model)
        cache = Settings().cache  # this node's (ZEROSERVE_CACHE__ROOT where Ray started)
        self.folders = ModelFolders(ModelCache(cache.root, cache.budget), timeline)
        with timeline.phase("fetch_wait", model=model):
            model_dir = await asyncio.to_thread(self.folders.folder_for, found)
        self.runner = PredictorRunner(found.cls, found.declaration, model_dir, timeline=timeline)
        self.runner.on_fatal = _exit_soon
        try:
            await self.runner.load()
        except ZeroserveError as exc:  # Ray shows the message in the deployment's status
            raise RuntimeError(str(exc)) from None
        timeline.mark("ready", models=[model])
        self._report(registry, model, round(time.monotonic() - began, 4), timeline)

    @staticmethod
    def _report(registry: str, model: str, ready_s: float, timeline: StartupTimeline) -> None:
        import ray
        from ray import serve

        context = serve.get_replica_context()
        where = {
            "replica": context.replica_id.unique_id,
            "actor": context.replica_id.to_full_id_str(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "ready_s": ready_s,
            "started_at": time.time(),
            "timeline": timeline.as_dict(),
        }
        try:
            actor = ray.get_actor(registry, namespace=REGISTRY_NAMESPACE)
            actor.replica_started.remote(model, where)
        except ValueError:  # the front that made the registry is gone: nothing to tell
            logger.warning("no registry %s to report replica %s to", registry, where["replica"])

    async def predict_v1(self, body: object, headers: Mapping[str, str] | None) -> Answer:
        return await _answer(self.runner.predict_v1(body, headers))

    async def predict_v2(
        self, inputs: Mapping[str, Any], parameters: object, headers: Mapping[str, str] | None
    ) -> Answer:
        return await _answer(self.runner.predict_v2(inputs, parameters, headers))

    async def openai(self, method: str, request: Any) -> Answer:
        """An OpenAI call that answers at once (``create_completion`` or
        ``create_chat_completion``): the response, or an OpenAI error response."""
        return await _answer(getattr(self.runner.instance, method)(request, None))

    async def openai_stream(self, method: str, request: Any) -> AsyncIterator[Any]:
        """A streaming OpenAI call: its server-sent-event strings, or first and only an error
        response (vLLM refuses some requests before it streams)."""
        result = await getattr(self.runner.instance, method)(request, None)
        if not isinstance(result, AsyncIterator):
            yield result
            return
        async for event in result:
            yield event

    async def ping(self) -> Answer:
        """Answers once this replica runs (the front holds a stream's start on it)."""
        return True, None

    async def check_health(self) -> None:
        """Ray Serve's health check: the user's optional ``healthy()``."""
        healthy, reason = await self.runner.health()
        if not healthy:
            raise RuntimeError(f"model '{self.runner.name}': {reason}")

    async def __del__(self) -> None:
        await self.runner.close()
        self.folders.close()


def _the_predictor(target: str, model: str) -> FoundPredictor:
    for item in find_predictors(target):
        if item.name == model:
            return item
    raise RuntimeError(f"the shipped code at {target} has no @predictor named '{model}'")


async def _answer(call: Awaitable[Any]) -> Answer:
    try:
        return True, await call
    except ZeroserveError as exc:
        return False, exc


def _exit_soon(error: ZeroserveError) -> None:
    """The model cannot be trusted in this process (it ran out of memory): answer what is in
    flight, then end, so that Ray Serve starts a fresh replica."""
    logger.error("%s", error)
    asyncio.get_running_loop().call_later(FATAL_EXIT_AFTER_S, os._exit, 1)
