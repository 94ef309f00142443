"""Batching for a served model: one Batcher per distinct set of request parameters."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from zeroserve.batching import Batcher, BatchObserver
from zeroserve.spec import Batching

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
