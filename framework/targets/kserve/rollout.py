"""Rollouts as KServe does them: what a canary split is, and which changes of it make sense.

KServe (``reconcilers/knative/ksvc_reconciler.go``) splits a predictor's traffic only while
``canaryTrafficPercent`` is set *and* a revision has rolled out: the latest revision gets that
percent (tag ``latest``), the last rolled-out revision the rest (tag ``prev``); without the field
the latest revision takes all of it. ``InferenceServiceStatus.PropagateStatus`` moves
``latestRolledoutRevision`` to the latest ready revision once it has 100%, keeping the one before
as ``previousRolledoutRevision``. So the split must be set in the same update that creates the
new revision (``deploy --canary N``); later changes of the percent move an existing split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zeroserve.errors import UsageError


@dataclass(frozen=True)
class TrafficShare:
    """One traffic target of the predictor, as KServe reports it."""

    revision: str
    percent: int
    tag: str
    latest: bool

    def __str__(self) -> str:
        return f"{self.tag + ' ' if self.tag else ''}{self.revision} {self.percent}%"


@dataclass(frozen=True)
class ModelStatus:
    """An InferenceService as `zeroserve status` shows it: readiness, revisions, traffic."""

    name: str
    namespace: str
    ready: bool
    url: str
    latest_revision: str  # latestCreatedRevision
    latest_ready_revision: str
    rolled_out_revision: str  # latestRolledoutRevision: the last one that had all traffic
    previous_revision: str  # previousRolledoutRevision
    traffic: tuple[TrafficShare, ...]
    canary_percent: int | None  # the spec's canaryTrafficPercent
    conditions: list[dict[str, Any]]

    @classmethod
    def of(cls, isvc: dict[str, Any]) -> ModelStatus:
        status = isvc.get("status") or {}
        predictor = (status.get("components") or {}).get("predictor") or {}
        conditions = list(status.get("conditions") or [])
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        traffic = tuple(
            TrafficShare(
                revision=str(t.get("revisionName") or "?"),
                percent=int(t.get("percent") or 0),
                tag=str(t.get("tag") or ""),
                latest=bool(t.get("latestRevision")),
            )
            for t in predictor.get("traffic") or []
        )
        return cls(
            name=isvc["metadata"]["name"],
            namespace=isvc["metadata"]["namespace"],
            ready=ready,
            url=str(status.get("url") or ""),
            latest_revision=str(predictor.get("latestCreatedRevision") or ""),
            latest_ready_revision=str(predictor.get("latestReadyRevision") or ""),
            rolled_out_revision=str(predictor.get("latestRolledoutRevision") or ""),
            previous_revision=str(predictor.get("previousRolledoutRevision") or ""),
            traffic=traffic,
            canary_percent=isvc["spec"]["predictor"].get("canaryTrafficPercent"),
            conditions=conditions,
        )

    @property
    def canary_in_progress(self) -> bool:
        """A split is set and the latest revision has not rolled out (it has not had 100%)."""
        return (
            self.canary_percent is not None
            and bool(self.rolled_out_revision)
            and self.latest_revision != self.rolled_out_revision
        )

    def traffic_text(self) -> str:
        return ", ".join(str(share) for share in self.traffic)


def checked_percent(percent: int, flag: str = "--canary") -> int:
    """A canary percent, or UsageError naming the range."""
    if not 0 <= percent <= 100:
        raise UsageError(f"{flag} {percent}: give a percent from 0 to 100")
    return percent


def canary_for_deploy(name: str, live: dict[str, Any] | None, requested: int | None) -> int | None:
    """The ``canaryTrafficPercent`` a deploy sends: the one asked for (which needs a rolled-out
    revision to split against), else the cluster's (a plain redeploy keeps a split)."""
    if requested is not None:
        checked_percent(requested)
        if live is None or not ModelStatus.of(live).rolled_out_revision:
            raise UsageError(
                f"{name} has no rolled-out revision for a canary to split against; deploy it "
                "without --canary first"
            )
        return requested
    if live is None:
        return None
    kept = live["spec"]["predictor"].get("canaryTrafficPercent")
    return int(kept) if kept is not None else None


def check_rollout(status: ModelStatus) -> None:
    """``rollout --canary N`` moves a split in progress; it never starts one."""
    if not status.canary_in_progress:
        raise UsageError(
            f"{status.name} has no canary in progress (its latest revision has rolled out); "
            "start one with `zeroserve deploy PATH --canary N`"
        )


def check_promote(status: ModelStatus) -> None:
    if status.canary_percent is None:
        raise UsageError(
            f"{status.name} has no canary to promote: its latest revision already takes all traffic"
        )


def check_rollback(status: ModelStatus) -> None:
    """Rollback pins traffic to the last rolled-out revision, so there must be one other than
    the latest."""
    if not status.rolled_out_revision or status.rolled_out_revision == status.latest_revision:
        raise UsageError(
            f"{status.name} has no previous revision to roll back to: its latest revision "
            f"({status.latest_revision or 'none yet'}) is the one rolled out; deploy the "
            "previous version again instead"
        )
