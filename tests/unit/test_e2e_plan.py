"""The end-to-end run's steps (tests/e2e/cluster.py), checked where no Docker engine runs: the
files they name exist, the manifests build and validate, and the names they share agree."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from typing import Any

import yaml

from tests.e2e import cluster
from tests.e2e.test_iris_on_cluster import CREDENTIALS
from tests.kube_schemas import problems

ROOT = cluster.ROOT
STEPS = {step.title: step for step in cluster.plan()}


def kit() -> dict[tuple[str, str], dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl comes with the dev extra"
    built = subprocess.run(
        [kubectl, "kustomize", str(ROOT / cluster.KIT)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(built.stdout)}


def minio() -> dict[str, dict[str, Any]]:
    objects = yaml.safe_load_all((ROOT / "tests/e2e/manifests/minio.yaml").read_text())
    return {obj["kind"]: obj for obj in objects}


def test_every_file_a_step_names_exists() -> None:
    relative_path = re.compile(r"^[\w.-]+(/[\w.-]+)+$")
    not_files = ("deployment/", "nfs-ganesha/")  # a kubectl resource, a chart
    named = [
        arg
        for step in STEPS.values()
        for arg in step.argv
        if relative_path.match(arg) and not arg.startswith(not_files)
    ]
    assert set(named) == {
        "manifests/runtime/Dockerfile",
        "tests/e2e/manifests/minio.yaml",
        "tests/e2e/kit",
        "samples/iris/train.py",
        "tests/e2e",
    }
    for path in named:
        assert (ROOT / path).exists(), path


def test_the_steps_come_in_an_order_that_works() -> None:
    order = list(STEPS)

    def before(first: str, then: str) -> None:
        assert order.index(first) < order.index(then), f"{first!r} must come before {then!r}"

    before("install KServe 0.21 on Knative (KServe's installer)", "install the zeroserve kit")
    before("install a ReadWriteMany storage class (NFS)", "install the zeroserve kit")
    before("give the kind node an NFS client (its image has none)", "run the end-to-end tests")
    before("load the image into kind", "install the zeroserve kit")
    before("build the runtime image", "load the image into kind")
    for needed in ("wait for MinIO", "install the zeroserve kit", "train iris"):
        before(needed, "run the end-to-end tests")


def test_versions_are_pinned_and_kserve_is_0_21() -> None:
    assert cluster.KSERVE_VERSION.startswith("v0.21.")
    assert f"/{cluster.KSERVE_VERSION}/" in cluster.KSERVE_INSTALLER
    nfs = STEPS["install a ReadWriteMany storage class (NFS)"].argv
    assert nfs[nfs.index("--version") + 1] == cluster.NFS_CHART_VERSION
    image = minio()["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert ":RELEASE." in image


def test_every_step_talks_to_the_kind_cluster_the_tests_use() -> None:
    context = cluster.TEST_ENV["ZEROSERVE_E2E_CONTEXT"]
    for step in STEPS.values():
        if step.argv[0] == "kubectl":
            assert step.argv[1:3] == ("--context", context), step.title
        if step.argv[0] == "kind" and step.argv[1] != "create":
            assert step.argv[-2:] == ("--name", cluster.CLUSTER), step.title


def test_the_kit_runs_the_loaded_image_on_the_rwx_class_with_minio_as_its_store() -> None:
    objects = kit()
    claim = objects[("PersistentVolumeClaim", "zeroserve-model-cache")]["spec"]
    assert claim["storageClassName"] == cluster.STORAGE_CLASS
    assert claim["accessModes"] == ["ReadWriteMany"]
    runtime = objects[("ClusterServingRuntime", "zeroserve-python")]
    warmer = objects[("Job", "zeroserve-cache-warmer")]["spec"]["template"]
    assert runtime["spec"]["containers"][0]["image"] == cluster.IMAGE
    assert warmer["spec"]["containers"][0]["image"] == cluster.IMAGE
    assert cluster.TEST_ENV["ZEROSERVE_E2E_IMAGE"] == cluster.IMAGE
    store = objects[("Secret", "zeroserve-storage")]["data"]
    values = {key: base64.b64decode(value).decode() for key, value in store.items()}
    service = minio()["Service"]
    host = f"{service['metadata']['name']}.{cluster.E2E_NAMESPACE}.svc.cluster.local"
    assert values["AWS_ENDPOINT_URL"] == f"http://{host}:{service['spec']['ports'][0]['port']}"
    assert cluster.TEST_ENV["ZEROSERVE_E2E_MINIO"] == f"{cluster.E2E_NAMESPACE}/minio"
    root = {e["name"]: e["value"] for e in minio()["Deployment"]["spec"]["template"]["spec"][
        "containers"][0]["env"]}  # fmt: skip
    for key, minio_key in (("AWS_ACCESS_KEY_ID", "MINIO_ROOT_USER"),
                           ("AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_PASSWORD")):  # fmt: skip
        assert values[key] == CREDENTIALS[key] == root[minio_key]


def test_minio_manifests_validate() -> None:
    for obj in minio().values():
        assert problems(obj) == [], obj["kind"]
    assert minio()["Deployment"]["metadata"]["namespace"] == cluster.E2E_NAMESPACE


def test_the_operator_gets_the_kits_knative_settings() -> None:
    operator = json.loads(cluster.knative_serving_patch())["spec"]["config"]
    for name, section in (("config-features", "features"), ("config-autoscaler", "autoscaler")):
        patch = yaml.safe_load((ROOT / f"manifests/knative/{name}-patch.yaml").read_text())
        assert operator[section] == patch["data"]


def test_the_run_lists_its_steps_without_running_them() -> None:
    import sys

    listed = subprocess.run(
        [sys.executable, "-m", "tests.e2e.cluster", "--list"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("\n# ") + 1 == len(STEPS)
    assert "kind create cluster --name zeroserve-e2e" in listed.stdout
