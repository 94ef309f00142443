"""What KServe's controller writes into an InferenceService's status, for a cluster without it.

No KServe controller (nor Knative) runs in these tests. ``KServeStandIn.reconcile`` does, for the
predictor of an InferenceService in Knative mode, what these KServe 0.21 sources do, and writes the
result through the status subresource, as the controller would:

- ``pkg/controller/v1beta1/inferenceservice/reconcilers/knative/ksvc_reconciler.go``
  (``createKnativeService``): the Knative traffic targets. With ``canaryTrafficPercent`` set and a
  rolled-out revision, the latest revision gets that percent (tag ``latest`` with tag routing on)
  and the rolled-out one the rest (tag ``prev``); otherwise the latest revision gets 100.
- ``pkg/apis/serving/v1beta1/inference_service_status.go`` (``PropagateStatus``): the revision
  fields of ``status.components.predictor``; the latest ready revision becomes the rolled-out one
  once it has 100% of traffic, the one before it becoming ``previousRolledoutRevision``.

Knative's part is reduced to what those read: a change of the predictor's pod template (anything
but ``canaryTrafficPercent``) creates the next revision, ``<name>-predictor-0000N``, ready at once
unless ``ready=False`` is asked; ``latestRevision: true`` targets resolve to the latest ready one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

TAG_ROUTING = "serving.kserve.io/enable-tag-routing"


@dataclass
class _Revisions:
    template: str = ""
    created: int = 0
    ready: str = ""
    rolled_out: str = ""
    previous: str = ""


@dataclass
class KServeStandIn:
    """Reconciles InferenceServices through ``custom``, a kubernetes CustomObjectsApi."""

    custom: Any
    seen: dict[tuple[str, str], _Revisions] = field(default_factory=dict)

    def reconcile(self, name: str, namespace: str = "default", *, ready: bool = True) -> None:
        isvc = self.custom.get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", namespace, "inferenceservices", name
        )
        predictor = dict(isvc["spec"]["predictor"])
        canary = predictor.pop("canaryTrafficPercent", None)
        revisions = self.seen.setdefault((namespace, name), _Revisions())
        template = json.dumps(predictor, sort_keys=True)
        if template != revisions.template:  # Knative makes a revision of each new template
            revisions.template, revisions.created = template, revisions.created + 1
        latest = f"{name}-predictor-{revisions.created:05d}"
        if ready:
            revisions.ready = latest
        tags = (isvc["metadata"].get("annotations") or {}).get(TAG_ROUTING) == "true"
        traffic = self._traffic(revisions, canary, tags)
        self._propagate(revisions, traffic, latest)
        status = {
            "url": f"http://{name}.{namespace}.example.com",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if revisions.ready else "False",
                    "lastTransitionTime": "2026-12-01T00:00:00Z",
                }
            ],
            "components": {
                "predictor": {
                    "latestCreatedRevision": latest,
                    "latestReadyRevision": revisions.ready,
                    "latestRolledoutRevision": revisions.rolled_out,
                    **(
                        {"previousRolledoutRevision": revisions.previous}
                        if revisions.previous
                        else {}
                    ),
                    "traffic": traffic,
                }
            },
        }
        self.custom.patch_namespaced_custom_object_status(
            "serving.kserve.io", "v1beta1", namespace, "inferenceservices", name,
            {"status": status}, _content_type="application/merge-patch+json",
        )  # fmt: skip

    @staticmethod
    def _traffic(revisions: _Revisions, canary: int | None, tags: bool) -> list[dict[str, Any]]:
        """createKnativeService's targets, as Knative reports them (latest resolved)."""
        latest: dict[str, Any] = {"revisionName": revisions.ready, "latestRevision": True}
        if tags:
            latest["tag"] = "latest"
        if canary is None or not revisions.rolled_out:
            return [{**latest, "percent": 100}]
        targets = [{**latest, "percent": canary}]
        if canary < 100:
            targets.append(
                {
                    "tag": "prev",
                    "revisionName": revisions.rolled_out,
                    "latestRevision": False,
                    "percent": 100 - canary,
                }
            )
        return targets

    @staticmethod
    def _propagate(revisions: _Revisions, traffic: list[dict[str, Any]], latest: str) -> None:
        """PropagateStatus's rolled-out revision tracking."""
        total: dict[str, int] = {}
        for target in traffic:
            total[target["revisionName"]] = total.get(target["revisionName"], 0) + target["percent"]
        for target in traffic:
            if target["revisionName"] != revisions.ready or not target["latestRevision"]:
                continue
            if revisions.rolled_out != revisions.ready:
                if target["percent"] == 100:
                    revisions.previous, revisions.rolled_out = revisions.rolled_out, revisions.ready
            elif (
                revisions.ready == latest
                and target["percent"] < 100
                and total.get(target["revisionName"]) == 100
                and revisions.previous
            ):  # the rolled-out revision split over itself: back to the previous one
                revisions.rolled_out = revisions.previous
