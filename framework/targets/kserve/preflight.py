"""What a deploy checks on the cluster before it applies anything, so a refusal leaves nothing
half applied.

Each InferenceService is applied as a dry run (the API server's admission, ResourceQuota on the
InferenceService count included) and so is the first pod it would run (ResourceQuota on CPU,
memory and GPU, the namespace's LimitRange, the service account): the cluster itself decides, and
a refusal becomes one line naming the quota or limit. The Secrets and ConfigMaps the models take
values from must exist and hold the keys named (their values are never read into anything).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from zeroserve.errors import UsageError
from zeroserve.targets.kserve.render import RUNTIME, RUNTIME_RESOURCES

# What the API server's admission says when a namespace's limits refuse an object, and the line
# a user reads for it (the fix included).
REFUSALS = (
    (
        r"exceeded quota: (?P<quota>[^,]+), requested: (?P<requested>.+?), used: (?P<used>.+?), "
        r"limited: (?P<limited>.+)$",
        "namespace {namespace} is over its ResourceQuota {quota}: this asks {requested} with "
        "{used} in use of {limited}; free some (`zeroserve delete` a model) or ask for a larger "
        "quota",
    ),
    (
        r"status unknown for quota: (?P<quota>[^,]+)",
        "the usage of ResourceQuota {quota} in {namespace} is not counted yet (the cluster's "
        "quota controller has not caught up); retry shortly",
    ),
    (
        r"failed quota: (?P<quota>[^:]+): must specify (?P<resources>\S+)",
        "ResourceQuota {quota} in {namespace} needs every pod to declare {resources}: set cpu= "
        "and memory= on the @predictor, or ask for a LimitRange with defaults",
    ),
    (
        r"(?P<rule>(maximum|minimum) \S+ usage per \S+ is .+)$",
        "the LimitRange of namespace {namespace} refuses the model's pod: {rule}; change "
        "cpu=/memory=/gpu= on the @predictor",
    ),
    (
        r"no API token found for service account (?P<account>\S+)",
        "service account {account} in {namespace} has no token yet (just created?); retry shortly",
    ),
    (
        r"error looking up service account (?P<account>[^:]+):",
        "service account {account} does not exist: install the kit in {namespace} (kubectl apply "
        "-k manifests/base -n {namespace}) or pass --service-account",
    ),
)
NOTHING_APPLIED = "nothing was applied"
LIMIT_RANGER = "kubernetes.io/limit-ranger"
ISVC_COUNT = "count/inferenceservices.serving.kserve.io"
# Knative's queue-proxy beside every model container: a CPU request of 25m and nothing else
# unless `queueproxy.resource-defaults` is on (config-deployment's documented defaults), so a
# namespace's LimitRange fills in its memory.
QUEUE_PROXY = {"name": "queue-proxy", "image": "queue", "resources": {"requests": {"cpu": "25m"}}}


def admission_refusal(message: str, namespace: str) -> str | None:
    """One line for a refusal by the namespace's quota, limits or service accounts; None when
    the 403 is RBAC's (this user may not)."""
    for pattern, line in REFUSALS:
        if found := re.search(pattern, message):
            return line.format(namespace=namespace, **found.groupdict()) + f"; {NOTHING_APPLIED}"
    return None


def first_pod(isvc: dict[str, Any]) -> dict[str, Any]:
    """The pod Knative makes of ``isvc``'s revision, as quota and limits see it: the model
    container (the runtime's resources with the model's own merged over them, as KServe merges
    the two containers) and the queue-proxy."""
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    resources = copy.deepcopy(RUNTIME_RESOURCES)
    for kind, amounts in model.get("resources", {}).items():
        resources.setdefault(kind, {}).update(amounts)
    container = {"name": "kserve-container", "image": model.get("image", RUNTIME)}
    spec: dict[str, Any] = {
        "containers": [{**container, "resources": resources}, copy.deepcopy(QUEUE_PROXY)]
    }
    if predictor.get("serviceAccountName"):
        spec["serviceAccountName"] = predictor["serviceAccountName"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{isvc['metadata']['name']}-predictor-",
            "labels": predictor.get("labels", {}),
        },
        "spec": spec,
    }


def check_before_apply(
    cluster: Any, isvcs: list[dict[str, Any]], namespace: str, new: int = 0
) -> list[str]:
    """UsageError for the first model the cluster would refuse; else notes to print (defaults
    a LimitRange filled in, checks this user may not make). ``new``: how many of ``isvcs`` do
    not exist yet (each dry run counts one; together they must fit the quota too)."""
    notes: list[str] = []
    for isvc in isvcs:
        notes += _check_references(cluster, isvc, namespace)
    _check_count(cluster, namespace, new)
    for isvc in isvcs:
        cluster.apply(isvc, force=True, dry_run=True)
        admitted = cluster.admit_pod(first_pod(isvc), namespace)
        name = isvc["metadata"]["name"]
        if admitted is None:
            notes.append(
                f"{name}: its pod's quota and limits were not checked (you may not create pods "
                f"in {namespace}, even as a dry run); the cluster checks them at scale-up"
            )
            continue
        filled = (admitted["metadata"].get("annotations") or {}).get(LIMIT_RANGER)
        if filled:
            notes.append(f"{name}: the LimitRange of {namespace} set defaults ({filled})")
    return notes


def _check_count(cluster: Any, namespace: str, new: int) -> None:
    """The InferenceServices a deploy creates, together, against the namespace's quotas."""
    for quota in cluster.quotas(namespace) if new > 1 else []:
        hard = quota["hard"].get(ISVC_COUNT)
        if hard is None:
            continue
        used = int(quota["used"].get(ISVC_COUNT, 0))
        if used + new > int(hard):
            message = (
                f"exceeded quota: {quota['name']}, requested: {ISVC_COUNT}={new}, "
                f"used: {ISVC_COUNT}={used}, limited: {ISVC_COUNT}={hard}"
            )
            raise UsageError(admission_refusal(message, namespace) or message)


def _check_references(cluster: Any, isvc: dict[str, Any], namespace: str) -> list[str]:
    notes = []
    name = isvc["metadata"]["name"]
    for variable in isvc["spec"]["predictor"]["model"].get("env", []):
        source = variable.get("valueFrom") or {}
        for kind, field in (("secret", "secretKeyRef"), ("configmap", "configMapKeyRef")):
            if field not in source:
                continue
            ref = source[field]
            readable, keys = cluster.keys_of(kind, ref["name"], namespace)
            if not readable:
                notes.append(
                    f"{name}: {kind} {ref['name']} not checked (you may not read {kind}s in "
                    f"{namespace}); a missing one keeps the pod from starting"
                )
            elif keys is None:
                raise UsageError(
                    f"{name}: env {variable['name']} comes from {kind} {ref['name']}, which does "
                    f"not exist in {namespace}; create it (kubectl create {kind} "
                    f"{'generic ' if kind == 'secret' else ''}{ref['name']} -n {namespace} "
                    f"--from-literal={ref['key']}=...); {NOTHING_APPLIED}"
                )
            elif ref["key"] not in keys:
                raise UsageError(
                    f"{name}: env {variable['name']} comes from key {ref['key']} of {kind} "
                    f"{ref['name']} in {namespace}, which has only {sorted(keys)}; add the key "
                    f"or fix the reference; {NOTHING_APPLIED}"
                )
    return notes
