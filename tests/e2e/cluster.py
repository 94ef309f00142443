"""The whole end-to-end run on a machine with Docker and kind, as one command:

    python -m tests.e2e.cluster            # create the cluster, install, test, keep the cluster
    python -m tests.e2e.cluster --delete   # ... and delete the cluster at the end
    python -m tests.e2e.cluster --list     # print the steps, run nothing

It makes a kind cluster with KServe 0.21 on Knative (KServe's own pinned installer: cert-manager,
Istio, the Knative Operator and Serving, KServe), the Knative flags and autoscaler settings of
manifests/knative, an NFS ReadWriteMany storage class, a MinIO, the runtime image (built and
loaded into kind), the zeroserve kit (tests/e2e/kit), trains iris, and runs tests/e2e against it.

Every step is a command in ``plan()``; tests/unit/test_e2e_plan.py checks them (the files they
name exist, the manifests build and validate, the names they share agree). Nothing here can run
without a Docker engine, so this machine's CI runs only those checks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "zeroserve-e2e"
KSERVE_VERSION = "v0.21.0"
KSERVE_INSTALLER = (
    f"https://github.com/kserve/kserve/releases/download/{KSERVE_VERSION}/"
    "kserve-knative-mode-full-install-helm.sh"
)
NFS_CHART_REPO = "https://kubernetes-sigs.github.io/nfs-ganesha-server-and-external-provisioner/"
NFS_CHART_VERSION = "1.8.0"
STORAGE_CLASS = "zeroserve-rwx"
E2E_NAMESPACE = "zeroserve-e2e"  # MinIO and the NFS server
IMAGE = "ghcr.io/zeroserve/runtime:e2e"  # loaded into kind, never pushed
KIT = "tests/e2e/kit"
TOOLS = ("docker", "kind", "kubectl", "helm", "kustomize", "yq", "curl")
# What tests/e2e needs to find the cluster and the object store (see test_iris_on_cluster.py).
TEST_ENV = {
    "ZEROSERVE_E2E_CONTEXT": f"kind-{CLUSTER}",
    "ZEROSERVE_E2E_IMAGE": IMAGE,
    "ZEROSERVE_E2E_MINIO": f"{E2E_NAMESPACE}/minio",
}


@dataclass(frozen=True)
class Step:
    """One command of the run, and what it is for."""

    title: str
    argv: tuple[str, ...]


def knative_serving_patch() -> str:
    """The Knative settings of manifests/knative, as a patch of the Operator's KnativeServing
    (which owns the ConfigMaps and would undo a patch of them)."""
    config = {}
    for name, section in (("config-features", "features"), ("config-autoscaler", "autoscaler")):
        patch = yaml.safe_load((ROOT / "manifests" / "knative" / f"{name}-patch.yaml").read_text())
        config[section] = patch["data"]
    return json.dumps({"spec": {"config": config}})


def plan() -> list[Step]:
    kubectl = ("kubectl", "--context", f"kind-{CLUSTER}")
    node = f"{CLUSTER}-control-plane"
    return [
        Step("create the kind cluster",
             ("kind", "create", "cluster", "--name", CLUSTER, "--wait", "300s")),
        Step("install KServe 0.21 on Knative (KServe's installer)",
             ("bash", "-o", "pipefail", "-c", f"curl -fsSL {KSERVE_INSTALLER} | bash")),
        Step("enable the Knative flags and scale-to-zero settings zeroserve pods use",
             (*kubectl, "patch", "knativeserving", "knative-serving", "-n", "knative-serving",
              "--type", "merge", "-p", knative_serving_patch())),
        Step("give the kind node an NFS client (its image has none)",
             ("docker", "exec", node, "bash", "-c",
              "apt-get update -qq && apt-get install -y -qq nfs-common")),
        Step("add the NFS provisioner's chart repository",
             ("helm", "repo", "add", "--force-update", "nfs-ganesha", NFS_CHART_REPO)),
        Step("install a ReadWriteMany storage class (NFS)",
             ("helm", "--kube-context", f"kind-{CLUSTER}", "upgrade", "--install", "nfs",
              "nfs-ganesha/nfs-server-provisioner", "--version", NFS_CHART_VERSION,
              "--namespace", E2E_NAMESPACE, "--create-namespace", "--wait",
              "--set", f"storageClass.name={STORAGE_CLASS}", "--set", "persistence.enabled=false")),
        Step("start MinIO", (*kubectl, "apply", "-f", "tests/e2e/manifests/minio.yaml")),
        Step("wait for MinIO", (*kubectl, "rollout", "status", "deployment/minio", "-n",
                                E2E_NAMESPACE, "--timeout=300s")),
        Step("build the runtime image",
             ("docker", "build", "-f", "manifests/runtime/Dockerfile", "-t", IMAGE, ".")),
        Step("load the image into kind",
             ("kind", "load", "docker-image", IMAGE, "--name", CLUSTER)),
        Step("install the zeroserve kit", (*kubectl, "apply", "-k", KIT)),
        Step("train iris", (sys.executable, "samples/iris/train.py")),
        Step("run the end-to-end tests",
             (sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/e2e", "-v")),
    ]  # fmt: skip


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def run(steps: list[Step]) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    env = {**os.environ, **TEST_ENV}
    for number, step in enumerate(steps, 1):
        console.rule(f"[bold]{number}/{len(steps)} {step.title}")
        done = subprocess.run(step.argv, cwd=ROOT, env=env, check=False)
        if done.returncode != 0:
            console.print(f"[red]step {number} ({step.title}) failed: exit {done.returncode}")
            return done.returncode
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the steps, run nothing")
    parser.add_argument("--delete", action="store_true", help="delete the cluster at the end")
    args = parser.parse_args()
    steps = plan()
    if args.list:
        for step in steps:
            print(f"# {step.title}\n{subprocess.list2cmdline(step.argv)}")
        return 0
    if missing := missing_tools():
        print(f"needs {', '.join(missing)} on PATH (and a running Docker engine)", file=sys.stderr)
        return 2
    code = run(steps)
    if args.delete:
        subprocess.run(["kind", "delete", "cluster", "--name", CLUSTER], check=False)
    return code


if __name__ == "__main__":
    sys.exit(main())
