"""StartupTimeline: monotonic timestamps for each phase of a cold start."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


def process_start_monotonic() -> float:
    """When this process started, on the time.monotonic() clock (Linux; else: now)."""
    try:
        with open("/proc/self/stat") as stat:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            up = float(uptime.read().split()[0])
    except (OSError, ValueError, IndexError):
        return time.monotonic()
    age = up - started_ticks / os.sysconf("SC_CLK_TCK")
    return time.monotonic() - max(age, 0.0)


@dataclass
class Phase:
    name: str
    start: float
    end: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


class StartupTimeline:
    """Phases of a start (imports, fetch, load, warm-up, ready…), thread-safe, in order."""

    def __init__(self, origin: float | None = None) -> None:
        self.origin = process_start_monotonic() if origin is None else origin
        self._phases: list[Phase] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def phase(self, name: str, **details: Any) -> Iterator[Phase]:
        """Time a phase; details may be added to the yielded Phase while it runs."""
        current = Phase(name, time.monotonic(), details=dict(details))
        with self._lock:
            self._phases.append(current)
        try:
            yield current
        finally:
            current.end = time.monotonic()

    def mark(self, name: str, **details: Any) -> None:
        """An instant (e.g. ready, first response)."""
        now = time.monotonic()
        with self._lock:
            self._phases.append(Phase(name, now, now, dict(details)))

    def seconds(self, name: str) -> float | None:
        """Duration of a finished phase, or the time of a mark since process start."""
        for phase in self._phases:
            if phase.name == name and phase.end is not None:
                return phase.end - (phase.start if phase.end != phase.start else self.origin)
        return None

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            phases = list(self._phases)
        return {
            "phases": [
                {
                    "name": phase.name,
                    "start_s": round(phase.start - self.origin, 4),
                    "end_s": None if phase.end is None else round(phase.end - self.origin, 4),
                    **phase.details,
                }
                for phase in phases
            ]
        }

    def to_json(self) -> str:
        return json.dumps({"event": "startup_timeline", **self.as_dict()})
