"""Shared fixtures: real `zeroserve serve` processes on free 127.0.0.1 ports."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlparse

import httpx
import pytest

from zeroserve.delivery.probe import stop_process

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SAMPLES = ROOT / "samples"
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    """A `zeroserve serve` child process and the URL it answers on."""

    process: subprocess.Popen[str]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def log_gist(self, lines: int = 200) -> str:
        """The log's last ``lines`` without the per-request access and timing lines (a
        readiness poll writes hundreds of them), for a failure message that shows the cause."""
        kept = [line for line in self.log().splitlines() if not _per_request_line(line)]
        return "\n".join(kept[-lines:])

    def stop(self) -> int:
        stop_process(self.process, grace_s=20)
        return self.process.returncode


class InBackground:
    """``run()`` in a daemon thread for the length of a ``with`` block; ``run`` returns once
    ``stopped`` is set."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=60)


def _per_request_line(line: str) -> bool:
    return any(mark in line for mark in ("uvicorn.access", "kserve.trace", '"event":"error"'))


def start_server(
    target: Path | str, log_path: Path, *extra: str, env: dict[str, str] | None = None
) -> RunningServer:
    """Start `zeroserve serve` and return once it listens (readiness is the caller's to await)."""
    port = free_port()
    command = [sys.executable, "-m", "zeroserve", "serve", str(target), "--port", str(port), *extra]
    with log_path.open("w") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, text=True, env=env
        )
    server = RunningServer(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return server  # exited; the caller checks why
        try:
            httpx.get(f"{server.url}/v2/health/live", timeout=1.0)
            return server
        except httpx.TransportError:
            time.sleep(0.05)
    server.stop()
    raise AssertionError(f"server did not listen within {START_TIMEOUT_S}s:\n{server.log()}")


def run_zeroserve(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the `zeroserve` command line in a child process and capture what it prints."""
    return subprocess.run(
        [sys.executable, "-m", "zeroserve", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def wait_ready(server: RunningServer, model: str, timeout: float = START_TIMEOUT_S) -> None:
    """Poll the model's v2 readiness route until it says ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.process.poll() is None, f"server exited early:\n{server.log()}"
        response = httpx.get(f"{server.url}/v2/models/{model}/ready", timeout=2.0)
        if response.status_code == 200 and response.json().get("ready"):
            return
        time.sleep(0.05)
    raise AssertionError(f"model {model} not ready within {timeout}s:\n{server.log()}")


@pytest.fixture(scope="session")
def iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of samples/iris with a freshly trained model.joblib."""
    folder = tmp_path_factory.mktemp("iris")
    shutil.copy(SAMPLES / "iris" / "model.py", folder / "model.py")
    subprocess.run(
        [sys.executable, str(SAMPLES / "iris" / "train.py"), str(folder / "model.joblib")],
        check=True,
        timeout=120,
    )
    return folder


@pytest.fixture(scope="module")
def iris_server(
    iris_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    server = start_server(iris_dir / "model.py", tmp_path_factory.mktemp("log") / "iris.log")
    wait_ready(server, "iris")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fixtures_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for every predictor in tests/fixtures/predictors/, with a 64 KiB body limit."""
    log = tmp_path_factory.mktemp("log") / "fixtures.log"
    server = start_server(FIXTURES / "predictors", log, "--max-body-size", "64KiB")
    for name in ("echo", "failing", "tuned", "async-double", "slow"):
        wait_ready(server, name)
    yield server
    server.stop()


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for every predictor in tests/fixtures/batching/."""
    log = tmp_path_factory.mktemp("log") / "batching.log"
    server = start_server(FIXTURES / "batching", log)
    for name in ("recorder", "strict", "short", "held"):
        wait_ready(server, name)
    yield server
    server.stop()


@dataclass
class MotoS3:
    """A real moto S3 server on 127.0.0.1, reached through boto3 like AWS."""

    url: str
    env: dict[str, str]

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def new_bucket(self) -> str:
        name = f"models-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def start_recording(self) -> None:
        httpx.post(f"{self.url}/moto-api/recorder/reset-recording", timeout=10)
        httpx.post(f"{self.url}/moto-api/recorder/start-recording", timeout=10)

    def recorded_gets(self, bucket: str) -> list[str]:
        """Paths of the object GETs recorded since start_recording, one per request."""
        text = httpx.get(f"{self.url}/moto-api/recorder/download-recording", timeout=30).text
        paths = []
        for line in text.splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            url = urlparse(entry.get("url", ""))
            if (
                entry.get("method") == "GET"
                and url.path.startswith(f"/{bucket}/")
                and not url.query
            ):
                paths.append(url.path)
        return paths


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    port = free_port()
    folder = tmp_path_factory.mktemp("moto")
    log = folder / "moto.log"
    recording = {"MOTO_RECORDER_FILEPATH": str(folder / "recording")}  # not in the checkout
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **recording},
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/moto-api/", timeout=1).status_code < 500:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "moto server did not start"
        time.sleep(0.05)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    yield MotoS3(url, env)
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture
def aws_env(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> MotoS3:
    """Point boto3 in this process at the moto server."""
    for key in (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.setenv(key, moto_s3.env[key])
    return moto_s3


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real kube-apiserver + etcd with KServe's CRDs (skipped, with the reason, if not built)."""
    from tests.envtest import start

    yield from start(tmp_path_factory.mktemp("envtest"))


@pytest.fixture
def deploy_env(apiserver: Any, moto_s3: MotoS3) -> dict[str, str]:
    """The kit installed in `default` (as manifests/README.md says) and a code repository."""
    apiserver.install_kit(MANIFESTS / "base", "default")
    bucket = moto_s3.new_bucket()
    return {
        **moto_s3.env,
        "KUBECONFIG": str(apiserver.kubeconfig),
        "ZEROSERVE_REPOSITORY": f"s3://{bucket}/zeroserve",
    }
