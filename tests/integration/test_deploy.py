"""Deploy, status and rollouts against a real kube-apiserver with KServe's CRDs.

No KServe controller runs here: `write_status` is a test-side stand-in that writes the status
KServe's controller would write (conditions, URL, revisions, traffic), through the status
subresource, so that `zeroserve status` and `deploy --wait` read what they would read on a cluster.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sklearn.datasets import load_iris

from tests.conftest import MANIFESTS, MotoS3, run_zeroserve, start_server, wait_ready
from tests.envtest import TEAM_A_TOKEN, ApiServer
from zeroserve.telemetry.drift import write_profile

pytestmark = pytest.mark.integration


def custom_api(server: ApiServer) -> Any:
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(server.kubeconfig))
    return client.CustomObjectsApi(api_client)


def write_status(
    server: ApiServer,
    name: str,
    namespace: str,
    *,
    ready: bool,
    latest: str = "00001",
    previous: str = "",
    traffic: dict[str, int] | None = None,
    url: str | None = None,
) -> None:
    """What KServe's controller would write into the InferenceService's status."""
    condition = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "lastTransitionTime": "2026-11-29T00:00:00Z",
    }
    if not ready:
        condition.update(reason="RevisionMissing", message="revision is still loading")
    status = {
        "url": url or f"http://{name}.{namespace}.example.com",
        "conditions": [condition],
        "components": {
            "predictor": {
                "latestCreatedRevision": f"{name}-predictor-{latest}",
                **(
                    {"previousRolledoutRevision": f"{name}-predictor-{previous}"}
                    if previous
                    else {}
                ),
                "traffic": [
                    {"revisionName": rev, "percent": pct}
                    for rev, pct in (traffic or {f"{name}-predictor-{latest}": 100}).items()
                ],
            }
        },
    }
    custom_api(server).patch_namespaced_custom_object_status(
        "serving.kserve.io",
        "v1beta1",
        namespace,
        "inferenceservices",
        name,
        {"status": status},
        _content_type="application/merge-patch+json",
    )


@pytest.fixture
def deploy_env(apiserver: ApiServer, moto_s3: MotoS3) -> dict[str, str]:
    bucket = moto_s3.new_bucket()
    return {
        **moto_s3.env,
        "KUBECONFIG": str(apiserver.kubeconfig),
        "ZEROSERVE_REPOSITORY": f"s3://{bucket}/zeroserve",
    }


def zs(env: dict[str, str], *args: str) -> Any:
    return run_zeroserve(*args, env=env)


def test_deploy_is_listed_by_kubectl_and_redeploy_changes_nothing(
    apiserver: ApiServer, deploy_env: dict[str, str], iris_dir: Path
) -> None:
    first = zs(deploy_env, "deploy", f"{iris_dir / 'model.py'}:Iris")
    assert first.returncode == 0, first.stderr
    assert "inferenceservice/iris applied in default (generation 1)" in first.stdout
    listed = apiserver.kubectl("get", "isvc", "-n", "default")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split("\n")[0].split()[:2] == ["NAME", "URL"]  # KServe's columns
    assert "iris" in listed.stdout
    again = zs(deploy_env, "deploy", f"{iris_dir / 'model.py'}:Iris")
    assert "(generation 1)" in again.stdout  # same spec: server-side apply changed nothing
    isvc = json.loads(
        apiserver.kubectl("get", "isvc", "iris", "-o", "json", "--show-managed-fields").stdout
    )
    managers = {entry["manager"] for entry in isvc["metadata"]["managedFields"]}
    assert "zeroserve" in managers
    assert isvc["spec"]["predictor"]["minReplicas"] == 0


def test_status_rollout_promote_rollback_delete(
    apiserver: ApiServer, deploy_env: dict[str, str], iris_dir: Path
) -> None:
    assert zs(deploy_env, "deploy", f"{iris_dir / 'model.py'}:Iris").returncode == 0
    write_status(
        apiserver,
        "iris",
        "default",
        ready=True,
        latest="00002",
        previous="00001",
        traffic={"iris-predictor-00002": 100},
    )
    status = json.loads(zs(deploy_env, "status", "-o", "json").stdout)
    (iris,) = [item for item in status if item["name"] == "iris"]
    assert iris["ready"] is True
    assert iris["url"] == "http://iris.default.example.com"
    assert iris["previous_revision"] == "iris-predictor-00001"
    assert iris["replicas"] == 0  # no pods: at zero (no kubelet runs here)
    detail = zs(deploy_env, "status", "iris")
    assert "condition Ready=True" in detail.stdout

    def canary() -> Any:
        isvc = json.loads(apiserver.kubectl("get", "isvc", "iris", "-o", "json").stdout)
        return isvc["spec"]["predictor"].get("canaryTrafficPercent")

    assert zs(deploy_env, "rollout", "iris", "--canary", "10").returncode == 0
    assert canary() == 10
    assert zs(deploy_env, "promote", "iris").returncode == 0
    assert canary() is None
    assert zs(deploy_env, "rollback", "iris").returncode == 0
    assert canary() == 0
    assert zs(deploy_env, "delete", "iris").returncode == 0
    gone = zs(deploy_env, "status", "iris")
    assert gone.returncode == 2
    assert "no inferenceservice iris in namespace default" in gone.stderr


def test_deploy_wait_reports_pending_conditions_then_the_url(
    apiserver: ApiServer, deploy_env: dict[str, str], iris_dir: Path
) -> None:
    target = f"{iris_dir / 'model.py'}:Iris"
    apiserver.kubectl("create", "namespace", "waiting")
    timed_out = zs(
        deploy_env, "deploy", target, "--namespace", "waiting", "--wait", "--timeout", "2"
    )
    assert timed_out.returncode == 2
    assert "not ready after 2s; last conditions: no conditions reported yet" in timed_out.stderr

    def controller() -> None:  # the stand-in marks it ready a moment after the deploy
        time.sleep(1.0)
        write_status(apiserver, "iris", "waiting", ready=True)

    stand_in = threading.Thread(target=controller)
    stand_in.start()
    ready = zs(deploy_env, "deploy", target, "--namespace", "waiting", "--wait", "--timeout", "60")
    stand_in.join()
    assert ready.returncode == 0, ready.stderr
    assert "iris is ready at http://iris.waiting.example.com" in ready.stdout


def test_concurrent_deploy_loser_gets_a_conflict_and_nothing_half_applied(
    apiserver: ApiServer, deploy_env: dict[str, str], iris_dir: Path
) -> None:
    from zeroserve.errors import UsageError
    from zeroserve.targets.kserve.cluster import Cluster

    assert zs(deploy_env, "deploy", f"{iris_dir / 'model.py'}:Iris").returncode == 0
    cluster = Cluster(str(apiserver.kubeconfig))
    current = cluster.get("iris", "default")
    seen_by_both = current["metadata"]["resourceVersion"]
    first = {
        "apiVersion": current["apiVersion"],
        "kind": current["kind"],
        "metadata": {"name": "iris", "namespace": "default"},
        "spec": {
            **current["spec"],
            "predictor": {**current["spec"]["predictor"], "maxReplicas": 3},
        },
    }
    second = {
        **first,
        "spec": {**first["spec"], "predictor": {**first["spec"]["predictor"], "maxReplicas": 7}},
    }
    cluster.apply(first, expected_version=seen_by_both)
    with pytest.raises(UsageError, match="changed while this deploy ran"):
        cluster.apply(second, expected_version=seen_by_both)
    assert cluster.get("iris", "default")["spec"]["predictor"]["maxReplicas"] == 3


def test_tenancy_forbidden_outside_the_team_namespace(
    apiserver: ApiServer, deploy_env: dict[str, str], iris_dir: Path, tmp_path: Path
) -> None:
    kit = apiserver.kubectl("apply", "-k", str(MANIFESTS / "overlays" / "team-a"))
    assert kit.returncode == 0, kit.stderr
    assert apiserver.kubectl("create", "namespace", "team-b").returncode in (0, 1)
    quota = apiserver.kubectl("get", "resourcequota", "zeroserve-quota", "-n", "team-a")
    assert quota.returncode == 0, quota.stderr
    alice = apiserver.kubeconfig_for(TEAM_A_TOKEN, tmp_path / "alice.kubeconfig")
    env = {**deploy_env, "KUBECONFIG": str(alice)}
    allowed = zs(env, "deploy", f"{iris_dir / 'model.py'}:Iris", "--namespace", "team-a")
    assert allowed.returncode == 0, allowed.stderr
    refused = zs(env, "deploy", f"{iris_dir / 'model.py'}:Iris", "--namespace", "team-b")
    assert refused.returncode == 2
    assert "forbidden: you may not list inferenceservices in namespace team-b" in refused.stderr
    assert "zeroserve-deployer" in refused.stderr


def test_no_cluster_reachable_is_one_line(tmp_path: Path, deploy_env: dict[str, str]) -> None:
    config = yaml.safe_load(Path(deploy_env["KUBECONFIG"]).read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    (tmp_path / "dead.kubeconfig").write_text(yaml.safe_dump(config))
    result = zs({**deploy_env, "KUBECONFIG": str(tmp_path / "dead.kubeconfig")}, "status")
    assert result.returncode == 2
    assert "no cluster reachable at https://127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_drift_asks_the_model_at_its_url(
    apiserver: ApiServer, deploy_env: dict[str, str], iris_dir: Path, tmp_path: Path
) -> None:
    """The URL KServe reports leads to a real server here (standing in for the pod)."""
    folder = tmp_path / "iris"
    shutil.copytree(iris_dir, folder)
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps(load_iris().data.tolist()))
    write_profile(sample, folder)
    target = f"{folder / 'model.py'}:Iris"
    assert zs(deploy_env, "deploy", target).returncode == 0
    pod = start_server(target, tmp_path / "pod.log", "--direct")
    try:
        wait_ready(pod, "iris")
        write_status(apiserver, "iris", "default", ready=True, url=pod.url)
        detail = zs(deploy_env, "status", "iris", "--drift")
    finally:
        pod.stop()
        zs(deploy_env, "delete", "iris")
    assert detail.returncode == 0, detail.stderr
    assert "drift over the last 0 instances" in detail.stdout
    assert detail.stdout.count("(numeric): PSI") == 4
