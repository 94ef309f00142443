"""`zeroserve rollout NAME --analyze --prometheus URL` against a real kube-apiserver and a real
Prometheus scraping the model pods as the kit's PodMonitor has them scraped.

No Knative runs here. Two `serve --direct` processes stand in for the pods of the rolled-out
revision (echo-v1) and of the canary (echo-flaky, echo-slow or echo-same, one per test), labelled
with their revisions as Knative labels pods; the KServe stand-in (``tests/kserve_standin.py``)
turns each change of ``canaryTrafficPercent`` into the status traffic KServe writes, and a
router thread splits requests between the two pods by that traffic, as Knative's would.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import prometheus
from tests.conftest import (
    FIXTURES,
    MANIFESTS,
    InBackground,
    RunningServer,
    start_server,
    wait_ready,
)
from tests.envtest import ApiServer
from tests.integration.test_deploy import _another_version, custom_api, zs
from tests.kserve_standin import KServeStandIn

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
NAMESPACE = "canary-analysis"
STABLE, CANARY = "iris-predictor-00001", "iris-predictor-00002"
REVISION = "serving.knative.dev/revision"


@pytest.fixture(scope="module")
def pods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunningServer]]:
    folder = tmp_path_factory.mktemp("pods")
    started = {
        revision: start_server(FIXTURES / "versions" / "echo.py", folder / f"{revision}.log",
                               "--direct")
        for revision in (STABLE, CANARY)
    }  # fmt: skip
    try:
        for server in started.values():
            wait_ready(server, "echo-v1")
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def metrics_store(
    pods: dict[str, RunningServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[prometheus.Prometheus]:
    if prometheus.binary() is None:
        pytest.skip(f"no prometheus binary: {prometheus.INSTALL_HINT}")
    standing_in = [
        prometheus.Pod(f"{revision}-deployment-0", NAMESPACE, server.url.removeprefix("http://"),
                       {REVISION: revision, "app.kubernetes.io/managed-by": "zeroserve"})
        for revision, server in pods.items()
    ]  # fmt: skip
    store = prometheus.Prometheus(tmp_path_factory.mktemp("prometheus"), standing_in)
    try:
        for pod in standing_in:
            store.scraped(pod.name)
        yield store
    finally:
        store.stop()


@pytest.fixture(scope="module")
def cluster_env(apiserver: ApiServer, moto_s3: Any) -> dict[str, str]:
    """The kit installed in NAMESPACE and a code repository (as ``deploy_env``, for a module)."""
    apiserver.kubectl("create", "namespace", NAMESPACE)
    apiserver.install_kit(MANIFESTS / "base", NAMESPACE)
    bucket = moto_s3.new_bucket()
    repository = {"ZEROSERVE_REPOSITORY": f"s3://{bucket}/zeroserve"}
    return {**moto_s3.env, "KUBECONFIG": str(apiserver.kubeconfig), **repository}


@pytest.fixture(scope="module")
def canary(
    apiserver: ApiServer, cluster_env: dict[str, str], iris_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> KServeStandIn:  # fmt: skip
    """``iris`` in NAMESPACE with revision 2 a canary at 10% over the rolled-out revision 1."""
    deploy_env = cluster_env
    kserve = KServeStandIn(custom_api(apiserver))
    v2 = _another_version(iris_dir, tmp_path_factory.mktemp("v2"))
    assert (
        zs(deploy_env, "deploy", f"{iris_dir / 'model.py'}:Iris", "-n", NAMESPACE).returncode == 0
    )
    kserve.reconcile("iris", NAMESPACE)
    deployed = zs(deploy_env, "deploy", v2, "--canary", "10", "-n", NAMESPACE)
    assert deployed.returncode == 0, deployed.stderr
    kserve.reconcile("iris", NAMESPACE)
    return kserve


class Router(InBackground):
    """Knative's part: every request goes to the canary's pod or the stable one as the
    InferenceService's status traffic says (re-read after each reconcile)."""

    def __init__(self, kserve: KServeStandIn, pods: dict[str, RunningServer], model: str) -> None:
        super().__init__()
        self.kserve, self.pods, self.model = kserve, pods, model
        self.random = random.Random(7)

    def _canary_percent(self) -> int:
        self.kserve.reconcile("iris", NAMESPACE)
        isvc = self.kserve.custom.get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices", "iris"
        )
        traffic = isvc["status"]["components"]["predictor"]["traffic"]
        return sum(t["percent"] for t in traffic if t["revisionName"] == CANARY)

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stopped.is_set():
                percent = self._canary_percent()
                for _ in range(25):
                    to_canary = self.random.random() * 100 < percent
                    url = self.pods[CANARY if to_canary else STABLE].url
                    model = self.model if to_canary else "echo-v1"
                    client.post(f"{url}/v1/models/{model}:predict", json={"instances": [1.0]})


def analysed_rollout(
    deploy_env: dict[str, str], store: prometheus.Prometheus, *extra: str
) -> tuple[int, str, list[dict[str, Any]]]:
    result = zs(
        deploy_env, "rollout", "iris", "-n", NAMESPACE, "--analyze", "--prometheus", store.url,
        "--scrape-interval", "1", "--interval", "8", "--steps", "10,50", "--min-requests", "10",
        *extra,
    )  # fmt: skip
    history = zs(deploy_env, "history", "iris", "-n", NAMESPACE, "-o", "json")
    return result.returncode, result.stdout + result.stderr, json.loads(history.stdout)


def canary_percent(kserve: KServeStandIn) -> int | None:
    isvc = kserve.custom.get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices", "iris"
    )
    percent: int | None = isvc["spec"]["predictor"].get("canaryTrafficPercent")
    return percent


@pytest.mark.parametrize(
    ("model", "reason"),
    [("echo-flaky", "success rate"), ("echo-slow", "slower than the baseline")],
)
def test_a_bad_canary_is_rolled_back_within_one_interval(
    canary: KServeStandIn, pods: dict[str, RunningServer], metrics_store: prometheus.Prometheus,
    cluster_env: dict[str, str], model: str, reason: str,
) -> None:  # fmt: skip
    with Router(canary, pods, model):
        code, output, history = analysed_rollout(cluster_env, metrics_store)
    assert code == 8, output
    assert f"rolled back to {STABLE} at 10%: {reason}" in output
    assert output.count("at 10%: fail") == 1
    assert canary_percent(canary) == 0  # all traffic back on the rolled-out revision
    rollback = history[-1]
    assert rollback["action"] == "rollback"
    assert reason in rollback["reasons"][0]
    assert rollback["candidate"] == CANARY
    assert rollback["analysis"][0]["requests"] >= 10


def test_prometheus_gone_midway_pauses_the_rollout_where_it_is(
    canary: KServeStandIn, pods: dict[str, RunningServer], cluster_env: dict[str, str],
    tmp_path: Path,
) -> None:  # fmt: skip
    standing_in = [
        prometheus.Pod(f"{revision}-deployment-1", NAMESPACE, server.url.removeprefix("http://"),
                       {REVISION: revision})
        for revision, server in pods.items()
    ]  # fmt: skip
    store = prometheus.Prometheus(tmp_path, standing_in)
    command = [sys.executable, "-m", "zeroserve", "rollout", "iris", "-n", NAMESPACE, "--analyze",
               "--prometheus", store.url, "--scrape-interval", "1", "--interval", "2",
               "--max-waits", "2", "--steps", "10,50"]  # fmt: skip
    with Router(canary, pods, "echo-same"):
        rollout = subprocess.Popen(command, env=cluster_env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while canary_percent(canary) != 10 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            store.stop()  # gone before the first interval is judged
        output, _ = rollout.communicate(timeout=120)
    assert rollout.returncode == 9, output
    assert "figures unavailable, paused" in output
    assert "paused at 10%" in output
    assert canary_percent(canary) == 10  # neither stepped nor rolled back blind


def test_a_good_canary_is_promoted_and_each_step_is_on_the_inferenceservice(
    canary: KServeStandIn, pods: dict[str, RunningServer], metrics_store: prometheus.Prometheus,
    cluster_env: dict[str, str],
) -> None:  # fmt: skip
    with Router(canary, pods, "echo-same"):
        code, output, history = analysed_rollout(cluster_env, metrics_store)
    assert code == 0, output
    assert f"{CANARY} promoted" in output
    assert canary_percent(canary) is None  # promoted: the latest revision takes all traffic
    steps = [(r["action"], r.get("canary")) for r in history if "analysis" in r][-3:]
    assert steps == [("rollout", 10), ("rollout", 50), ("promote", None)]
    judged = history[-1]["analysis"]
    assert [j["verdict"] for j in judged][-2:] == ["pass", "pass"]
    assert all(j["success_rate"] == 1.0 for j in judged[-2:])


def test_prometheus_unreachable_changes_nothing(
    canary: KServeStandIn, cluster_env: dict[str, str]
) -> None:
    before = canary_percent(canary)
    result = zs(cluster_env, "rollout", "iris", "-n", NAMESPACE, "--analyze",
                "--prometheus", "http://127.0.0.1:9")  # fmt: skip
    assert result.returncode == 2
    assert "Prometheus at http://127.0.0.1:9" in result.stderr
    assert "nothing was changed" in result.stderr
    assert "Traceback" not in result.stderr
    assert canary_percent(canary) == before
