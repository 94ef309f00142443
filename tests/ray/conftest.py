"""A real two-node Ray cluster on this machine, and `zeroserve serve --engine ray` in front of it.

The head and the worker node are started with `ray start`, each with one CPU and a custom
resource of its own (``head_node``, ``worker_node``); the worker runs in a session of its own so
that a test can kill it (raylet and replicas) as a lost machine. Everything is stopped at the end
and the teardown checks that no Ray process is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import MotoS3, RunningServer, free_port, run_zeroserve, start_server

MODELS = Path(__file__).resolve().parent / "models" / "ray_models.py"
WEIGHTS_ENV = "ZEROSERVE_TEST_SPREAD_WEIGHTS"  # read by the models file
CLUSTER_START_S = 120.0
RAY_PROCESSES = ("raylet", "gcs_server")
# Declare a lost node dead after about 3 s instead of Ray's default 15 s (5 checks 3 s apart).
FAST_NODE_DEATH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
# A cluster on loopback only, for these tests: no token (Ray 2.60 turns token auth on as soon as
# ~/.ray/auth_token exists, which would split a cluster started before it from a driver after).
NO_AUTH = {"RAY_AUTH_MODE": "disabled"}


def ray_binary() -> str:
    """The `ray` command of this environment (beside its python), or of the PATH."""
    beside = Path(sys.executable).parent / "ray"
    found = str(beside) if beside.exists() else shutil.which("ray")
    if found is None:
        pytest.skip("Ray is not installed in this environment: run `tox -e ray`")
    return found


@dataclass
class RayCluster:
    address: str
    temp_dir: Path
    worker: subprocess.Popen[bytes]
    env: dict[str, str]

    def kill_worker_node(self) -> None:
        """SIGKILL the worker node's raylet and every process it started (its replicas)."""
        if self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait(timeout=30)


def _ray_start(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [ray_binary(), "start", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"ray start {' '.join(args)} failed:\n{done.stdout}{done.stderr}"


def ray_processes() -> list[str]:
    listing = subprocess.run(["ps", "-eo", "pid,comm"], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if any(p in line for p in RAY_PROCESSES)]


def wait_until_no_ray(timeout: float = 30) -> list[str]:
    """The Ray processes still running after up to ``timeout`` seconds (none, normally)."""
    deadline = time.monotonic() + timeout
    while ray_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    return ray_processes()


def pushed_weights(moto: MotoS3, scratch: Path) -> str:
    """A small model folder pushed to moto S3 with `zeroserve push`; its URI."""
    folder = scratch / "weights"
    folder.mkdir()
    (folder / "weights.txt").write_text("spread-weights-v1")
    repository = f"s3://{moto.new_bucket()}/models"
    pushed = run_zeroserve(
        "push", str(folder), repository, "--name", "spread", "--version", "v1", env=moto.env
    )
    assert pushed.returncode == 0, pushed.stderr
    return f"{repository}/spread@v1"


@pytest.fixture(scope="module")
def ray_cluster(moto_s3: MotoS3) -> Iterator[RayCluster]:
    """The nodes start with S3 (moto) credentials and a cache folder in their environment, as a
    platform team would give its Ray nodes; the test models read their weights' URI from it."""
    assert not ray_processes(), "a Ray cluster already runs on this machine; stop it first"
    port = free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="zs-ray-", dir="/tmp"))  # short: Ray's sockets
    env = {**moto_s3.env, **FAST_NODE_DEATH, **NO_AUTH, "RAY_USAGE_STATS_ENABLED": "0"}
    env["ZEROSERVE_CACHE__ROOT"] = str(temp_dir / "cache")
    env[WEIGHTS_ENV] = pushed_weights(moto_s3, temp_dir)
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    address = f"127.0.0.1:{port}"
    worker: subprocess.Popen[bytes] | None = None
    try:
        _ray_start(
            env,
            "--head",
            f"--port={port}",
            f"--temp-dir={temp_dir}",
            "--include-dashboard=false",
            "--resources",
            json.dumps({"head_node": 1}),
            *common,
        )
        with (temp_dir / "worker-node.log").open("wb") as log:  # the child keeps its copy
            worker = subprocess.Popen(
                [ray_binary(), "start", f"--address={address}", "--block", "--resources"]
                + [json.dumps({"worker_node": 1}), *common],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        yield RayCluster(address, temp_dir, worker, env)
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        subprocess.run([ray_binary(), "stop", "--force"], capture_output=True, timeout=60)
        left = wait_until_no_ray()
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray processes left running: {left}"


@pytest.fixture(scope="module")
def ray_front(
    ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """`zeroserve serve --engine ray` of the test models, once both nodes are in the cluster."""
    log = tmp_path_factory.mktemp("ray-front") / "front.log"
    server = start_server(
        MODELS,
        log,
        "--engine",
        "ray",
        "--address",
        ray_cluster.address,
        "--ray-resource",
        "pinned=worker_node:1",
        "--max-body-size",
        "1KiB",
        env=ray_cluster.env,
    )
    try:
        deadline = time.monotonic() + CLUSTER_START_S
        while time.monotonic() < deadline:
            assert server.process.poll() is None, f"the front exited:\n{server.log_gist()}"
            try:
                status = httpx.get(f"{server.url}/zeroserve/status", timeout=10).json()
            except (httpx.TransportError, ValueError):
                status = {}
            alive = [node for node in status.get("nodes", []) if node["alive"]]
            ready = all(
                httpx.get(f"{server.url}/v2/models/{name}/ready", timeout=5).status_code == 200
                for name in ("echo", "pinned", "spread")
            )
            if len(alive) == 2 and ready:
                break
            time.sleep(0.25)
        else:
            raise AssertionError(
                f"no two-node cluster and ready models; status: {status}\n{server.log_gist()}"
            )
        yield server
    finally:
        server.stop()
