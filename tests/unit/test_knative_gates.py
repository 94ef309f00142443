"""Every field `render` can emit, held against Knative's feature gates: a rendered pod that uses a
gated field the kit does not enable would be refused by Knative's webhook on a stock install.

The gates and their defaults are Knative's "Feature and extension flags"
(https://knative.dev/docs/serving/configuration/feature-flags/): each `kubernetes.podspec-*` flag
allows one PodSpec field. Knative's masks (knative.dev/serving pkg/apis/serving/fieldmask.go,
PodSpecMask and PodSecurityContextMask) drop a gated field whose flag is off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import MANIFESTS
from tests.unit.test_render import OPTIONS, VARIANTS
from zeroserve.targets.kserve.render import RenderOptions, render_inference_service

# a predictor field (KServe's PodSpec part of it) -> (Knative's flag, its default)
GATES = {
    "affinity": ("kubernetes.podspec-affinity", "disabled"),
    "dnsConfig": ("kubernetes.podspec-dnsconfig", "disabled"),
    "dnsPolicy": ("kubernetes.podspec-dnspolicy", "disabled"),
    "hostAliases": ("kubernetes.podspec-hostaliases", "disabled"),
    "initContainers": ("kubernetes.podspec-init-containers", "disabled"),
    "nodeSelector": ("kubernetes.podspec-nodeselector", "disabled"),
    "priorityClassName": ("kubernetes.podspec-priorityclassname", "disabled"),
    "runtimeClassName": ("kubernetes.podspec-runtimeclassname", "disabled"),
    "schedulerName": ("kubernetes.podspec-schedulername", "disabled"),
    "securityContext": ("kubernetes.podspec-securitycontext", "disabled"),
    "tolerations": ("kubernetes.podspec-tolerations", "disabled"),
    "topologySpreadConstraints": ("kubernetes.podspec-topologyspreadconstraints", "disabled"),
    "volumes.persistentVolumeClaim": ("kubernetes.podspec-persistent-volume-claim", "disabled"),
    "volumeMounts on a claim, writable": ("kubernetes.podspec-persistent-volume-write", "disabled"),
    "volumes.emptyDir": ("kubernetes.podspec-emptydir", "enabled"),
    "volumes.hostPath": ("kubernetes.podspec-hostpath", "disabled"),
    "env.valueFrom.fieldRef": ("kubernetes.podspec-fieldref", "disabled"),
}
# KServe's own predictor fields, and PodSpec fields Knative always allows
UNGATED = {
    "minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "containerConcurrency",
    "timeout", "canaryTrafficPercent", "model", "volumes", "labels", "annotations",
    "serviceAccountName",
}  # fmt: skip
ALWAYS_ALLOWED_VOLUMES = {"configMap", "secret", "projected"}


def gated_fields(isvc: dict[str, Any]) -> set[str]:
    """The GATES keys a rendered InferenceService uses; AssertionError for a field this table
    does not know (look it up in Knative's flags and add it)."""
    predictor = isvc["spec"]["predictor"]
    used = set()
    for key in predictor:
        if key in UNGATED:
            continue
        assert key in GATES, f"render emits predictor.{key}: add its Knative gate to GATES"
        used.add(key)
    claims = set()
    for volume in predictor.get("volumes", []):
        (kind,) = set(volume) - {"name"}
        if kind in ALWAYS_ALLOWED_VOLUMES:
            continue
        assert f"volumes.{kind}" in GATES, f"render emits a {kind} volume: add its gate"
        used.add(f"volumes.{kind}")
        if kind == "persistentVolumeClaim":
            claims.add(volume["name"])
    for mount in predictor["model"].get("volumeMounts", []):
        if mount["name"] in claims and not mount.get("readOnly"):
            used.add("volumeMounts on a claim, writable")
    for variable in predictor["model"].get("env", []):
        if "fieldRef" in (variable.get("valueFrom") or {}):
            used.add("env.valueFrom.fieldRef")
    return used


def rendered_variants() -> list[dict[str, Any]]:
    pinned = RenderOptions(**{**OPTIONS.__dict__, "model_uris": {"plain": "s3://b/m@sha256:0"}})
    return [
        render_inference_service(spec, options)
        for spec in VARIANTS.values()
        for options in (OPTIONS, pinned)
    ]


def kit_flags() -> dict[str, str]:
    patch = MANIFESTS / "knative" / "config-features-patch.yaml"
    return dict(yaml.safe_load(Path(patch).read_text())["data"])


@pytest.mark.parametrize("isvc", rendered_variants(), ids=lambda isvc: isvc["metadata"]["name"])
def test_every_gated_field_a_rendered_pod_uses_is_enabled(isvc: dict[str, Any]) -> None:
    enabled = kit_flags()
    for field in gated_fields(isvc):
        flag, default = GATES[field]
        assert default == "enabled" or enabled.get(flag) == "enabled", (
            f"{isvc['metadata']['name']} uses {field}, which Knative refuses unless {flag} is "
            "enabled: add it to manifests/knative/config-features-patch.yaml"
        )


def test_the_kit_enables_nothing_that_rendered_pods_do_not_use() -> None:
    used = set().union(*(gated_fields(isvc) for isvc in rendered_variants()))
    needed = {GATES[field][0] for field in used if GATES[field][1] == "disabled"}
    assert set(kit_flags()) == needed
    assert set(kit_flags().values()) == {"enabled"}


def test_an_unknown_predictor_field_fails_with_what_to_do() -> None:
    isvc = render_inference_service(VARIANTS["defaults"], OPTIONS)
    isvc["spec"]["predictor"]["hostNetwork"] = True
    with pytest.raises(AssertionError, match="add its Knative gate"):
        gated_fields(isvc)
