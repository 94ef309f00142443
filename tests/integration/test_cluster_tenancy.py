"""Cold starts and tenancy as kubectl sees them, on a real kube-apiserver with the quota,
service-account and token controllers of a real kube-controller-manager (tests/envtest.py).

No kubelet runs here: a "pod" is `zeroserve serve --direct` on this machine, given what a kubelet
gives a pod (KUBERNETES_SERVICE_HOST/PORT and the service account's token, CA and namespace).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import MANIFESTS, start_server, wait_ready
from tests.envtest import TEAM_A_TOKEN, ApiServer
from tests.integration.test_deploy import write_status, zs

pytestmark = pytest.mark.integration


def pod_env(server: ApiServer, account: str, folder: Path) -> dict[str, str]:
    """What a kubelet gives the pod of inferenceservice iris running as ``account``."""
    folder.mkdir()
    for key, text in server.service_account_token(account, "default").items():
        (folder / key).write_text(text)
    return {
        **os.environ,
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(urlsplit(server.url).port),
        "ZEROSERVE_POD__INFERENCE_SERVICE": "iris",
        "HOSTNAME": "iris-predictor-00001-deployment-6d4f9-x2k8p",  # the pod name, as set
        "ZEROSERVE_POD__SERVICE_ACCOUNT_DIR": str(folder),
    }


def poll(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_pod_writes_its_cold_start_on_its_inference_service_and_kubectl_shows_it(
    apiserver: ApiServer, deploy_env: dict[str, str], iris_dir: Path, tmp_path: Path
) -> None:
    target = f"{iris_dir / 'model.py'}:Iris"
    assert zs(deploy_env, "deploy", target).returncode == 0
    env = pod_env(apiserver, "zeroserve-model", tmp_path / "serviceaccount")
    pod = start_server(target, tmp_path / "pod.log", "--direct", env=env)
    try:
        wait_ready(pod, "iris")

        def described() -> str | None:
            text = apiserver.kubectl("describe", "isvc", "iris").stdout
            return text if "ColdStart" in text else None

        description = poll(described, "the ColdStart event in kubectl describe")
    finally:
        pod.stop()
    line = re.search(r"Normal\s+ColdStart\s+.*", description)
    assert line, description
    took = r"(\d+\.\d\ds|-)"  # "-": a phase this start did not need (iris has no fetch)
    assert re.search(
        rf"cold start \d+\.\d\ds: fetch {took}, dependency environment -, imports {took}, "
        rf"load \d+\.\d\ds, warm-up {took} \(pod iris-predictor-00001-deployment-6d4f9-x2k8p\)",
        line.group(0),
    ), line.group(0)
    status = zs(deploy_env, "status", "iris")
    assert status.returncode == 0, status.stderr
    assert re.search(r"event \S+ Normal ColdStart: cold start \d", status.stdout), status.stdout
    listed = json.loads(zs(deploy_env, "status", "-o", "json").stdout)
    (iris,) = [row for row in listed if row["name"] == "iris"]
    assert iris["last_cold_start"]["message"].startswith("cold start ")
    assert iris["replicas"] == 0  # read from the cluster: no model was woken to say it
    zs(deploy_env, "delete", "iris")


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("create", "events", "yes"),
        ("get", "inferenceservices.serving.kserve.io", "yes"),
        ("patch", "inferenceservices.serving.kserve.io", "no"),
        ("delete", "events", "no"),
        ("get", "secrets", "no"),
        ("list", "pods", "no"),
    ],
)
def test_the_pods_account_may_write_events_and_nothing_else(
    apiserver: ApiServer, deploy_env: dict[str, str], verb: str, resource: str, allowed: str
) -> None:
    answer = apiserver.kubectl(
        "auth", "can-i", verb, resource, "--as", "system:serviceaccount:default:zeroserve-model"
    )
    assert answer.stdout.strip() == allowed, answer.stderr


def test_a_pod_whose_account_may_not_write_events_says_why_and_serves_on(
    apiserver: ApiServer, deploy_env: dict[str, str], iris_dir: Path, tmp_path: Path
) -> None:
    target = f"{iris_dir / 'model.py'}:Iris"
    assert zs(deploy_env, "deploy", target).returncode == 0
    env = pod_env(apiserver, "default", tmp_path / "serviceaccount")  # no Role bound to it
    pod = start_server(target, tmp_path / "pod.log", "--direct", env=env)
    try:
        wait_ready(pod, "iris")
        poll(lambda: "no ColdStart event" in pod.log(), "the log line")
        answer = httpx.post(
            f"{pod.url}/v1/models/iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
        )
    finally:
        pod.stop()
        zs(deploy_env, "delete", "iris")
    assert answer.status_code == 200, answer.text
    assert (
        "no ColdStart event for inferenceservice iris: the pod's service account may not get "
        "inferenceservices in default; bind the Role zeroserve-cold-start-events"
    ) in pod.log()


@pytest.fixture
def counting_url() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server at the URL KServe reports, recording every path asked of it."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            return None

    seen: list[str] = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_status_drift_of_a_model_at_zero_says_so_and_wakes_nothing(
    apiserver: ApiServer,
    deploy_env: dict[str, str],
    iris_dir: Path,
    counting_url: tuple[str, list[str]],
) -> None:
    url, seen = counting_url
    assert zs(deploy_env, "deploy", f"{iris_dir / 'model.py'}:Iris").returncode == 0
    write_status(apiserver, "iris", "default", ready=True, url=url)
    try:
        detail = zs(deploy_env, "status", "iris", "--drift")
    finally:
        zs(deploy_env, "delete", "iris")
    assert detail.returncode == 0, detail.stderr
    assert "iris is at zero (no pod running)" in detail.stdout
    assert "the model was not woken" in detail.stdout
    assert seen == []  # nothing was asked at the model's URL


def tenant_model(folder: Path, name: str, **resources: Any) -> str:
    """A model file declaring ``resources`` (cpu=, memory=, gpu=) on its @predictor."""
    folder.mkdir(parents=True, exist_ok=True)
    declared = "".join(f", {key}={value!r}" for key, value in resources.items())
    source = (
        "from zeroserve import predictor\n\n\n"
        f'@predictor(name="{name}"{declared})\n'
        "class Model:\n"
        "    def predict(self, instances: list[float]) -> list[float]:\n"
        "        return instances\n"
    )
    path = folder / f"{name.replace('-', '_')}.py"
    path.write_text(source)
    return str(path)


@pytest.fixture
def tenant(apiserver: ApiServer, deploy_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    """team-a's kit (quota, LimitRange, its deployers), alice's kubeconfig; afterwards the
    kit as shipped again and team-a's models and pods gone."""
    apiserver.install_kit(MANIFESTS / "overlays" / "team-a", "team-a")
    alice = apiserver.kubeconfig_for(TEAM_A_TOKEN, tmp_path / "alice.kubeconfig", "team-a")
    env = {**deploy_env, "KUBECONFIG": str(alice)}
    try:
        yield env
    finally:
        apiserver.kubectl("delete", "isvc", "--all", "-n", "team-a")
        apiserver.kubectl("delete", "pods", "--all", "-n", "team-a", "--grace-period=0")
        apiserver.install_kit(MANIFESTS / "overlays" / "team-a", "team-a")


def set_quota(server: ApiServer, **hard: str) -> None:
    """Change team-a's quota and wait until the quota controller has counted its usage."""
    patch = json.dumps({"spec": {"hard": hard}})
    changed = server.kubectl(
        "patch", "resourcequota", "zeroserve-quota", "-n", "team-a", "--type=merge", "-p", patch
    )
    assert changed.returncode == 0, changed.stderr

    def counted() -> bool:
        quota = json.loads(
            server.kubectl(
                "get", "resourcequota", "zeroserve-quota", "-n", "team-a", "-o", "json"
            ).stdout
        )
        status = quota.get("status") or {}
        return all(status.get("hard", {}).get(k) == v for k, v in hard.items()) and set(
            hard
        ) <= set(status.get("used", {}))

    poll(counted, "the quota controller to count team-a's usage")


def models_in(server: ApiServer, namespace: str) -> list[str]:
    listed = server.kubectl("get", "isvc", "-n", namespace, "-o", "json")
    return sorted(item["metadata"]["name"] for item in json.loads(listed.stdout)["items"])


def test_a_tenant_over_its_inference_service_count_is_refused_in_one_line(
    apiserver: ApiServer, tenant: dict[str, str], tmp_path: Path
) -> None:
    set_quota(apiserver, **{"count/inferenceservices.serving.kserve.io": "1"})
    first = zs(tenant, "deploy", tenant_model(tmp_path / "a", "first"), "-n", "team-a")
    assert first.returncode == 0, first.stderr
    poll(lambda: set_quota_used(apiserver, "count/inferenceservices.serving.kserve.io") == "1",
         "the count of InferenceServices")  # fmt: skip
    refused = zs(tenant, "deploy", tenant_model(tmp_path / "b", "second"), "-n", "team-a")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        "error: namespace team-a is over its ResourceQuota zeroserve-quota: this asks "
        "count/inferenceservices.serving.kserve.io=1 with "
        "count/inferenceservices.serving.kserve.io=1 in use of "
        "count/inferenceservices.serving.kserve.io=1; free some (`zeroserve delete` a model) "
        "or ask for a larger quota; nothing was applied"
    )
    assert models_in(apiserver, "team-a") == ["first"]
    # two new ones where one fits: each dry run alone would pass, together they are refused
    set_quota(apiserver, **{"count/inferenceservices.serving.kserve.io": "2"})
    tenant_model(tmp_path / "pair", "left")
    tenant_model(tmp_path / "pair", "right")
    pair = zs(tenant, "deploy", str(tmp_path / "pair"), "-n", "team-a")
    assert pair.returncode == 2
    assert (
        "this asks count/inferenceservices.serving.kserve.io=2 with "
        "count/inferenceservices.serving.kserve.io=1 in use of "
        "count/inferenceservices.serving.kserve.io=2"
    ) in pair.stderr
    assert models_in(apiserver, "team-a") == ["first"]


def set_quota_used(server: ApiServer, resource: str) -> str | None:
    quota = server.kubectl("get", "resourcequota", "zeroserve-quota", "-n", "team-a", "-o", "json")
    return str((json.loads(quota.stdout).get("status") or {}).get("used", {}).get(resource))


def pods_using(server: ApiServer, namespace: str, **requests: str) -> None:
    """A pod (of another model, say) holding ``requests`` in the namespace, as quota counts it."""
    limits = {key: value for key, value in requests.items() if key in ("memory", "nvidia.com/gpu")}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "other-model-", "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": "model",
                    "image": "other",
                    "resources": {"requests": requests, "limits": limits},
                }
            ]
        },
    }
    created = server.kubectl("create", "-f", "-", input_text=json.dumps(pod))
    assert created.returncode == 0, created.stderr


@pytest.mark.parametrize(
    ("resources", "refusal"),
    [
        ({"gpu": 1}, "asks requests.nvidia.com/gpu=1 with requests.nvidia.com/gpu=4 in use of "),
        ({"cpu": "40"}, "asks requests.cpu=40025m with requests.cpu=2 in use of "),
        ({"memory": "40Gi"}, "asks requests.memory=41472Mi with requests.memory=100Gi in use of "),
    ],
    ids=["gpu", "cpu", "memory"],
)
def test_a_tenant_over_its_gpu_cpu_or_memory_quota_is_refused_and_nothing_is_applied(
    apiserver: ApiServer,
    tenant: dict[str, str],
    tmp_path: Path,
    resources: dict[str, Any],
    refusal: str,
) -> None:
    pods_using(apiserver, "team-a", **{"nvidia.com/gpu": "4", "cpu": "1", "memory": "50Gi"})
    pods_using(apiserver, "team-a", cpu="1", memory="50Gi")
    poll(lambda: set_quota_used(apiserver, "requests.memory") == "100Gi", "the pods in use")
    folder = tmp_path / "models"
    tenant_model(folder, "fits")
    tenant_model(folder, "too-big", **resources)
    refused = zs(tenant, "deploy", str(folder), "-n", "team-a")
    assert refused.returncode == 2
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: namespace team-a is over its ResourceQuota zeroserve-quota: ")
    assert refusal in last
    assert last.endswith("nothing was applied")
    assert models_in(apiserver, "team-a") == []  # all or nothing: `fits` was not applied either


def test_the_tenants_limit_range_fills_in_defaults_and_refuses_what_exceeds_it(
    apiserver: ApiServer, tenant: dict[str, str], tmp_path: Path
) -> None:
    fits = zs(tenant, "deploy", tenant_model(tmp_path / "a", "fits"), "-n", "team-a")
    assert fits.returncode == 0, fits.stderr
    # Knative's queue-proxy asks for 25m of CPU only: team-a's LimitRange gives it memory
    assert (
        "fits: the LimitRange of team-a set defaults (LimitRanger plugin set: memory request "
        "for container queue-proxy; memory limit for container queue-proxy)"
    ) in fits.stderr
    big = zs(tenant, "deploy", tenant_model(tmp_path / "b", "big", memory="100Gi"), "-n", "team-a")
    assert big.returncode == 2
    assert big.stderr.strip().splitlines()[-1] == (
        "error: the LimitRange of namespace team-a refuses the model's pod: maximum memory usage "
        "per Container is 64Gi, but limit is 100Gi; change cpu=/memory=/gpu= on the "
        "@predictor; nothing was applied"
    )
    assert models_in(apiserver, "team-a") == ["fits"]
