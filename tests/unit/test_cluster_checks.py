"""The pieces of a cluster deploy's checks and of a pod's ColdStart event, one at a time.

The integration tests (tests/integration/test_cluster_tenancy.py) run them against the real API
server; these pin the wording and the pod shape.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import MANIFESTS
from zeroserve.settings import PodSettings
from zeroserve.targets.kserve.events import PodIdentity, cold_start_message
from zeroserve.targets.kserve.preflight import admission_refusal, first_pod
from zeroserve.targets.kserve.render import RUNTIME_RESOURCES


def test_the_message_names_every_phase_and_the_total() -> None:
    timeline = {
        "phases": [
            {"name": "imports", "start_s": 0.1, "end_s": 0.9},
            {"name": "fetch_code", "start_s": 0.0, "end_s": 0.2},
            {"name": "fetch", "start_s": 0.2, "end_s": 1.2},
            {"name": "load", "start_s": 1.2, "end_s": 1.5, "model": "iris"},
            {"name": "warmup", "start_s": 1.5, "end_s": 1.6, "model": "iris"},
            {"name": "ready", "start_s": 1.65, "end_s": 1.65},
            {"name": "never-finished", "start_s": 1.0, "end_s": None},
        ]
    }
    assert cold_start_message(timeline) == (
        "cold start 1.65s: fetch 1.20s, dependency environment -, imports 0.80s, load 0.30s, "
        "warm-up 0.10s"
    )
    llm = [
        {"name": "load", "start_s": 0.2, "end_s": 1.7, "model": "chat"},
        {"name": "engine_start", "start_s": 0.3, "end_s": 1.6},
        {"name": "engine_core_start", "start_s": 0.3, "end_s": 0.5},
        {"name": "weight_load", "start_s": 0.5, "end_s": 0.9},
        {"name": "kv_cache", "start_s": 0.9, "end_s": 1.4},
        {"name": "ready", "start_s": 1.75, "end_s": 1.75},
    ]
    assert cold_start_message({"phases": llm}) == (
        "cold start 1.75s: fetch -, dependency environment -, imports -, load 1.50s, warm-up - "
        "(engine 1.30s: engine core start 0.20s, weights 0.40s, KV cache 0.50s)"
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            'inferenceservices.serving.kserve.io "b" is forbidden: exceeded quota: '
            "zeroserve-quota, requested: count/inferenceservices.serving.kserve.io=1, used: "
            "count/inferenceservices.serving.kserve.io=1, limited: "
            "count/inferenceservices.serving.kserve.io=1",
            "namespace team-a is over its ResourceQuota zeroserve-quota: this asks "
            "count/inferenceservices.serving.kserve.io=1 with",
        ),
        (
            'pods "p" is forbidden: status unknown for quota: zeroserve-quota, resources: cpu',
            "the usage of ResourceQuota zeroserve-quota in team-a is not counted yet",
        ),
        (
            'pods "p" is forbidden: failed quota: zeroserve-quota: must specify requests.cpu',
            "ResourceQuota zeroserve-quota in team-a needs every pod to declare requests.cpu",
        ),
        (
            'pods "p" is forbidden: maximum memory usage per Container is 64Gi, but limit is 1Ti',
            "the LimitRange of namespace team-a refuses the model's pod: maximum memory usage "
            "per Container is 64Gi, but limit is 1Ti",
        ),
        (
            'pods "p" is forbidden: error looking up service account team-a/zeroserve-model: '
            'serviceaccount "zeroserve-model" not found',
            "service account team-a/zeroserve-model does not exist: install the kit in team-a",
        ),
    ],
)
def test_an_admission_refusal_is_one_line_naming_what_refused(message: str, expected: str) -> None:
    refusal = admission_refusal(message, "team-a")
    assert refusal is not None
    assert refusal.startswith(expected)
    assert refusal.endswith("nothing was applied")
    assert "\n" not in refusal


def test_rbac_forbidden_is_not_an_admission_refusal() -> None:
    message = 'pods is forbidden: User "alice" cannot create resource "pods" in API group ""'
    assert admission_refusal(message, "team-a") is None


def test_the_first_pod_merges_the_model_over_the_runtime_and_has_the_queue_proxy() -> None:
    isvc = {
        "metadata": {"name": "iris"},
        "spec": {
            "predictor": {
                "serviceAccountName": "zeroserve-model",
                "model": {"resources": {"requests": {"nvidia.com/gpu": "1", "cpu": "2"}}},
            }
        },
    }
    model, queue_proxy = first_pod(isvc)["spec"]["containers"]
    assert model["resources"] == {
        "requests": {"cpu": "2", "memory": "512Mi", "nvidia.com/gpu": "1"},
        "limits": {"memory": "2Gi"},
    }
    assert queue_proxy["resources"] == {"requests": {"cpu": "25m"}}
    assert first_pod(isvc)["spec"]["serviceAccountName"] == "zeroserve-model"
    assert RUNTIME_RESOURCES["requests"]["cpu"] == "500m"  # the merge left the default alone


def test_the_runtime_defaults_are_the_kits() -> None:
    runtime = yaml.safe_load((MANIFESTS / "base" / "clusterservingruntime.yaml").read_text())
    assert runtime["spec"]["containers"][0]["resources"] == RUNTIME_RESOURCES


def test_a_pod_reads_who_it_is_from_its_service_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("a-token\n")
    (tmp_path / "namespace").write_text("team-a")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    settings = PodSettings(inference_service="iris", name="iris-pod", service_account_dir=tmp_path)
    identity = PodIdentity.of_this_pod(settings)
    assert identity is not None
    assert (identity.api_server, identity.token, identity.namespace) == (
        "https://[fd00::1]:6443",
        "a-token",
        "team-a",
    )
    assert PodIdentity.of_this_pod(PodSettings(service_account_dir=tmp_path)) is None
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert PodIdentity.of_this_pod(settings) is None  # not in a cluster: a log line, no events
