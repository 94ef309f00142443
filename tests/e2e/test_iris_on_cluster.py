"""Deploy iris on a real KServe + Knative cluster, predict, scale to zero, predict again."""

from __future__ import annotations

import json
import os
import subprocess
import time

import httpx
import pytest

from tests.conftest import SAMPLES, run_zeroserve

KUBECONFIG = os.environ.get("ZEROSERVE_E2E_KUBECONFIG")
REPOSITORY = os.environ.get("ZEROSERVE_E2E_REPOSITORY")
pytestmark = pytest.mark.skipif(
    not (KUBECONFIG and REPOSITORY),
    reason="set ZEROSERVE_E2E_KUBECONFIG and ZEROSERVE_E2E_REPOSITORY (see tests/e2e/README.md)",
)


@pytest.mark.timeout(1800)
def test_iris_scales_from_zero_twice() -> None:
    env = {**os.environ, "KUBECONFIG": str(KUBECONFIG), "ZEROSERVE_REPOSITORY": str(REPOSITORY)}
    deployed = run_zeroserve(
        "deploy",
        f"{SAMPLES / 'iris' / 'model.py'}:Iris",
        "--wait",
        "--timeout",
        "900",
        env=env,
        timeout=1000,
    )
    assert deployed.returncode == 0, deployed.stderr
    status = json.loads(run_zeroserve("status", "iris", "-o", "json", env=env).stdout)[0]
    body = {"instances": [[6.7, 3.0, 5.2, 2.3]]}
    for _ in range(2):
        answer = httpx.post(f"{status['url']}/v1/models/iris:predict", json=body, timeout=600)
        assert answer.json() == {"predictions": [2]}
        wait_for_zero_pods(env)  # the next request must start a pod from zero


def wait_for_zero_pods(env: dict[str, str], timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = subprocess.run(
            [
                "kubectl",
                "get",
                "pods",
                "-l",
                "serving.kserve.io/inferenceservice=iris",
                "-o",
                "name",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        if not pods:
            return
        time.sleep(5)  # polling the cluster's own state, not waiting blindly
    raise AssertionError("iris never scaled to zero")
