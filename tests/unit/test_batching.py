"""The batcher alone: dispatch rules with controlled time, failures, cancellation, properties."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroserve import Batching
from zeroserve.errors import BatchResultMismatch, BatchTooLarge
from zeroserve.serving.batching import Batcher, DispatchReason
from zeroserve.spec.fields import MAX_LATENCY_MS

NEVER_MS = MAX_LATENCY_MS  # the longest latency bound allowed: never reached here


class Recorder:
    """A batch function that records batches and can be held until released."""

    def __init__(self, hold: bool = False) -> None:
        self.batches: list[list[Any]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self, batch: list[Any]) -> Sequence[Any]:
        self.batches.append(batch)
        self.started.set()
        await self.release.wait()
        return [f"r{item}" for item in batch]


class Observer:
    def __init__(self) -> None:
        self.dispatches: list[tuple[int, DispatchReason, int]] = []

    def batch_dispatched(self, *, size: int, reason: DispatchReason, waits: list[float]) -> None:
        self.dispatches.append((size, reason, len(waits)))


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout=10))


def test_full_batch_dispatches_without_waiting() -> None:
    async def scenario() -> None:
        recorder, observer = Recorder(), Observer()
        batcher = Batcher(
            recorder, Batching(max_batch_size=4, max_latency_ms=NEVER_MS), observer=observer
        )
        answers = await asyncio.gather(batcher.submit([1, 2]), batcher.submit([3, 4]))
        assert answers == [["r1", "r2"], ["r3", "r4"]]
        assert recorder.batches == [[1, 2, 3, 4]]
        assert observer.dispatches == [(4, "full", 2)]
        await batcher.close()

    run(scenario())


def test_partial_batch_waits_for_the_latency_bound() -> None:
    async def scenario() -> None:
        recorder, observer = Recorder(), Observer()
        batcher = Batcher(
            recorder, Batching(max_batch_size=4, max_latency_ms=NEVER_MS), observer=observer
        )
        pending = asyncio.ensure_future(batcher.submit([1]))
        for _ in range(20):
            await asyncio.sleep(0)
        assert recorder.batches == []  # one instance, bound not reached: still queued
        batcher.update(Batching(max_batch_size=4, max_latency_ms=0))  # applies to the next batch
        assert await pending == ["r1"]
        assert observer.dispatches == [(1, "timeout", 1)]
        await batcher.close()

    run(scenario())


def test_oldest_request_bounds_the_wait_on_the_injected_clock() -> None:
    async def scenario() -> None:
        recorder, observer = Recorder(), Observer()
        now = [0.0]
        bounded = Batching(max_batch_size=8, max_latency_ms=NEVER_MS)
        batcher = Batcher(recorder, bounded, observer=observer, clock=lambda: now[0])
        pending = asyncio.ensure_future(batcher.submit([7]))
        for _ in range(5):
            await asyncio.sleep(0)
        assert recorder.batches == []
        now[0] = NEVER_MS / 1000 + 1  # the oldest request is now past its bound
        batcher.update(bounded)  # wakes the worker, which reads the clock again
        assert await pending == ["r7"]
        assert observer.dispatches == [(1, "timeout", 1)]
        await batcher.close()

    run(scenario())


def test_large_request_is_split_across_batches_in_order() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batcher = Batcher(recorder, Batching(max_batch_size=3, max_latency_ms=0))
        answer = await batcher.submit(list(range(8)))
        assert answer == [f"r{i}" for i in range(8)]
        assert [len(batch) for batch in recorder.batches] == [3, 3, 2]
        await batcher.close()

    run(scenario())


def test_large_request_is_refused_when_splitting_is_off() -> None:
    async def scenario() -> None:
        batcher = Batcher(Recorder(), Batching(max_batch_size=3, split=False))
        with pytest.raises(BatchTooLarge, match="carries 4 instances but a batch holds at most 3"):
            await batcher.submit([1, 2, 3, 4])

    run(scenario())


def test_requests_arriving_during_a_batch_form_the_next() -> None:
    async def scenario() -> None:
        recorder = Recorder(hold=True)
        batcher = Batcher(recorder, Batching(max_batch_size=2, max_latency_ms=NEVER_MS))
        first = asyncio.ensure_future(batcher.submit([1, 2]))
        await recorder.started.wait()
        second = asyncio.ensure_future(batcher.submit([3]))
        third = asyncio.ensure_future(batcher.submit([4]))
        for _ in range(5):
            await asyncio.sleep(0)
        assert recorder.batches == [[1, 2]]  # one batch at a time
        recorder.release.set()
        assert await asyncio.gather(first, second, third) == [["r1", "r2"], ["r3"], ["r4"]]
        assert recorder.batches == [[1, 2], [3, 4]]
        await batcher.close()

    run(scenario())


def test_exception_fails_every_request_of_the_batch_only() -> None:
    async def scenario() -> None:
        calls: list[list[int]] = []

        async def explode_on_first(batch: list[int]) -> list[int]:
            calls.append(batch)
            if len(calls) == 1:
                raise ValueError("model crashed")
            return batch

        batcher = Batcher(explode_on_first, Batching(max_batch_size=2, max_latency_ms=NEVER_MS))
        results = await asyncio.gather(
            batcher.submit([1]), batcher.submit([2]), return_exceptions=True
        )
        assert [type(result) for result in results] == [ValueError, ValueError]
        assert await asyncio.gather(batcher.submit([3]), batcher.submit([4])) == [[3], [4]]
        await batcher.close()

    run(scenario())


def test_wrong_result_length_names_both_lengths() -> None:
    async def scenario() -> None:
        async def drops_one(batch: list[int]) -> list[int]:
            return batch[:-1]

        batcher = Batcher(drops_one, Batching(max_batch_size=3, max_latency_ms=NEVER_MS))
        results = await asyncio.gather(
            batcher.submit([1, 2]), batcher.submit([3]), return_exceptions=True
        )
        for result in results:
            assert isinstance(result, BatchResultMismatch)
            assert "returned 2 results for a batch of 3 instances" in str(result)
        await batcher.close()

    run(scenario())


def test_cancelled_caller_leaves_the_queue_before_dispatch() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batcher = Batcher(recorder, Batching(max_batch_size=3, max_latency_ms=NEVER_MS))
        leaving = asyncio.ensure_future(batcher.submit([1, 2]))
        await asyncio.sleep(0)
        assert batcher.queued_instances == 2
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert batcher.queued_instances == 0
        answers = await asyncio.gather(batcher.submit([3, 4]), batcher.submit([5]))
        assert answers == [["r3", "r4"], ["r5"]]
        assert recorder.batches == [[3, 4, 5]]
        await batcher.close()

    run(scenario())


def test_empty_request_needs_no_batch() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batcher = Batcher(recorder, Batching(max_batch_size=3))
        assert await batcher.submit([]) == []
        assert recorder.batches == []

    run(scenario())


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=25),
    delays=st.lists(st.integers(min_value=0, max_value=3), min_size=25, max_size=25),
    max_batch_size=st.integers(min_value=1, max_value=10),
    max_latency_ms=st.sampled_from([0.0, 0.5, 2.0]),
)
def test_every_request_gets_exactly_its_results_in_order(
    sizes: list[int], delays: list[int], max_batch_size: int, max_latency_ms: float
) -> None:
    async def scenario() -> None:
        recorder = Recorder()
        batcher = Batcher(
            recorder, Batching(max_batch_size=max_batch_size, max_latency_ms=max_latency_ms)
        )
        requests = []
        next_id = 0
        for size in sizes:
            requests.append(list(range(next_id, next_id + size)))
            next_id += size

        async def client(index: int) -> list[Any]:
            for _ in range(delays[index]):  # arrive after a random number of loop turns
                await asyncio.sleep(0)
            return await batcher.submit(requests[index])

        answers = await asyncio.gather(*(client(i) for i in range(len(requests))))
        for request, answer in zip(requests, answers, strict=True):
            assert answer == [f"r{item}" for item in request]
        assert all(0 < len(batch) <= max_batch_size for batch in recorder.batches)
        assert sorted(item for batch in recorder.batches for item in batch) == list(range(next_id))
        await batcher.close()

    run(scenario())
