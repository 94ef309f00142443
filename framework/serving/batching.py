"""Adaptive batching: concurrent requests to one replica become one ``predict()`` call.

A pure asyncio component with no HTTP inside. Each request brings a list of instances; the batcher
queues them and dispatches a batch when it holds ``max_batch_size`` instances ("full") or when its
oldest request has waited ``max_latency_ms`` ("timeout"). A request counts with its real number of
instances: a batch never exceeds ``max_batch_size``, and a larger request is split across batches
(or refused, with ``split=False``). Each caller receives exactly its own results, in order.

One batch runs at a time; requests that arrive meanwhile form the next one. A caller that goes away
(its task cancelled, e.g. because the client disconnected) leaves the queue before dispatch.

A served model holds a ``BatcherPool``: one Batcher per distinct set of request parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from zeroserve.errors import BatchResultMismatch, BatchTooLarge
from zeroserve.spec.spec import Batching

DispatchReason = Literal["full", "timeout"]
BatchFunction = Callable[[list[Any]], Awaitable[Sequence[Any]]]


class BatchObserver(Protocol):
    """Receives one call per dispatched batch (metrics live outside the batcher)."""

    def batch_dispatched(self, *, size: int, reason: DispatchReason, waits: list[float]) -> None:
        """A batch of ``size`` instances left the queue; ``waits`` are its requests' queue times."""


@dataclass(eq=False)
class _Waiting:
    """One caller's request: its instances, where they stand, and the future it awaits."""

    instances: list[Any]
    future: asyncio.Future[list[Any]]
    enqueued_at: float
    results: list[Any] = field(default_factory=list)
    taken: int = 0  # instances already placed in a batch
    answered: int = 0  # instances with a result

    @property
    def remaining(self) -> int:
        return len(self.instances) - self.taken


@dataclass(frozen=True)
class _Part:
    """A slice of one request inside a batch."""

    request: _Waiting
    start: int  # index in the request's instances
    count: int
    offset: int  # index in the batch


class Batcher:
    """Groups submitted instances into batches for ``predict_batch``."""

    def __init__(
        self,
        predict_batch: BatchFunction,
        settings: Batching,
        *,
        observer: BatchObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._predict_batch = predict_batch
        self._settings = settings
        self._observer = observer
        self._clock = clock
        self._queue: deque[_Waiting] = deque()
        self._queued_instances = 0
        self._changed = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    @property
    def settings(self) -> Batching:
        return self._settings

    def update(self, settings: Batching) -> None:
        """Apply new settings from the next batch on."""
        self._settings = settings
        self._changed.set()

    @property
    def queued_instances(self) -> int:
        return self._queued_instances

    async def submit(self, instances: list[Any]) -> list[Any]:
        """Queue ``instances`` and return their results, in order, once predicted."""
        if not instances:
            return []
        limit = self._settings.max_batch_size
        if len(instances) > limit and not self._settings.split:
            raise BatchTooLarge(instances=len(instances), max_batch_size=limit)
        waiting = _Waiting(
            instances=instances,
            future=asyncio.get_running_loop().create_future(),
            enqueued_at=self._clock(),
            results=[None] * len(instances),
        )
        self._queue.append(waiting)
        self._queued_instances += len(instances)
        self._changed.set()
        self._ensure_worker()
        try:
            return await waiting.future
        except asyncio.CancelledError:  # the caller went away: leave the queue now
            self._forget(waiting)
            raise

    async def close(self) -> None:
        """Stop the worker; callers still waiting are cancelled."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for waiting in self._queue:
            waiting.future.cancel()

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())

    def _forget(self, waiting: _Waiting) -> None:
        if waiting in self._queue:
            self._queue.remove(waiting)
            self._queued_instances -= waiting.remaining

    async def _run(self) -> None:
        while True:
            reason = await self._next_dispatch()
            parts = self._take()
            if parts:
                await self._dispatch(parts, reason)

    async def _next_dispatch(self) -> DispatchReason:
        """Wait until the queue holds a full batch or its oldest request waited long enough."""
        while True:
            self._changed.clear()
            if not self._queue:
                await self._changed.wait()
                continue
            if self._queued_instances >= self._settings.max_batch_size:
                return "full"
            deadline = self._queue[0].enqueued_at + self._settings.max_latency_ms / 1000
            remaining = deadline - self._clock()
            if remaining <= 0:
                return "timeout"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def _take(self) -> list[_Part]:
        """Move up to max_batch_size instances from the front of the queue into a batch."""
        limit = self._settings.max_batch_size
        parts: list[_Part] = []
        size = 0
        while self._queue and size < limit:
            waiting = self._queue[0]
            if waiting.future.done():  # an earlier part of it failed, or its caller left
                self._forget(waiting)
                continue
            count = min(waiting.remaining, limit - size)
            parts.append(_Part(waiting, waiting.taken, count, size))
            waiting.taken += count
            size += count
            self._queued_instances -= count
            if waiting.remaining == 0:
                self._queue.popleft()
        return parts

    async def _dispatch(self, parts: list[_Part], reason: DispatchReason) -> None:
        batch = [item for part in parts for item in part.request.instances[_slice(part)]]
        if self._observer is not None:
            now = self._clock()
            waits = [now - part.request.enqueued_at for part in parts]
            self._observer.batch_dispatched(size=len(batch), reason=reason, waits=waits)
        try:
            results = list(await self._predict_batch(batch))
            if len(results) != len(batch):
                raise BatchResultMismatch(instances=len(batch), results=len(results))
        except Exception as exc:
            for part in parts:
                _fail(part.request, exc)
            return
        for part in parts:
            waiting = part.request
            waiting.results[_slice(part)] = results[part.offset : part.offset + part.count]
            waiting.answered += part.count
            if waiting.answered == len(waiting.instances) and not waiting.future.done():
                waiting.future.set_result(waiting.results)


def _slice(part: _Part) -> slice:
    return slice(part.start, part.start + part.count)


def _fail(waiting: _Waiting, exc: Exception) -> None:
    if not waiting.future.done():
        waiting.future.set_exception(exc)


PredictBatch = Callable[[list[Any], dict[str, Any]], Awaitable[list[Any]]]


class BatcherPool:
    """Routes each request to the batcher of its parameters, so one batch shares one call.

    Requests with different ``parameters`` (e.g. ``threshold``) cannot share a ``predict()`` call;
    each distinct set gets its own queue. Settings changes apply to every queue.
    """

    def __init__(
        self,
        instances_param: str,
        predict_batch: PredictBatch,
        settings: Batching,
        observer: BatchObserver | None = None,
    ) -> None:
        self._instances_param = instances_param
        self._predict_batch = predict_batch
        self._settings = settings
        self._observer = observer
        self._batchers: dict[str, Batcher] = {}

    @property
    def settings(self) -> Batching:
        return self._settings

    def update(self, settings: Batching) -> None:
        """Apply new settings to the next batch of every queue."""
        self._settings = settings
        for batcher in self._batchers.values():
            batcher.update(settings)

    @property
    def queued_instances(self) -> int:
        return sum(batcher.queued_instances for batcher in self._batchers.values())

    async def submit(self, kwargs: dict[str, Any]) -> list[Any]:
        """Queue the request's instances with others of the same parameters; return its results."""
        options = {key: value for key, value in kwargs.items() if key != self._instances_param}
        key = json.dumps(options, sort_keys=True, default=repr)
        batcher = self._batchers.get(key)
        if batcher is None:

            async def call(batch: list[Any]) -> list[Any]:
                return await self._predict_batch(batch, options)

            batcher = Batcher(call, self._settings, observer=self._observer)
            self._batchers[key] = batcher
        return await batcher.submit(list(kwargs[self._instances_param]))
