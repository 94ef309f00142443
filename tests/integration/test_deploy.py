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

from tests.conftest import MANIFESTS, run_zeroserve, start_server, wait_ready
from tests.envtest import TEAM_A_TOKEN, ApiServer
from tests.kserve_standin import KServeStandIn
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


def running_pod(server: ApiServer, model: str, namespace: str) -> None:
    """A pod of ``model`` in phase Running, as the kubelet reports one (no kubelet runs here)."""
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))
    pod = core.create_namespaced_pod(
        namespace,
        {
            "metadata": {
                "generateName": f"{model}-predictor-00001-deployment-",
                "labels": {"serving.kserve.io/inferenceservice": model},
            },
            "spec": {"containers": [{"name": "kserve-container", "image": "zeroserve-python"}]},
        },
    )
    core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {"phase": "Running"}})


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


def test_status_shows_revisions_and_delete_removes(
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
    assert zs(deploy_env, "delete", "iris").returncode == 0
    gone = zs(deploy_env, "status", "iris")
    assert gone.returncode == 2
    assert "no inferenceservice iris in namespace default" in gone.stderr


def _another_version(iris_dir: Path, tmp_path: Path) -> str:
    """The same model with other code: a new code artifact, so KServe makes a new revision."""
    folder = tmp_path / "iris-v2"
    shutil.copytree(iris_dir, folder)
    (folder / "model.py").write_text((folder / "model.py").read_text() + "\n# v2\n")
    return f"{folder / 'model.py'}:Iris"


def _isvc(apiserver: ApiServer, name: str = "iris") -> Any:
    return json.loads(apiserver.kubectl("get", "isvc", name, "-o", "json").stdout)


def _traffic(deploy_env: dict[str, str]) -> list[tuple[str, str, int]]:
    (iris,) = json.loads(zs(deploy_env, "status", "iris", "-o", "json").stdout)
    return [(share["tag"], share["revision"], share["percent"]) for share in iris["traffic"]]


def test_a_canary_rolls_out_and_back_as_kserve_splits_it(
    apiserver: ApiServer, deploy_env: dict[str, str], iris_dir: Path, tmp_path: Path
) -> None:
    kserve = KServeStandIn(custom_api(apiserver))
    v1, v2 = f"{iris_dir / 'model.py'}:Iris", _another_version(iris_dir, tmp_path)
    early = zs(deploy_env, "deploy", v1, "--canary", "10")
    assert early.returncode == 2
    assert "no rolled-out revision for a canary to split against" in early.stderr
    assert apiserver.kubectl("get", "isvc", "iris").returncode != 0  # nothing applied
    assert zs(deploy_env, "deploy", v1).returncode == 0
    kserve.reconcile("iris")
    assert _traffic(deploy_env) == [("latest", "iris-predictor-00001", 100)]

    canary = zs(deploy_env, "deploy", v2, "--canary", "10")
    assert canary.returncode == 0, canary.stderr
    assert "the new revision gets 10% of traffic, the rolled-out one 90%" in canary.stdout
    isvc = _isvc(apiserver)  # new code and the split in one update, as KServe needs them
    assert isvc["metadata"]["generation"] == 2
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    kserve.reconcile("iris")
    assert _traffic(deploy_env) == [
        ("latest", "iris-predictor-00002", 10),
        ("prev", "iris-predictor-00001", 90),
    ]
    detail = zs(deploy_env, "status", "iris").stdout
    assert "traffic latest iris-predictor-00002 10%" in detail
    assert "traffic prev iris-predictor-00001 90%" in detail

    assert zs(deploy_env, "rollout", "iris", "--canary", "50").returncode == 0
    kserve.reconcile("iris")
    assert [percent for _, _, percent in _traffic(deploy_env)] == [50, 50]
    again = zs(deploy_env, "deploy", v2)  # a plain redeploy keeps the split, and says so
    assert again.returncode == 0, again.stderr
    assert "kept the cluster's canary split (50% to the latest revision)" in again.stdout
    assert _isvc(apiserver)["spec"]["predictor"]["canaryTrafficPercent"] == 50

    back = zs(deploy_env, "rollback", "iris")
    assert back.returncode == 0, back.stderr
    assert "all traffic back to iris-predictor-00001" in back.stdout
    kserve.reconcile("iris")
    assert _traffic(deploy_env) == [
        ("latest", "iris-predictor-00002", 0),
        ("prev", "iris-predictor-00001", 100),
    ]

    assert zs(deploy_env, "promote", "iris").returncode == 0
    promoted = _isvc(apiserver)
    assert "canaryTrafficPercent" not in promoted["spec"]["predictor"]
    assert "zeroserve.dev/spec-digest" in promoted["metadata"]["annotations"]  # kept throughout
    kserve.reconcile("iris")
    assert _traffic(deploy_env) == [("latest", "iris-predictor-00002", 100)]
    (iris,) = json.loads(zs(deploy_env, "status", "iris", "-o", "json").stdout)
    assert iris["rolled_out_revision"] == "iris-predictor-00002"
    assert iris["previous_revision"] == "iris-predictor-00001"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rollout", "iris", "--canary", "10"), "iris has no canary in progress"),
        (("rollback", "iris"), "iris has no previous revision to roll back to"),
        (("promote", "iris"), "iris has no canary to promote"),
        (("rollout", "iris", "--canary", "150"), "--canary 150: give a percent from 0 to 100"),
        (("rollout", "iris", "--canary", "-1"), "--canary -1: give a percent from 0 to 100"),
    ],
)
def test_rollout_changes_that_make_no_sense_are_one_line_and_change_nothing(
    apiserver: ApiServer,
    deploy_env: dict[str, str],
    iris_dir: Path,
    args: tuple[str, ...],
    message: str,
) -> None:
    assert zs(deploy_env, "deploy", f"{iris_dir / 'model.py'}:Iris").returncode == 0
    KServeStandIn(custom_api(apiserver)).reconcile("iris")
    before = _isvc(apiserver)["metadata"]["resourceVersion"]
    refused = zs(deploy_env, *args)
    try:
        assert refused.returncode == 2
        assert refused.stderr.strip() == f"error: {message}" or message in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        assert _isvc(apiserver)["metadata"]["resourceVersion"] == before
    finally:
        zs(deploy_env, "delete", "iris")


def test_deploy_wait_reports_pending_conditions_then_the_url(
    apiserver: ApiServer, deploy_env: dict[str, str], iris_dir: Path
) -> None:
    target = f"{iris_dir / 'model.py'}:Iris"
    apiserver.kubectl("create", "namespace", "waiting")
    no_kit = zs(deploy_env, "deploy", target, "--namespace", "waiting")
    assert no_kit.returncode == 2
    assert no_kit.stderr == (
        "error: service account waiting/zeroserve-model does not exist: install the kit in "
        "waiting (kubectl apply -k manifests/base -n waiting) or pass --service-account; "
        "nothing was applied\n"
    )
    assert apiserver.kubectl("get", "isvc", "-n", "waiting", "-o", "name").stdout == ""
    apiserver.install_kit(MANIFESTS / "base", "waiting")
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
    with pytest.raises(UsageError, match="changed since this deploy read it"):
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
        running_pod(apiserver, "iris", "default")  # what Knative would run: not at zero
        detail = zs(deploy_env, "status", "iris", "--drift")
    finally:
        pod.stop()
        zs(deploy_env, "delete", "iris")
    assert detail.returncode == 0, detail.stderr
    assert "drift over the last 0 instances" in detail.stdout
    assert detail.stdout.count("(numeric): PSI") == 4


def test_a_deploy_refuses_what_changed_since_it_read_it_and_names_the_writer(
    apiserver: ApiServer, deploy_env: dict[str, str], iris_dir: Path, tmp_path: Path
) -> None:
    """Two deploys racing, interleaved on purpose: both read, the other one applies first."""
    from zeroserve.errors import UsageError
    from zeroserve.targets.kserve.cluster import DEPLOYED_AT, DEPLOYED_BY, Cluster

    assert zs(deploy_env, "deploy", f"{iris_dir / 'model.py'}:Iris").returncode == 0
    cluster = Cluster(str(apiserver.kubeconfig))
    read_by_us = {"iris": cluster.find("iris", "default")}
    KServeStandIn(custom_api(apiserver)).reconcile("iris")  # the controller writes status...
    cluster.refuse_changed(read_by_us, "default")  # ...which is no change of the model
    theirs = _isvc(apiserver)
    theirs["metadata"] = {
        "name": "iris",
        "namespace": "default",
        "annotations": {DEPLOYED_BY: "alice@laptop", DEPLOYED_AT: "2026-12-03T10:00:00Z"},
    }
    theirs.pop("status", None)
    cluster.apply(theirs)  # the other deploy lands between our read and our apply
    with pytest.raises(UsageError) as refused:
        cluster.refuse_changed(read_by_us, "default")
    assert (
        "changed since this deploy read it (changed by alice@laptop at 2026-12-03T10:00:00Z)"
        in (str(refused.value))
    )
    assert "--force" in str(refused.value)
    # a writer other than zeroserve is named by its field manager
    apiserver.kubectl("annotate", "isvc", "iris", "team=a")
    read_by_us = {"iris": cluster.find("iris", "default")}
    apiserver.kubectl("annotate", "isvc", "iris", "team=b", "--overwrite")
    with pytest.raises(UsageError, match=r"changed by kubectl-annotate at 20"):
        cluster.refuse_changed(read_by_us, "default")
    # one that did not exist when read and does now changed too
    with pytest.raises(UsageError, match="changed since this deploy read it"):
        cluster.refuse_changed({"iris": None}, "default")


def test_force_overwrites_a_change_made_by_another_writer(
    apiserver: ApiServer, deploy_env: dict[str, str], iris_dir: Path, tmp_path: Path
) -> None:
    assert zs(deploy_env, "deploy", f"{iris_dir / 'model.py'}:Iris").returncode == 0
    apiserver.kubectl(
        "patch", "isvc", "iris", "--type=merge", "-p", '{"spec":{"predictor":{"maxReplicas":9}}}'
    )
    forced = zs(deploy_env, "deploy", _another_version(iris_dir, tmp_path), "--force")
    assert forced.returncode == 0, forced.stderr
    assert _isvc(apiserver)["spec"]["predictor"]["maxReplicas"] == 2  # the spec's, taken back


def test_no_secret_value_reaches_a_manifest_or_a_log(
    apiserver: ApiServer, deploy_env: dict[str, str], iris_dir: Path, tmp_path: Path
) -> None:
    """The credentials a deploy itself uses stay on this machine; the model's own come from a
    Secret by reference."""
    value = "zs-secret-value-8c1f0d"
    env = {**deploy_env, "AWS_SECRET_ACCESS_KEY": value}
    folder = tmp_path / "iris"
    shutil.copytree(iris_dir, folder)
    source = (folder / "model.py").read_text()
    source = source.replace(
        "from zeroserve import Batching, predictor",
        "import zeroserve\n" + "from zeroserve import Batching, predictor",
    )
    source = source.replace(
        '@predictor(name="iris",',
        '@predictor(name="iris", env={"API_KEY": zeroserve.secret("iris-credentials", "api-key")},',
    )
    (folder / "model.py").write_text(source)
    target = f"{folder / 'model.py'}:Iris"
    rendered = zs(env, "render", target)
    assert rendered.returncode == 0, rendered.stderr
    assert "secretKeyRef" in rendered.stdout
    missing = zs(env, "deploy", target)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (
        "error: iris: env API_KEY comes from secret iris-credentials, which does not exist in "
        "default; create it (kubectl create secret generic iris-credentials -n default "
        "--from-literal=api-key=...); nothing was applied"
    )
    untouched = apiserver.kubectl("get", "isvc", "iris", "-o", "yaml").stdout  # an earlier test's
    assert "API_KEY" not in untouched  # nothing of this deploy was applied
    made = apiserver.kubectl(
        "create", "secret", "generic", "iris-credentials", f"--from-literal=other={value}"
    )
    assert made.returncode == 0, made.stderr
    wrong_key = zs(env, "deploy", target)
    assert wrong_key.returncode == 2
    assert "comes from key api-key of secret iris-credentials in default, which has only " in (
        wrong_key.stderr
    )
    apiserver.kubectl("delete", "secret", "iris-credentials")
    made = apiserver.kubectl(
        "create", "secret", "generic", "iris-credentials", f"--from-literal=api-key={value}"
    )
    assert made.returncode == 0, made.stderr
    deployed = zs(env, "deploy", target)
    assert deployed.returncode == 0, deployed.stderr
    live = apiserver.kubectl("get", "isvc", "iris", "-o", "yaml").stdout
    (api_key,) = [
        item
        for item in yaml.safe_load(live)["spec"]["predictor"]["model"]["env"]
        if item["name"] == "API_KEY"
    ]
    assert api_key["valueFrom"] == {"secretKeyRef": {"name": "iris-credentials", "key": "api-key"}}
    outputs = (missing, wrong_key, rendered, deployed)
    for text in [live, *(o.stdout for o in outputs), *(o.stderr for o in outputs)]:
        assert value not in text


def _passing_report(target: str, path: Path) -> Path:
    """A validation report as `zeroserve validate` writes one for `target`, passed (validate
    itself is run end to end in test_validate.py; here only what deploy reads of it counts)."""
    from zeroserve.delivery.validate import report_digest, target_digest

    report: dict[str, Any] = {
        "zeroserve_validation": 1,
        "model": "iris",
        "candidate": {"target": target, "digest": target_digest(target)},
        "checks": [{"name": "quality", "passed": True, "detail": "accuracy 0.97"}],
        "verdict": "pass",
    }
    path.write_text(json.dumps({**report, "digest": report_digest(report)}))
    return path


def test_every_change_is_recorded_on_the_inferenceservice_and_as_an_event(
    apiserver: ApiServer, deploy_env: dict[str, str], iris_dir: Path, tmp_path: Path
) -> None:
    zs(deploy_env, "delete", "iris")  # whatever an earlier test left: a history of its own
    kserve = KServeStandIn(custom_api(apiserver))
    v1, v2 = f"{iris_dir / 'model.py'}:Iris", _another_version(iris_dir, tmp_path)
    report = _passing_report(v1, tmp_path / "validation.json")
    assert zs(deploy_env, "deploy", v1, "--require-validation", str(report)).returncode == 0
    kserve.reconcile("iris")
    assert zs(deploy_env, "deploy", v2, "--canary", "10").returncode == 0
    kserve.reconcile("iris")
    for step in (("rollout", "iris", "--canary", "50"), ("rollback", "iris"), ("promote", "iris")):
        assert zs(deploy_env, *step).returncode == 0
        kserve.reconcile("iris")

    listed = zs(deploy_env, "history", "iris", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    assert [r["action"] for r in records] == ["deploy", "deploy", "rollout", "rollback", "promote"]
    first, canary = records[0], records[1]
    assert first["validation"]["verdict"] == "pass"
    assert first["validation"]["report"] == json.loads(report.read_text())["digest"]
    assert first["spec_digest"].startswith("sha256:")
    assert first["code"] != canary["code"]  # another code artifact, pinned by its digest
    assert canary["canary"] == 10
    assert [r.get("canary") for r in records[2:]] == [50, 0, None]
    assert records[3]["rolled_out"] == "iris-predictor-00001"
    assert all(r["who"] and r["time"].endswith("Z") for r in records)
    table = zs(deploy_env, "history", "iris").stdout
    assert "validation.verdict pass" in table

    events = json.loads(apiserver.kubectl("get", "events", "-o", "json").stdout)["items"]
    uid = _isvc(apiserver)["metadata"]["uid"]  # this InferenceService's, not an earlier one's
    reasons = [  # timestamps are to the second: the order is the annotation's to show
        e["reason"]
        for e in events
        if e["involvedObject"].get("uid") == uid and e["source"].get("component") == "zeroserve"
    ]
    assert sorted(reasons) == ["Deployed", "Deployed", "Promoted", "RolledBack", "RolledOut"]
    detail = zs(deploy_env, "status", "iris").stdout
    assert "Promoted: promote by" in detail
