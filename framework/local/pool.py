"""One model in the local runtime: its state, replicas, held requests and scaling decisions."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from zeroserve.errors import Unavailable, WorkerUnreachable
from zeroserve.local.autoscale import Autoscaler
from zeroserve.local.background import Background
from zeroserve.local.host import WorkerLauncher
from zeroserve.local.lifecycle import Lifecycle, ModelState
from zeroserve.local.metrics import activator_metrics
from zeroserve.local.protocol import (
    Exited,
    Failed,
    Forked,
    FromChild,
    Ready,
    Stopping,
    WorkerOptions,
)
from zeroserve.local.status import ColdStart
from zeroserve.local.tracing import continue_trace, hold_span
from zeroserve.local.upstream import Exchange, Replica, ReplicaState, describe_exit
from zeroserve.local.wire import ClientConnection, Request
from zeroserve.settings import LocalSettings
from zeroserve.spec.spec import Batching, PredictorSpec
from zeroserve.telemetry.logs import log_event, trace_id_of

logger = logging.getLogger("zeroserve")
Observer = Callable[[int], None] | None  # told an answer's status (0: the client left)
CLIENT_GONE = 499  # nginx's code for a client that closed before its answer
RECENT_COLD_STARTS = 10  # kept for GET /zeroserve/status (the console draws them)


def answer_unavailable(error: Unavailable, client: ClientConnection, request: Request) -> None:
    """503 with Retry-After for a held request, and its log line."""
    log_event(
        logging.WARNING,
        "error",
        status=503,
        type=error.kind,
        model=error.model,
        path=request.path,
        message=str(error),
        trace_id=trace_id_of(request.header(b"traceparent")),
    )
    client.respond_error(error, {"retry-after": str(error.retry_after)})


class ModelPool:
    """Routes a model's requests to its least-loaded ready replica, holding them while at zero."""

    def __init__(
        self,
        spec: PredictorSpec,
        host: WorkerLauncher,
        settings: LocalSettings,
        options: WorkerOptions,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock  # a fake one in the unit tests
        self.name = spec.name
        self.spec = spec
        self.host = host
        self.settings = settings
        now = self.clock()
        self.lifecycle = Lifecycle(warm=spec.min_replicas > 0)
        self.autoscaler = Autoscaler(
            spec.concurrency, spec.min_replicas, spec.max_replicas, settings.stable_window, now
        )
        self.replicas: dict[str, Replica] = {}
        self.waiters: deque[asyncio.Future[Replica]] = deque()
        self.in_flight = 0
        self.last_active = now
        self.ids = itertools.count(1)
        self.options = options  # handed to every worker: HTTP limits, a changed batching
        self.cold_start: ColdStart | None = None
        self.last_cold_start: dict[str, Any] | None = None
        self.recent_cold_starts: deque[dict[str, Any]] = deque(maxlen=RECENT_COLD_STARTS)
        self.cold_starts = 0
        self.background = Background()

    # ---- routing -------------------------------------------------------------------------
    def route(self, request: Request, client: ClientConnection, observe: Observer = None) -> None:
        """Forward now if a ready replica has an idle connection; otherwise hold the request.
        ``observe`` (a split's version) is told the answer's status once it has gone out."""
        replica = self.least_loaded()
        while replica is not None and replica.idle:
            connection = replica.idle.pop()
            if not connection.closed:
                self._forward(request, client, replica, connection, observe)
                return
        task = self.background.keep(self._route_held(request, client, observe))
        client.on_lost = task.cancel

    async def _route_held(
        self, request: Request, client: ClientConnection, observe: Observer
    ) -> None:
        held_since = self.clock()
        with hold_span(request, self.name):
            status = await self._route_held_traced(request, client, held_since, observe)
        if status and observe is not None:
            observe(status)

    async def _route_held_traced(
        self, request: Request, client: ClientConnection, held_since: float, observe: Observer
    ) -> int:
        """Forward once a replica is ready; the status of an answer given here instead, or 0."""
        try:
            replica = self.least_loaded() or await self._wait_for_replica()
            connection = await replica.connect()
        except Unavailable as exc:
            self._observe_hold(held_since)
            activator_metrics().errors.labels(self.name, "503", exc.kind).inc()
            answer_unavailable(exc, client, request)
            return 503
        except OSError as exc:  # the worker went away between ready and connect
            activator_metrics().errors.labels(self.name, "502", "WorkerUnreachable").inc()
            client.respond_error(WorkerUnreachable(model=self.name, cause=exc))
            return 502
        self._observe_hold(held_since)
        continue_trace(request)
        if client.closed:
            replica.idle.append(connection)
            return CLIENT_GONE
        self._forward(request, client, replica, connection, observe)
        return 0

    def _observe_hold(self, since: float) -> None:
        waited = self.clock() - since
        if waited > 0.001:  # only requests that waited for a start
            activator_metrics().hold.labels(self.name).observe(waited)

    def _forward(
        self,
        request: Request,
        client: ClientConnection,
        replica: Replica,
        connection: Any,
        observe: Observer = None,
    ) -> None:
        self._count(+1)
        done = self._exchange_done
        if observe is not None:
            done = functools.partial(self._observed_done, observe)
        Exchange(request, client, replica, done).start(connection)

    def _observed_done(self, observe: Callable[[int], None], exchange: Exchange) -> None:
        self._exchange_done(exchange)
        observe(exchange.status)

    def _exchange_done(self, exchange: Exchange) -> None:
        self._count(-1)
        if exchange.status == 502:
            activator_metrics().errors.labels(self.name, "502", "WorkerDied").inc()
        if 200 <= exchange.status < 500:
            self.lifecycle.succeeded()
            if self.cold_start is not None:
                self.cold_start.answered(self.clock())

    def _count(self, delta: int) -> None:
        now = self.clock()
        self.in_flight += delta
        self.autoscaler.window.observe(now, self.in_flight + len(self.waiters))
        self.last_active = now

    def least_loaded(self) -> Replica | None:
        if len(self.replicas) == 1:  # the warm path's usual case: no list, no min()
            (only,) = self.replicas.values()
            return only if only.state is ReplicaState.READY else None
        ready = [r for r in self.replicas.values() if r.state is ReplicaState.READY]
        return min(ready, key=lambda replica: replica.in_flight) if ready else None

    async def _wait_for_replica(self) -> Replica:
        now = self.clock()
        if len(self.waiters) >= self.settings.queue_limit:
            raise self._unavailable(
                "QueueFull",
                f"model '{self.name}' is starting and {len(self.waiters)} requests already wait "
                f"for it (the queue limit, --queue-limit {self.settings.queue_limit}); retry soon",
                1,
            )
        if self.lifecycle.should_start(now):
            self._begin_cold_start("request")
        elif self.lifecycle.state is ModelState.FAILED:
            wait = self.lifecycle.retry_after(now)
            raise self._unavailable(
                "ModelFailed",
                f"model '{self.name}' failed: {self.lifecycle.last_error}; it starts again on "
                f"a request after {wait:.1f}s (back-off after {self.lifecycle.failures} failures)",
                wait,
            )
        waiter: asyncio.Future[Replica] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        self._count(0)
        try:
            return await asyncio.wait_for(waiter, self.settings.start_timeout)
        except TimeoutError:
            raise self._unavailable(
                "StartTimeout",
                f"model '{self.name}' did not become ready within {self.settings.start_timeout:g}"
                "s (--start-timeout); its load() may be slow or stuck: see the server log",
                5,
            ) from None
        finally:
            if waiter in self.waiters:
                self.waiters.remove(waiter)

    # ---- replicas ------------------------------------------------------------------------
    def _begin_cold_start(self, trigger: str) -> None:
        self.cold_starts += 1
        self._scale_event("from_zero")
        self.cold_start = ColdStart(trigger, "fork" if self.host.fork else "spawn", self.clock())
        self.start_replica()

    def start_replica(self) -> Replica:
        replica = Replica(f"{self.name}-{next(self.ids)}", self.name)
        replica.started = self.clock()
        self.replicas[replica.id] = replica
        logger.info("model '%s': starting replica %s", self.name, replica.id)
        self.background.keep(self._launch(replica))
        return replica

    async def _launch(self, replica: Replica) -> None:
        try:
            await self.host.launch(self.name, replica.id, self.options)
        except OSError as exc:
            replica.error = f"cannot start a worker: {exc}"
            self.on_exit(replica, None)

    def on_event(self, replica: Replica, message: FromChild) -> None:
        if isinstance(message, Forked):
            replica.pid = message.pid
            if replica.state is ReplicaState.DRAINING:
                self.host.stop_worker(replica.pid)
        elif isinstance(message, Failed):
            replica.error = message.error
        elif isinstance(message, Ready):
            replica.pid, replica.port = message.pid, message.port
            replica.timeline = message.timeline
            self._replica_ready(replica)
        elif isinstance(message, Stopping):
            self._replace(replica, message.reason)
        elif isinstance(message, Exited):
            self.on_exit(replica, message.code)

    def _replace(self, replica: Replica, reason: str) -> None:
        """A worker stops on its own (out of memory): route nothing more to it, start another."""
        logger.error("model '%s': replica %s stops: %s", self.name, replica.id, reason)
        if replica.state is not ReplicaState.READY:
            return
        self.drain(replica)
        if all(r.state is ReplicaState.DRAINING for r in self.replicas.values()):
            self.start_replica()

    def _replica_ready(self, replica: Replica) -> None:
        if replica.state is ReplicaState.DRAINING:
            self.host.stop_worker(replica.pid)
            return
        replica.state = ReplicaState.READY
        logger.info("model '%s': replica %s ready (pid %s)", self.name, replica.id, replica.pid)
        if self.lifecycle.state is ModelState.STARTING:
            self.lifecycle.ready()
        if self.cold_start is not None and self.cold_start.ready(self.clock(), replica.timeline):
            self.last_cold_start = self.cold_start.record
            self.recent_cold_starts.append(self.cold_start.record)
            log_event(logging.INFO, "cold_start", model=self.name, **self.cold_start.record)
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(self.least_loaded() or replica)
        self._count(0)

    def on_exit(self, replica: Replica, code: int | None) -> None:
        self.replicas.pop(replica.id, None)
        if not replica.exit_code.done():
            replica.exit_code.set_result(code if code is not None else -1)
        replica.close_idle()
        was, replica.state = replica.state, ReplicaState.DRAINING
        ready_left = any(r.state is ReplicaState.READY for r in self.replicas.values())
        now = self.clock()
        if was is ReplicaState.STARTING:
            reason = replica.error or f"the worker ended ({describe_exit(code)})"
            logger.error(
                "model '%s': replica %s failed to start: %s", self.name, replica.id, reason
            )
            if self.lifecycle.state is ModelState.STARTING and not self._starting():
                self.lifecycle.failed(now, reason)
                self._reject_waiters(
                    "StartFailed", f"model '{self.name}' failed to start: {reason}"
                )
        elif was is ReplicaState.READY:
            logger.error(
                "model '%s': replica %s ended: %s", self.name, replica.id, describe_exit(code)
            )
            if not ready_left and self.lifecycle.state is ModelState.READY:
                self.lifecycle.failed(now, f"its worker ended ({describe_exit(code)})")
                if self.waiters or self.lifecycle.warm:
                    self._restart_if_allowed(now)
        elif not self.replicas and self.lifecycle.state is ModelState.DRAINING:
            self.lifecycle.drained()
            logger.info("model '%s': scaled to zero", self.name)
            if self.waiters and self.lifecycle.should_start(now):
                self._begin_cold_start("request")

    def host_lost(self, code: int) -> None:
        """The model host died: its workers die with it (they were told to), so every replica
        ends now; a model with requests waiting or min_replicas starts on the new host."""
        reason = f"the model host ended ({describe_exit(code)})"
        restart = False
        for replica in list(self.replicas.values()):
            self.host.stop_worker(replica.pid)
            if replica.state is ReplicaState.STARTING:  # tried again on the new host
                replica.state = ReplicaState.DRAINING
                restart = True
            replica.error = replica.error or reason
            self.on_exit(replica, None)
        if restart and self.lifecycle.state is ModelState.STARTING and not self._starting():
            self.start_replica()  # the requests held for it keep waiting

    def _restart_if_allowed(self, now: float) -> None:
        if self.lifecycle.should_start(now):
            self._begin_cold_start("restart")

    def _starting(self) -> bool:
        return any(r.state is ReplicaState.STARTING for r in self.replicas.values())

    def _reject_waiters(self, kind: str, message: str) -> None:
        error = self._unavailable(kind, message, self.lifecycle.retry_after(self.clock()))
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def _unavailable(self, kind: str, message: str, retry_after: float) -> Unavailable:
        return Unavailable(kind, message, model=self.name, retry_after=retry_after)

    @property
    def batching(self) -> Batching | None:
        """The batching its workers use: a change made since the start, else the spec's."""
        return self.options.batching or self.spec.batching

    def change_batching(self, batching: Batching) -> None:
        """Keep a batching change for the replicas started from now on."""
        self.options = dataclasses.replace(self.options, batching=batching)

    def _scale_event(self, direction: str) -> None:
        activator_metrics().scale_events.labels(self.name, direction).inc()

    def drain(self, replica: Replica) -> None:
        """Stop routing to ``replica`` and SIGTERM it; its in-flight requests finish."""
        replica.state = ReplicaState.DRAINING
        replica.close_idle()
        self.host.stop_worker(replica.pid)

    # ---- scaling (called every tick) -----------------------------------------------------
    def tick(self) -> None:
        """Close the concurrency bucket; scale out, in, or to zero; restart warm models."""
        now = self.clock()
        self.autoscaler.window.close_bucket(now)
        for replica in list(self.replicas.values()):
            overdue = now - replica.started > self.settings.start_timeout
            if replica.state is ReplicaState.STARTING and overdue and replica.error is None:
                replica.error = (
                    f"it did not become ready within {self.settings.start_timeout:g}s "
                    "(--start-timeout)"
                )
                if replica.pid is None:  # never forked (no host answered): nothing to wait for
                    self.on_exit(replica, None)
                else:
                    self.host.stop_worker(replica.pid, kill=True)
        state = self.lifecycle.state
        if state in (ModelState.ZERO, ModelState.FAILED) and self.lifecycle.warm:
            self._restart_if_allowed(now)
        if state is not ModelState.READY:
            return
        active = [r for r in self.replicas.values() if r.state is not ReplicaState.DRAINING]
        idle_for = now - self.last_active
        if (
            not self.lifecycle.warm
            and self.in_flight == 0
            and not self.waiters
            and idle_for >= self.spec.scale_to_zero_after
        ):
            logger.info("model '%s': idle for %.1fs, scaling to zero", self.name, idle_for)
            self.lifecycle.idle()
            self._scale_event("to_zero")
            for replica in active:
                self.drain(replica)
            return
        desired = self.autoscaler.desired(now, len(active))
        for _ in range(desired - len(active)):
            self._scale_event("up")
            self.start_replica()
        surplus = sorted(
            (r for r in active if r.state is ReplicaState.READY), key=lambda r: r.in_flight
        )[: max(len(active) - desired, 0)]
        for replica in surplus:
            logger.info("model '%s': scaling in, draining %s", self.name, replica.id)
            self._scale_event("down")
            self.drain(replica)

    def start_warm(self) -> None:
        """min_replicas > 0: start them now, before any request."""
        if self.lifecycle.warm and self.lifecycle.should_start(self.clock()):
            self._begin_cold_start("min_replicas")
            for _ in range(self.spec.min_replicas - 1):
                self.start_replica()

    async def shutdown(self, grace: float) -> None:
        """Answer held requests 503, drain every replica, wait for them (SIGKILL after grace)."""
        self.lifecycle.shutdown()
        self._reject_waiters("ShuttingDown", f"the server is stopping; model '{self.name}' too")
        replicas = list(self.replicas.values())
        for replica in replicas:
            self.drain(replica)
        exits = [asyncio.shield(replica.exit_code) for replica in replicas]
        if not exits:
            return
        _, pending = await asyncio.wait(exits, timeout=grace)
        if pending:
            for replica in replicas:
                if replica.alive:
                    self.host.stop_worker(replica.pid, kill=True)
            await asyncio.wait(exits, timeout=grace)
