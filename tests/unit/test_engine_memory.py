"""EngineSegments: the shared memory a killed engine process leaves is unlinked after it.

A real forked child (as the engine's processes are forks) makes a multiprocessing segment
registered with the parent's tracker, is killed with no clean-up of its own, and the segment is
gone only after ``unlink_left`` (and no longer registered: the tracker has nothing to warn of); a
segment of this process itself is never touched."""

from __future__ import annotations

import _multiprocessing
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing import resource_tracker, shared_memory
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest

from zeroserve.predictors.engine_memory import EngineSegments

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no /dev/shm: Linux only"),
]


def _hold_segment(sender: Connection) -> None:
    """In a forked child, as an engine process: a segment registered with the parent's
    tracker (shared by the fork), held until the child is killed."""
    segment = shared_memory.SharedMemory(create=True, size=4096)
    sender.send(segment.name)
    time.sleep(60)


def _hold_loky_semaphore(sender: Connection) -> None:
    """In a forked child, as vLLM's worker: a named semaphore as joblib's loky makes one (kept
    by name until its own tracker unlinks it), held until the child is killed."""
    name = f"loky-{os.getpid()}-test"
    semaphore = _multiprocessing.SemLock(1, 1, 1, f"/{name}", False)  # loky's: unlink later
    sender.send(f"sem.{name}")
    time.sleep(60)
    del semaphore


def _child_with_segment(
    hold: Callable[[Connection], None] = _hold_segment,
) -> tuple[BaseProcess, str]:
    resource_tracker.ensure_running()  # the child shares it, as the engine's processes do
    receiver, sender = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=hold, args=(sender,))
    child.start()
    assert receiver.poll(20), "the child made no segment"
    name = str(receiver.recv())
    receiver.close()
    sender.close()
    return child, name


@pytest.mark.parametrize("hold", [_hold_segment, _hold_loky_semaphore], ids=["psm", "loky"])
def test_the_segment_a_killed_child_mapped_is_unlinked_after_it(
    hold: Callable[[Connection], None],
) -> None:
    child, name = _child_with_segment(hold)
    try:
        segments = EngineSegments()
        segments.note()
        assert child.pid in segments.pids
        os.kill(child.pid or 0, signal.SIGKILL)  # no clean-up of its own, as a killed engine
        child.join(timeout=10)
        assert (Path("/dev/shm") / name).exists()  # left behind, as by a killed engine
        assert segments.unlink_left() == [name]
        assert not (Path("/dev/shm") / name).exists()
    finally:
        child.kill()
        child.join(timeout=10)
        (Path("/dev/shm") / name).unlink(missing_ok=True)


def test_segments_of_other_processes_and_of_this_one_are_not_noted() -> None:
    own = shared_memory.SharedMemory(create=True, size=4096)
    try:
        segments = EngineSegments()
        segments.note()
        assert own.name not in segments.names
        assert segments.unlink_left() == []
        assert (Path("/dev/shm") / own.name).exists()
    finally:
        own.close()
        own.unlink()


def test_a_segment_already_removed_is_passed_over() -> None:
    child, name = _child_with_segment()
    try:
        segments = EngineSegments()
        segments.note()
        child.kill()
        child.join(timeout=10)
        os.unlink(Path("/dev/shm") / name)
        resource_tracker.unregister(f"/{name}", "shared_memory")  # as its remover would
        assert segments.unlink_left() == []
    finally:
        child.kill()
        child.join(timeout=10)
        (Path("/dev/shm") / name).unlink(missing_ok=True)
