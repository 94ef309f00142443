"""The audit trail on the cluster: every deploy, rollout step, promote and rollback of a model,
kept on its InferenceService.

Each change adds one record (who, when, what: the spec's, code's and weights' digests, the
validation report's digest and verdict, the traffic split) to the ``zeroserve.dev/history``
annotation, written in the same apply as the change itself, so the record and the change land
together or not at all; the last ``KEEP`` records are kept (an object's annotations are
limited to 256 KiB). Each also becomes an Event on the InferenceService (``kubectl describe``
shows it; events expire after an hour by default, so the annotation is the record that lasts).
An Event the deployer may not write costs one warning line, not the change.
"""

from __future__ import annotations

import json
from typing import Any

HISTORY = "zeroserve.dev/history"
KEEP = 50
REASONS = {
    "deploy": "Deployed",
    "rollout": "RolledOut",
    "promote": "Promoted",
    "rollback": "RolledBack",
}
COMPONENT = "zeroserve"


def history_of(isvc: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The records on an InferenceService, oldest first (none for an object without them)."""
    annotations = ((isvc or {}).get("metadata") or {}).get("annotations") or {}
    try:
        found = json.loads(annotations.get(HISTORY, "[]"))
    except ValueError:
        return []  # an annotation someone else wrote: not ours to read
    return [entry for entry in found if isinstance(entry, dict)] if isinstance(found, list) else []


def with_record(live: dict[str, Any] | None, entry: dict[str, Any]) -> dict[str, str]:
    """The annotation that adds ``entry`` to the records of ``live`` (as read before a change)."""
    kept = [*history_of(live), entry][-KEEP:]
    return {HISTORY: json.dumps(kept, separators=(",", ":"), sort_keys=True)}


def summary(entry: dict[str, Any]) -> str:
    """One line for an Event and for ``zeroserve history``: every field but when and whose."""
    return f"{entry['action']} by {entry['who']}: {details(entry)}"


def details(entry: dict[str, Any]) -> str:
    """``canary 10; validation.verdict pass; ...``: the fields that say what changed."""
    shown = []
    for key, value in entry.items():
        if key in ("time", "action", "model", "who"):
            continue
        if isinstance(value, dict):
            shown += [f"{key}.{inner} {item}" for inner, item in value.items()]
        else:
            shown.append(f"{key} {value}")
    return "; ".join(shown)


def post_event(core: Any, isvc: dict[str, Any], entry: dict[str, Any]) -> str | None:
    """Write the Event for ``entry`` on ``isvc`` (as applied); None, or why it could not."""
    from kubernetes.client.exceptions import ApiException

    metadata = isvc["metadata"]
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{metadata['name']}.{entry['action']}."},
        "involvedObject": {
            "apiVersion": isvc.get("apiVersion", "serving.kserve.io/v1beta1"),
            "kind": "InferenceService",
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata.get("uid"),
        },
        "reason": REASONS[entry["action"]],
        "message": summary(entry),
        "type": "Normal",
        "source": {"component": COMPONENT},
        "firstTimestamp": entry["time"],
        "lastTimestamp": entry["time"],
        "count": 1,
    }
    try:
        core.create_namespaced_event(metadata["namespace"], event)
    except ApiException as exc:
        reason, name = event["reason"], metadata["name"]
        return (
            f"no {reason} event on inferenceservice {name} (HTTP {exc.status}): the record is kept"
        )
    return None
