"""ModelPool with a fake model host and a fake clock: starts, failures, scaling, host loss."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from zeroserve.errors import Unavailable
from zeroserve.local.lifecycle import ModelState
from zeroserve.local.pool import ModelPool
from zeroserve.local.protocol import Exited, Failed, Forked, Ready, Stopping, WorkerOptions
from zeroserve.local.upstream import Replica, ReplicaState
from zeroserve.settings import LocalSettings
from zeroserve.spec.spec import PredictorSpec

OPTIONS = WorkerOptions(max_body_size=1024, max_header_size=1024)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeHost:
    """Records launches and stops; the test plays the workers' events."""

    fork = True

    def __init__(self) -> None:
        self.launched: list[str] = []
        self.stopped: list[tuple[int | None, bool]] = []

    async def launch(self, model: str, replica_id: str, options: WorkerOptions) -> None:
        self.launched.append(replica_id)

    def stop_worker(self, pid: int | None, kill: bool = False) -> None:
        self.stopped.append((pid, kill))


def run(test: Callable[[ModelPool, FakeHost, FakeClock], Awaitable[None]], **spec: Any) -> None:
    async def main() -> None:
        clock, host = FakeClock(), FakeHost()
        settings = LocalSettings(queue_limit=3, start_timeout=5)
        fields = {"name": "m", "max_replicas": 3, "scale_to_zero_after": 60.0, **spec}
        pool = ModelPool(PredictorSpec(**fields), host, settings, OPTIONS, clock=clock)
        try:
            await test(pool, host, clock)
        finally:
            pool.background.cancel()

    asyncio.run(asyncio.wait_for(main(), 10))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def only_replica(pool: ModelPool) -> Replica:
    (replica,) = pool.replicas.values()
    return replica


def ready(pool: ModelPool, replica: Replica, pid: int = 10) -> None:
    pool.on_event(replica, Forked(replica.id, pid))
    pool.on_event(replica, Ready(replica.id, pid, 40000 + pid, {"phases": []}))


def test_held_requests_start_exactly_one_replica_and_all_get_it() -> None:
    async def test(pool: ModelPool, host: FakeHost, clock: FakeClock) -> None:
        waiting = [asyncio.ensure_future(pool._wait_for_replica()) for _ in range(3)]
        await settle()
        assert host.launched == ["m-1"]
        assert pool.lifecycle.state is ModelState.STARTING
        ready(pool, only_replica(pool))
        replicas = await asyncio.gather(*waiting)
        assert {r.id for r in replicas} == {"m-1"}
        assert pool.lifecycle.state is ModelState.READY
        assert pool.last_cold_start is not None
        assert "ready_s" in pool.last_cold_start

    run(test)


def test_a_full_queue_is_refused_with_retry_after() -> None:
    async def test(pool: ModelPool, host: FakeHost, clock: FakeClock) -> None:
        waiting = [asyncio.ensure_future(pool._wait_for_replica()) for _ in range(3)]
        await settle()
        with pytest.raises(Unavailable) as refused:
            await pool._wait_for_replica()
        assert refused.value.kind == "QueueFull"
        assert refused.value.retry_after >= 1
        ready(pool, only_replica(pool))
        await asyncio.gather(*waiting)

    run(test)


def test_a_failed_start_answers_the_held_requests_and_backs_off() -> None:
    async def test(pool: ModelPool, host: FakeHost, clock: FakeClock) -> None:
        waiting = asyncio.ensure_future(pool._wait_for_replica())
        await settle()
        replica = only_replica(pool)
        pool.on_event(replica, Forked(replica.id, 11))
        pool.on_event(replica, Failed(replica.id, "load() raised OSError: no weights"))
        pool.on_event(replica, Exited(replica.id, 11, 3))
        with pytest.raises(Unavailable, match="no weights") as failed:
            await waiting
        assert failed.value.kind == "StartFailed"
        assert pool.lifecycle.state is ModelState.FAILED
        assert pool.replicas == {}
        # the next request right away starts it again (the first retry has no back-off)
        again = asyncio.ensure_future(pool._wait_for_replica())
        await settle()
        assert host.launched == ["m-1", "m-2"]
        ready(pool, only_replica(pool), pid=12)
        assert (await again).id == "m-2"

    run(test)


def test_idle_past_the_window_drains_to_zero_and_the_next_request_starts_again() -> None:
    async def test(pool: ModelPool, host: FakeHost, clock: FakeClock) -> None:
        waiting = asyncio.ensure_future(pool._wait_for_replica())
        await settle()
        ready(pool, only_replica(pool))
        await waiting
        clock.now += 59
        pool.tick()
        assert pool.lifecycle.state is ModelState.READY
        clock.now += 2
        pool.tick()
        assert pool.lifecycle.state is ModelState.DRAINING
        assert host.stopped == [(10, False)]
        pool.on_exit(only_replica(pool), 0)
        assert pool.lifecycle.state is ModelState.ZERO
        again = asyncio.ensure_future(pool._wait_for_replica())
        await settle()
        assert host.launched == ["m-1", "m-2"]
        ready(pool, only_replica(pool), pid=13)
        await again

    run(test)


def test_a_worker_that_stops_on_its_own_is_replaced_before_it_exits() -> None:
    async def test(pool: ModelPool, host: FakeHost, clock: FakeClock) -> None:
        waiting = asyncio.ensure_future(pool._wait_for_replica())
        await settle()
        first = only_replica(pool)
        ready(pool, first)
        await waiting
        pool.on_event(first, Stopping(first.id, "predict() ran out of memory"))
        await settle()
        assert first.state is ReplicaState.DRAINING
        assert host.launched == ["m-1", "m-2"]
        assert pool.least_loaded() is None  # nothing is routed to the stopping one

    run(test)


def test_a_start_interrupted_by_the_host_dying_is_tried_again_with_requests_held() -> None:
    async def test(pool: ModelPool, host: FakeHost, clock: FakeClock) -> None:
        waiting = asyncio.ensure_future(pool._wait_for_replica())
        await settle()
        pool.on_event(only_replica(pool), Forked("m-1", 14))
        pool.host_lost(-9)
        await settle()
        assert host.launched == ["m-1", "m-2"]
        assert not waiting.done()
        ready(pool, only_replica(pool), pid=15)
        assert (await waiting).id == "m-2"

    run(test)


def test_min_replicas_start_before_any_request_and_never_drain_for_idleness() -> None:
    async def test(pool: ModelPool, host: FakeHost, clock: FakeClock) -> None:
        pool.start_warm()
        await settle()
        assert host.launched == ["m-1", "m-2"]
        for pid, replica in enumerate(list(pool.replicas.values()), start=20):
            ready(pool, replica, pid)
        clock.now += 3600
        pool.tick()
        assert pool.lifecycle.state is ModelState.READY
        assert host.stopped == []

    run(test, min_replicas=2)


def test_a_start_that_overruns_its_timeout_is_killed() -> None:
    async def test(pool: ModelPool, host: FakeHost, clock: FakeClock) -> None:
        pool.start_warm()
        await settle()
        pool.on_event(only_replica(pool), Forked("m-1", 16))
        clock.now += 6
        pool.tick()
        assert host.stopped == [(16, True)]
        assert "did not become ready" in str(only_replica(pool).error)

    run(test, min_replicas=1)


def test_requests_go_to_the_ready_replica_with_the_fewest_in_flight() -> None:
    async def test(pool: ModelPool, host: FakeHost, clock: FakeClock) -> None:
        assert pool.least_loaded() is None  # at zero
        waiting = asyncio.ensure_future(pool._wait_for_replica())
        await settle()
        first = only_replica(pool)
        assert pool.least_loaded() is None  # starting: not ready yet
        ready(pool, first)
        await waiting
        assert pool.least_loaded() is first
        pool._begin_cold_start("test")  # a second replica, starting
        await settle()
        second = next(r for r in pool.replicas.values() if r is not first)
        first.in_flight = 2
        assert pool.least_loaded() is first  # the only ready one
        ready(pool, second, pid=11)
        assert pool.least_loaded() is second
        second.in_flight = 3
        assert pool.least_loaded() is first

    run(test)
