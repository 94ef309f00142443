"""Asleep, between ready and zero: an idle LLM engine sleeps and wakes for the next request.

vLLM's sleep mode (``AsyncLLM.sleep(level=1)``) moves the weights to host memory and frees the
GPU's memory, KV cache included; ``wake_up()`` brings them back in about a second or less, where
a start from zero takes the whole engine start. ``llm=LLMEngine(sleep_after=S)`` asks for it after
``S`` idle seconds, which must be shorter than ``scale_to_zero_after``: a model idle that long
stops altogether, as any other.

The engine runs in the model's worker; the activator, which sees the same requests, reports the
model ``asleep`` by the same rule (``sleep_after`` idle seconds, no request in flight) once the
worker said at its start that its engine can sleep (the ``sleep_mode`` mark of its timeline).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

logger = logging.getLogger("zeroserve")


class IdleSleep:
    """Puts ``engine`` to sleep after ``after`` idle seconds; ``serving()`` wraps each request and
    wakes it first. Going to sleep and waking take turns under one lock, so no request runs on a
    sleeping engine and none is put to sleep under a request."""

    def __init__(
        self, engine: Any, model: str, after: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.engine = engine
        self.model = model
        self.after = after
        self.clock = clock
        self.asleep = False
        self.in_flight = 0
        self.last_active = clock()
        self.sleeps = 0
        self.last_wake_s: float | None = None
        self._turn = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Around one request: wake the engine if it sleeps; count the request in flight."""
        async with self._turn:
            self.in_flight += 1
            if self.asleep:
                await self._wake()
        try:
            yield
        finally:
            self.in_flight -= 1
            self.last_active = self.clock()

    async def sleep_if_idle(self) -> bool:
        """Sleep now if the engine is awake, idle and has been for ``after`` seconds."""
        async with self._turn:
            if self.asleep or self.in_flight or self.clock() - self.last_active < self.after:
                return False
            started = self.clock()
            await self.engine.sleep(level=1)
            self.asleep = True
            self.sleeps += 1
            idle = started - self.last_active
            logger.info(
                "model '%s': engine asleep after %.0f s idle (%.2f s to sleep)",
                self.model,
                idle,
                self.clock() - started,
            )
            return True

    async def watch(self, every: float | None = None) -> None:
        """Check for idleness until cancelled (the predictor's close)."""
        every = every if every is not None else min(1.0, self.after / 4)
        while True:
            await asyncio.sleep(every)
            try:
                await self.sleep_if_idle()
            except Exception:  # the engine died: its health check reports it
                logger.exception("model '%s': the engine could not be put to sleep", self.model)
                return

    async def _wake(self) -> None:
        started = self.clock()
        await self.engine.wake_up()
        self.asleep = False
        self.last_wake_s = round(self.clock() - started, 4)
        logger.info("model '%s': engine woke in %.2f s", self.model, self.last_wake_s)
