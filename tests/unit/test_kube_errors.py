"""The one-line messages for Kubernetes API errors (the API answers are test doubles here; the
real answers are exercised against a real API server in tests/integration/test_deploy.py)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from zeroserve.errors import UsageError
from zeroserve.targets.kserve.cluster import Cluster


def explain(status: int, body: str, verb: str = "apply", name: str | None = "iris") -> str:
    cluster: Any = object.__new__(Cluster)
    cluster.server = "https://cluster.example:6443"
    error = ApiException(status=status)
    error.body = body
    with pytest.raises(UsageError) as caught, cluster._translated(verb, "team-b", name):
        raise error
    return str(caught.value)


def test_forbidden_names_verb_resource_namespace_and_the_kit() -> None:
    message = explain(403, '{"message": "forbidden"}', verb="list", name=None)
    assert message.startswith("forbidden: you may not list inferenceservices in namespace team-b")
    assert "manifests/base/rbac.yaml" in message


def test_missing_kind_says_install_kserve() -> None:
    message = explain(404, "404 page not found: the server could not find the requested resource")
    assert "the cluster has no InferenceService kind: install KServe" in message


def test_missing_object() -> None:
    assert explain(404, '{"reason": "NotFound"}', verb="get") == (
        "no inferenceservice iris in namespace team-b"
    )


def test_conflicts() -> None:
    modified = explain(409, '{"message": "the object has been modified; please apply ..."}')
    assert "changed while this deploy ran" in modified
    owned = explain(409, '{"message": "Apply failed with 1 conflict: conflict with \\"kubectl\\""}')
    assert "another field manager owns fields" in owned
    assert "--force" in owned
