"""What ``GET /zeroserve/status`` says of one model."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zeroserve.local.pool import ModelPool


class ColdStart:
    """One start from zero (or after a failure): what started it, how, and its timings."""

    def __init__(self, trigger: str, mode: str, now: float) -> None:
        self.began = now
        self.record: dict[str, Any] = {"trigger": trigger, "mode": mode, "started_at": time.time()}

    def ready(self, now: float, worker_timeline: dict[str, Any]) -> bool:
        """Note the first replica ready; True the first time only."""
        if "ready_s" in self.record:
            return False
        self.record["ready_s"] = round(now - self.began, 4)
        self.record["worker_timeline"] = worker_timeline
        return True

    def answered(self, now: float) -> None:
        """Note the first answer after the start (called on every answer: the check is all
        the later ones cost)."""
        if "first_response_s" not in self.record:
            self.record["first_response_s"] = round(now - self.began, 4)


def engine_asleep(pool: ModelPool, now: float) -> bool:
    """Whether the model's LLM engine sleeps now: ``llm.sleep_after`` idle seconds with nothing in
    flight, the rule its worker sleeps by (``zeroserve.predictors.vllm_sleep``), and each ready
    replica said at its start that its engine can sleep (its timeline's ``sleep_mode`` mark)."""
    llm = pool.spec.llm
    if llm is None or llm.sleep_after is None or pool.in_flight or pool.waiters:
        return False
    if now - pool.last_active < llm.sleep_after:
        return False
    ready = [r for r in pool.replicas.values() if str(r.state) == "ready"]
    return bool(ready) and all(_can_sleep(replica.timeline) for replica in ready)


def _replica_state(state: str, asleep: bool) -> str:
    return "asleep" if asleep and state == "ready" else state


def _can_sleep(timeline: dict[str, Any]) -> bool:
    marks = [p for p in timeline.get("phases", []) if p.get("name") == "sleep_mode"]
    return bool(marks) and bool(marks[-1].get("available"))


def pool_status(pool: ModelPool) -> dict[str, Any]:
    """One model's part of GET /zeroserve/status."""
    now = time.monotonic()
    last = pool.last_cold_start
    asleep = engine_asleep(pool, now)
    return {
        "state": "asleep" if asleep else str(pool.lifecycle.state),
        "replicas": [
            {
                "id": replica.id,
                "pid": replica.pid,
                "port": replica.port,
                "state": _replica_state(str(replica.state), asleep),
                "in_flight": replica.in_flight,
            }
            for replica in pool.replicas.values()
        ],
        "in_flight": pool.in_flight,
        "queued": len(pool.waiters),
        "min_replicas": pool.spec.min_replicas,
        "max_replicas": pool.spec.max_replicas,
        "concurrency_target": pool.spec.concurrency,
        "scale_to_zero_after_s": pool.spec.scale_to_zero_after,
        "idle_s": round(now - pool.last_active, 3),
        "failures": pool.lifecycle.failures,
        "last_error": pool.lifecycle.last_error,
        "retry_after_s": round(pool.lifecycle.retry_after(now), 3),
        "last_cold_start": last or None,
        "cold_starts": list(pool.recent_cold_starts),  # the last few, oldest first
        "batching": pool.batching.model_dump() if pool.batching is not None else None,
    }
