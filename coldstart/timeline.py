"""StartupTimeline: monotonic timestamps for each phase of a cold start."""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
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


_ACTIVE: contextvars.ContextVar[StartupTimeline | None] = contextvars.ContextVar(
    "zeroserve_active_timeline", default=None
)


def active_timeline() -> StartupTimeline | None:
    """The timeline of the start under way in this context (a model's ``load()`` runs in one), so
    code it calls can add its own phases; None outside a start."""
    return _ACTIVE.get()


class StartupTimeline:
    """Phases of a start (imports, fetch, load, warm-up, ready…), thread-safe, in order.

    ``on_late_phase``, once set (when the start is over and its figures were reported), is called
    with each phase added afterwards (e.g. an LLM's first token), as ``as_dict`` shows it.
    """

    def __init__(self, origin: float | None = None) -> None:
        self.origin = process_start_monotonic() if origin is None else origin
        self._phases: list[Phase] = []
        self._lock = threading.Lock()
        self.on_late_phase: Callable[[dict[str, Any]], None] | None = None

    @contextlib.contextmanager
    def active(self) -> Iterator[StartupTimeline]:
        """Make this the ``active_timeline()`` of the code run inside."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

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
        self.record(name, now, now, **details)

    def record(self, name: str, start: float, end: float, **details: Any) -> None:
        """A phase timed elsewhere (another process: ``time.monotonic`` is the machine's clock)."""
        phase = Phase(name, start, end, dict(details))
        with self._lock:
            self._phases.append(phase)
        if self.on_late_phase is not None:
            self.on_late_phase(self._as_dict(phase))

    def seconds(self, name: str) -> float | None:
        """Duration of a finished phase, or the time of a mark since process start."""
        for phase in self._phases:
            if phase.name == name and phase.end is not None:
                return phase.end - (phase.start if phase.end != phase.start else self.origin)
        return None

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            phases = list(self._phases)
        return {"phases": [self._as_dict(phase) for phase in phases]}

    def _as_dict(self, phase: Phase) -> dict[str, Any]:
        return {
            "name": phase.name,
            "start_s": round(phase.start - self.origin, 4),
            "end_s": None if phase.end is None else round(phase.end - self.origin, 4),
            **phase.details,
        }

    def to_json(self) -> str:
        return json.dumps({"event": "startup_timeline", **self.as_dict()})
