"""`--engine ray` without an address (a local cluster, started and stopped with the command), and
through Ray Client (`ray://`). Each test leaves no Ray process behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURES, free_port, start_server, wait_ready
from tests.ray.conftest import NO_AUTH, ray_binary, ray_processes, wait_until_no_ray

pytestmark = pytest.mark.timeout(240)
ECHO = FIXTURES / "predictors" / "echo.py"


def served_and_stopped(log: Path, env: dict[str, str], *flags: str) -> None:
    server = start_server(ECHO, log, "--engine", "ray", *flags, env=env)
    try:
        wait_ready(server, "echo", timeout=180)
        answer = httpx.post(
            f"{server.url}/v1/models/echo:predict", json={"instances": [1, "a"]}, timeout=120
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": [1, "a"]}
    finally:
        code = server.stop()
    assert code == 0, server.log()


def test_without_an_address_a_local_cluster_starts_and_stops_with_it(tmp_path: Path) -> None:
    assert not ray_processes()
    served_and_stopped(tmp_path / "front.log", {**os.environ, **NO_AUTH})
    assert wait_until_no_ray() == [], "the local cluster outlived the command"


def test_through_ray_client(tmp_path: Path) -> None:
    assert not ray_processes()
    env = {**os.environ, **NO_AUTH}
    client_port = free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="zs-rc-", dir="/tmp"))
    started = subprocess.run(
        [ray_binary(), "start", "--head", f"--port={free_port()}", "--num-cpus=2"]
        + [f"--ray-client-server-port={client_port}", "--node-ip-address=127.0.0.1"]
        + ["--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        address = f"ray://127.0.0.1:{client_port}"
        served_and_stopped(tmp_path / "front.log", env, "--address", address)
    finally:
        subprocess.run([ray_binary(), "stop", "--force"], capture_output=True, timeout=60)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert wait_until_no_ray() == []
