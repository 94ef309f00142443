"""iris on a real KServe + Knative cluster: deploy, predict through the ingress, scale to zero and
back (with its ColdStart event), a canary of a second version, a rollback.

Runs inside `python -m tests.e2e.cluster`, which makes the cluster and sets ZEROSERVE_E2E_*;
skipped everywhere else (this machine has no Docker engine: see tests/e2e/README.md).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import SAMPLES, free_port, run_zeroserve
from tests.e2e.cluster import E2E_NAMESPACE, TEST_ENV

CONTEXT = os.environ.get("ZEROSERVE_E2E_CONTEXT")
pytestmark = pytest.mark.skipif(
    not CONTEXT,
    reason="runs inside `python -m tests.e2e.cluster` on a machine with Docker and kind "
    "(tests/e2e/README.md)",
)
BUCKET = "zeroserve-e2e"
CREDENTIALS = {  # the e2e MinIO's throwaway credentials (tests/e2e/manifests/minio.yaml)
    "AWS_ACCESS_KEY_ID": "zeroserve-e2e",
    "AWS_SECRET_ACCESS_KEY": "zeroserve-e2e-only",
    "AWS_DEFAULT_REGION": "us-east-1",
}
FLOWER = {"instances": [[6.7, 3.0, 5.2, 2.3]]}


def kubectl(*args: str) -> str:
    done = subprocess.run(
        ["kubectl", "--context", str(CONTEXT), *args],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout


def poll(check: Any, what: str, timeout: float = 900, every: float = 2) -> Any:
    """Poll the cluster's own state until ``check`` returns something true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def forwarded() -> Iterator[dict[str, int]]:
    """Local ports for MinIO and the Istio ingress gateway (kubectl port-forward), stopped after."""
    targets = {"minio": (E2E_NAMESPACE, "svc/minio", 9000),
               "ingress": ("istio-system", "svc/istio-ingressgateway", 80)}  # fmt: skip
    ports, processes = {}, []
    try:
        for name, (namespace, service, remote) in targets.items():
            ports[name] = free_port()
            processes.append(
                subprocess.Popen(
                    [
                        "kubectl",
                        "--context",
                        str(CONTEXT),
                        "port-forward",
                        "-n",
                        namespace,
                        service,
                        f"{ports[name]}:{remote}",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
            )
            poll(lambda port=ports[name]: _listening(port), f"port-forward of {service}", 60, 0.2)
        yield ports
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def env(forwarded: dict[str, int]) -> dict[str, str]:
    """zeroserve's environment: the kind context, and MinIO as the code repository."""
    import boto3

    endpoint = f"http://127.0.0.1:{forwarded['minio']}"
    s3 = boto3.client("s3", endpoint_url=endpoint, **_boto_credentials())
    if BUCKET not in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    return {
        **os.environ,
        **CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint,
        "ZEROSERVE_REPOSITORY": f"s3://{BUCKET}/code",
    }


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }


def zs(env: dict[str, str], *args: str, timeout: float = 1200) -> Any:
    done = run_zeroserve(*args, env=env, timeout=timeout)
    assert done.returncode == 0, f"zeroserve {' '.join(args)}: {done.stderr}"
    return done


def status(env: dict[str, str]) -> dict[str, Any]:
    return json.loads(zs(env, "status", "iris", "-o", "json").stdout)[0]


def predict(forwarded: dict[str, int], url: str) -> httpx.Response:
    """Through the ingress, addressed by the host name KServe reports (Knative routes on it)."""
    return httpx.post(
        f"http://127.0.0.1:{forwarded['ingress']}/v1/models/iris:predict",
        json=FLOWER,
        headers={"Host": str(urlsplit(url).hostname)},
        timeout=600,
    )


def pods_of_iris() -> list[str]:
    return kubectl("get", "pods", "-l", "serving.kserve.io/inferenceservice=iris",
                   "-o", "name").split()  # fmt: skip


@pytest.mark.timeout(3600)
def test_iris_from_zero_and_back_then_a_canary_and_a_rollback(
    env: dict[str, str], forwarded: dict[str, int], tmp_path: Path
) -> None:
    assert TEST_ENV["ZEROSERVE_E2E_CONTEXT"] == CONTEXT
    zs(env, "deploy", f"{SAMPLES / 'iris' / 'model.py'}:Iris", "--wait", "--timeout", "900")
    url = status(env)["url"]
    for _ in range(2):  # the second request starts a pod from zero
        answer = predict(forwarded, url)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": [2]}
        poll(lambda: not pods_of_iris(), "iris to scale to zero")
    cold_start = status(env)["last_cold_start"]
    assert cold_start is not None
    assert cold_start["message"].startswith("cold start "), cold_start
    assert "ColdStart" in kubectl("describe", "isvc", "iris")

    second = tmp_path / "iris"
    shutil.copytree(SAMPLES / "iris", second)
    source = (second / "model.py").read_text()
    (second / "model.py").write_text(source.replace("max_replicas=2", "max_replicas=3", 1))
    zs(env, "deploy", f"{second / 'model.py'}:Iris", "--canary", "20", "--wait", "--timeout", "900")
    split = status(env)
    percents = sorted(share["percent"] for share in split["traffic"])
    assert percents == [20, 80], split["traffic"]
    assert predict(forwarded, url).json() == {"predictions": [2]}

    zs(env, "rollback", "iris")

    def rolled_back() -> bool:
        full = [share["revision"] for share in status(env)["traffic"] if share["percent"] == 100]
        return full == [split["rolled_out_revision"]]

    poll(rolled_back, "all traffic back on the rolled-out revision", 300)
    assert predict(forwarded, url).json() == {"predictions": [2]}
    zs(env, "delete", "iris")
