"""The HTTP front of the Ray engine: zeroserve's server, with each model's runner on Ray.

The front is the same ``LocalModelServer`` as ``zeroserve serve --direct`` (KServe's routes, the
HTTP guard, the body limit, the error table), so a request is decoded, refused or answered exactly
as there. Only the runner differs: ``RemoteRunner`` sends the decoded request to the model's
replicas through its Ray Serve handle, which holds it while Ray starts a replica from zero.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from zeroserve.errors import (
    LoadError,
    ReplicaLost,
    Unavailable,
    ZeroserveError,
)
from zeroserve.serving.loader import FoundPredictor
from zeroserve.serving.runner import PredictorRunner
from zeroserve.settings import LocalSettings
from zeroserve.targets.ray.engine import FAILED_STATES, RayEngine, status_gist

logger = logging.getLogger("zeroserve")
FORWARDED_HEADERS = ("traceparent", "tracestate")
WAIT_STEP_S = 0.25


class ModelTracker:
    """What the front knows of one model: its replicas (polled), requests, the last cold start."""

    def __init__(self, found: FoundPredictor) -> None:
        self.spec = found.declaration.spec
        self.serve_state = "DEPLOYING"
        self.message = ""
        self.replica_states: dict[str, int] = {}
        self.replicas: list[dict[str, Any]] = []
        self.in_flight = 0
        self.waiting = 0
        self.last_active = time.monotonic()
        self.polled_at = 0.0  # when the replica states above were read
        self.answered_at = 0.0
        self.cold_start: dict[str, Any] | None = None
        self._cold_start_began = 0.0

    @property
    def running(self) -> int:
        return self.replica_states.get("RUNNING", 0)

    @property
    def warm(self) -> bool:
        """A replica runs, or answered since Ray's states were last read (they lag a little)."""
        return bool(self.running) or self.answered_at > self.polled_at

    @property
    def failure(self) -> str | None:
        """Why the model cannot start now (Ray gave up on its replicas), or None."""
        if self.serve_state in FAILED_STATES and not self.running:
            return (
                status_gist(self.message) or f"Ray Serve reports the deployment {self.serve_state}"
            )
        return None

    def request_at_zero(self) -> None:
        """A request found no replica running: a cold start begins (unless one is under way)."""
        if self.cold_start is None or "first_response_s" in self.cold_start:
            self._cold_start_began = time.monotonic()
            self.cold_start = {"trigger": "request", "mode": "ray", "started_at": time.time()}

    def answered(self) -> None:
        self.answered_at = time.monotonic()
        if self.cold_start is not None and "first_response_s" not in self.cold_start:
            elapsed = time.monotonic() - self._cold_start_began
            self.cold_start["first_response_s"] = round(elapsed, 4)

    def replicas_seen(self, replicas: list[dict[str, Any]], read_at: float) -> None:
        """Ray's view of the replicas, just read. The cold start keeps its replica's timeline, so
        it still shows once that replica is gone (a replica reports a moment after it answers)."""
        self.replicas = replicas
        self.polled_at = read_at
        last = self.cold_start
        if last is None or "worker_timeline" in last or not replicas:
            return
        newest = max(replicas, key=lambda where: where["started_at"])
        if newest["started_at"] >= last["started_at"]:
            last.update(ready_s=newest["ready_s"], worker_timeline=newest["timeline"])

    def state(self) -> str:
        if self.failure:
            return "failed"
        if self.running:
            return "ready"
        return "starting" if self.waiting or self.replica_states else "zero"

    def as_status(self) -> dict[str, Any]:
        """This model's part of GET /zeroserve/status (the local activator's shape)."""
        spec = self.spec
        last = dict(self.cold_start) if self.cold_start else None
        return {
            "state": self.state(),
            "serve_state": self.serve_state,
            "replicas": [
                {"id": where["replica"], "pid": where["pid"], "node_id": where["node_id"]}
                | {"state": "ready", "in_flight": None, "ready_s": where["ready_s"]}
                | {"timeline": where["timeline"]}
                for where in self.replicas
            ],
            "replica_states": self.replica_states,
            "in_flight": self.in_flight,
            "queued": self.waiting,
            "min_replicas": spec.min_replicas,
            "max_replicas": spec.max_replicas,
            "concurrency_target": spec.concurrency,
            "scale_to_zero_after_s": spec.scale_to_zero_after,
            "idle_s": round(time.monotonic() - self.last_active, 3),
            "failures": 1 if self.failure else 0,
            "last_error": self.failure,
            "retry_after_s": 0,
            "last_cold_start": last,
        }


class RemoteRunner(PredictorRunner):
    """A ``PredictorRunner`` whose predictor runs in Ray Serve replicas.

    It keeps the runner's interface (what the front's ``PredictorModel`` calls) without an
    instance of the user's class in this process: ``load()`` deploys the application.
    """

    def __init__(
        self, found: FoundPredictor, engine: RayEngine, tracker: ModelTracker, limits: LocalSettings
    ) -> None:  # the parent's __init__ would instantiate the user's class here: not called
        self.name = found.name
        self.declaration = found.declaration
        self.model_dir = None
        self.instance = None
        self.ready = False
        self.health_check = None
        self.batchers = None  # batching happens in the replicas
        self.monitor = None  # type: ignore[assignment]  # drift is counted in the replicas
        self.on_fatal = None
        self.found = found
        self.engine = engine
        self.tracker = tracker
        self.limits = limits
        self.handle: Any = None
        if found.declaration.openai:
            self.instance = RemoteOpenAI(self)

    async def load(self) -> None:
        try:
            self.handle = await asyncio.to_thread(
                self.engine.deploy, self.found, self.limits.start_timeout
            )
        except Exception as exc:  # Ray refused the application, or the cluster went away
            raise LoadError(model=self.name, phase="deploy", cause=exc) from exc
        self.ready = True

    async def close(self) -> None:
        return None

    async def healthy(self) -> bool:
        return self.ready

    async def predict_v1(self, body: object, headers: Mapping[str, str] | None = None) -> Any:
        return await self._remote_call("predict_v1", body, _forwarded(headers))

    async def predict_v2(
        self,
        inputs: Mapping[str, Any],
        parameters: object,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        return await self._remote_call("predict_v2", dict(inputs), parameters, _forwarded(headers))

    async def remote_call(self, method: str, *args: Any) -> Any:
        """Call ``method`` of a replica (held while none runs); its answer or its error."""
        return await self._remote_call(method, *args)

    async def _remote_call(self, method: str, *args: Any) -> Any:
        from ray.exceptions import RayActorError, RayTaskError
        from ray.serve.exceptions import BackPressureError

        tracker = self.tracker
        tracker.last_active = time.monotonic()
        tracker.in_flight += 1
        try:
            if tracker.warm:
                ok, value = await getattr(self.handle, method).remote(*args)
            else:
                ok, value = await self._call_at_zero(method, args)
        except RayActorError as exc:
            raise ReplicaLost(model=self.name, cause=_first_line(exc)) from None
        except BackPressureError:
            raise self._queue_full() from None
        except RayTaskError as exc:  # not one of ours: a bug, or the result could not pickle
            raise ZeroserveError(f"model '{self.name}' on Ray: {_first_line(exc)}") from None
        finally:
            tracker.in_flight -= 1
            tracker.last_active = time.monotonic()
        tracker.answered()
        if not ok:
            raise value
        return value

    async def _call_at_zero(self, method: str, args: tuple[Any, ...]) -> Any:
        """Send while no replica runs: held by Ray's handle until one starts, within the start
        timeout and the queue limit, and given up at once when Ray gives up on the replicas."""
        tracker = self.tracker
        if tracker.failure:
            raise self._unavailable("StartFailed", tracker.failure, 5)
        if tracker.waiting >= self.limits.queue_limit:
            raise self._queue_full()
        tracker.request_at_zero()
        tracker.waiting += 1
        began = time.monotonic()
        response = getattr(self.handle, method).remote(*args)
        task = asyncio.ensure_future(_result_of(response))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=WAIT_STEP_S)
                if done or tracker.running:
                    tracker.waiting -= 1
                    began = -1.0
                    return await task
                if tracker.failure:
                    raise self._unavailable("StartFailed", tracker.failure, 5)
                if time.monotonic() - began > self.limits.start_timeout:
                    raise self._unavailable(
                        "StartTimeout",
                        f"model '{self.name}' got no replica on Ray within "
                        f"{self.limits.start_timeout:g}s (--start-timeout); see `ray status` "
                        "for resources the replica waits for, and the replica's log",
                        5,
                    )
        finally:
            if began >= 0:
                tracker.waiting -= 1
                response.cancel()
                task.cancel()

    def _queue_full(self) -> Unavailable:
        return self._unavailable(
            "QueueFull",
            f"model '{self.name}' is starting and {self.tracker.waiting} requests already wait "
            f"for it (the queue limit, --queue-limit {self.limits.queue_limit}); retry soon",
            1,
        )

    def _unavailable(self, kind: str, message: str, retry_after: float) -> Unavailable:
        return Unavailable(kind, message, model=self.name, retry_after=retry_after)


class RemoteOpenAI:
    """The OpenAI methods of a vLLM predictor whose engine runs in Ray Serve replicas: what the
    front's OpenAI routes call as the predictor instance."""

    def __init__(self, runner: RemoteRunner) -> None:
        self.runner = runner

    async def create_completion(self, request: Any, raw_request: Any = None) -> Any:
        return await self._call("create_completion", request)

    async def create_chat_completion(self, request: Any, raw_request: Any = None) -> Any:
        return await self._call("create_chat_completion", request)

    async def _call(self, method: str, request: Any) -> Any:
        if not getattr(request, "stream", False):
            return await self.runner.remote_call("openai", method, request)
        if not self.runner.tracker.warm:  # hold it, within the limits, until a replica runs
            await self.runner.remote_call("ping")
        events = self.runner.handle.options(stream=True).openai_stream.remote(method, request)
        first = await events.__anext__()
        if not isinstance(first, str):  # an error response, before any event
            return first
        return _events_from(first, events)


async def _events_from(first: str, events: Any) -> AsyncIterator[str]:
    """The stream's events; a client that leaves ends the generation in the replica."""
    try:
        yield first
        async for event in events:
            yield event
    finally:
        events.cancel()


async def _result_of(response: Any) -> Any:
    return await response


def _forwarded(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    if not headers:
        return None
    kept = {name: headers[name] for name in FORWARDED_HEADERS if name in headers}
    return kept or None


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".strip()
