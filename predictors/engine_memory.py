"""The shared memory an engine's processes leave behind, removed once the engine is shut down.

vLLM's engine core and workers talk through message queues in shared memory (multiprocessing's
``/dev/shm/psm_*`` segments), registered with multiprocessing's resource tracker, which unlinks
what is left once its last user is gone. vLLM's shutdown kills the engine's processes, so the
segments stay until then; and where the tracker itself is killed with the process that started
it (Ray kills a replica's children when it stops the replica), nothing unlinks them: each start
of an engine left two segments in ``/dev/shm``, and a named semaphore of joblib's loky that the
engine's worker made. ``EngineSegments`` notes the engine's processes and the segments they have
mapped while they run, and unlinks what of these, and of those processes' loky semaphores, is
still there after the shutdown.
Linux only (``/proc``); elsewhere it finds none and does nothing.
"""

from __future__ import annotations

import contextlib
import os
from multiprocessing import resource_tracker
from pathlib import Path

SEGMENT_PREFIX = "/dev/shm/psm_"  # multiprocessing.shared_memory's names
# joblib's loky names its semaphores after the process that made them; its own tracker unlinks
# them at the end, and a killed tracker leaves them too (one per engine worker)
LOKY_SEMAPHORE = "sem.loky-{pid}-"


class EngineSegments:
    """The shared-memory segments of this process's descendants (the engine's processes)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.pids: set[int] = set()

    def note(self) -> None:
        """Note the descendants, and the segments they have mapped now (call it while they
        run)."""
        for pid in _descendants(os.getpid()):
            self.pids.add(pid)
            self.names |= _mapped_segments(pid)

    def unlink_left(self) -> list[str]:
        """Unlink the noted segments, and the loky semaphores the noted processes made, that
        are still there (the engine is gone); their names."""
        prefixes = tuple(LOKY_SEMAPHORE.format(pid=pid) for pid in self.pids)
        shared = os.listdir("/dev/shm") if prefixes and os.path.isdir("/dev/shm") else []
        semaphores = {name for name in shared if name.startswith(prefixes)}
        unlinked = []
        for name in sorted(self.names | semaphores):
            path = Path("/dev/shm") / name
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                unlinked.append(name)
                if name.startswith("psm_"):  # multiprocessing's tracker would try again at
                    with contextlib.suppress(Exception):  # its end, and warn it found nothing
                        resource_tracker.unregister(f"/{name}", "shared_memory")
        self.names.clear()
        self.pids.clear()
        return unlinked


def _descendants(root: int) -> list[int]:
    """Every process below ``root``, from the parent ids in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            with contextlib.suppress(OSError):  # a process that ended meanwhile
                children.setdefault(parent_of(int(entry)), []).append(int(entry))
    found, waiting = [], list(children.get(root, ()))
    while waiting:
        pid = waiting.pop()
        found.append(pid)
        waiting.extend(children.get(pid, ()))
    return found


def parent_of(pid: int) -> int:
    """The parent of ``pid`` (from /proc: the fields after the command's closing parenthesis)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _mapped_segments(pid: int) -> set[str]:
    """The ``psm_*`` segment names process ``pid`` has mapped."""
    try:
        lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except OSError:  # gone meanwhile, or not ours to read
        return set()
    return {
        line[line.index(SEGMENT_PREFIX) :].split()[0].removeprefix("/dev/shm/")
        for line in lines
        if SEGMENT_PREFIX in line
    }
