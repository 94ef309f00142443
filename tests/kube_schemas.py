"""Validate manifests against the real CRD schemas in ../shared/schemas and core Kubernetes kinds.

A CRD schema leaves unknown fields out of its `properties`; the API server would silently prune
them, so `crd_problems` also reports every field the schema does not know.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "schemas"
CRD_FILES = {
    ("serving.kserve.io", "InferenceService"): "kserve/serving.kserve.io_inferenceservices.yaml",
    (
        "serving.kserve.io",
        "ClusterServingRuntime",
    ): "kserve/serving.kserve.io_clusterservingruntimes.yaml",
}
KUBERNETES_VERSION = "1.33.0"


def require_schemas() -> None:
    if not SCHEMAS.is_dir():
        pytest.skip(
            f"KServe/Knative schemas not found at {SCHEMAS}; they come with the checkout's "
            "shared/ folder"
        )


@cache
def crd_schema(group: str, kind: str, version: str) -> dict[str, Any]:
    require_schemas()
    crd = yaml.safe_load((SCHEMAS / CRD_FILES[(group, kind)]).read_text())
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            return dict(served["schema"]["openAPIV3Schema"])
    raise AssertionError(f"{kind} has no version {version}")


def crd_problems(obj: dict[str, Any]) -> list[str]:
    """Schema violations and unknown (pruned) fields of a custom resource."""
    group, version = obj["apiVersion"].split("/")
    schema = crd_schema(group, obj["kind"], version)
    validator = jsonschema.Draft7Validator(schema)
    problems = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)
    ]
    return problems + unknown_fields(obj, schema, "")


def unknown_fields(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return []
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        found = []
        for key, item in value.items():
            if properties is not None and key in properties:
                found += unknown_fields(item, properties[key], f"{path}/{key}")
            elif isinstance(additional, dict):
                found += unknown_fields(item, additional, f"{path}/{key}")
            elif properties is not None:
                found.append(f"{path}/{key}: not in the schema (would be pruned)")
        return found
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [
            p
            for i, item in enumerate(value)
            for p in unknown_fields(item, schema["items"], f"{path}/{i}")
        ]
    return []


def core_problems(obj: dict[str, Any]) -> list[str]:
    """Problems of a core Kubernetes object, by kubernetes-validate's strict schemas."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [str(exc.message)]
    return []


def problems(obj: dict[str, Any]) -> list[str]:
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    if (group, obj["kind"]) in CRD_FILES:
        return crd_problems(obj)
    return core_problems(obj)
