"""A model under validation: served by a real worker (``zeroserve serve TARGET --direct``, as a
pod serves it) or live at a URL, then asked for its schema, its predictions and a short load."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from zeroserve.errors import UsageError

START_TIMEOUT_S = 300.0
BATCH = 64
LOG_TAIL = 1500


class StartFailed(UsageError):
    """The served target exited, or was not ready in time; the message has its log's tail."""


class Refused(Exception):
    """The model answered a request with an error; ``message`` is its own words."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass
class Served:
    """A model being validated: where it answers, and its name."""

    target: str
    url: str
    model: str

    def schema(self) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/zeroserve/models/{self.model}/schema", timeout=60)
        if answer.status_code != 200:
            raise UsageError(
                f"{self.target} does not say what model '{self.model}' accepts "
                f"(GET /zeroserve/models/{self.model}/schema answered {answer.status_code}); "
                "is it a zeroserve server?"
            )
        schema: dict[str, Any] = answer.json()
        return schema

    def predictions(self, instances: list[Any]) -> list[Any]:
        """Every instance's prediction, asked in batches; Refused on the first error."""
        found: list[Any] = []
        with httpx.Client(timeout=120) as client:
            for start in range(0, len(instances), BATCH):
                batch = instances[start : start + BATCH]
                answer = client.post(self._predict_url, json={"instances": batch})
                if answer.status_code != 200:
                    raise Refused(answer.status_code, _message(answer))
                predictions = answer.json().get("predictions")
                if not isinstance(predictions, list) or len(predictions) != len(batch):
                    raise Refused(200, f"{len(batch)} instances got {predictions!r:.200}")
                found += predictions
        return found

    def load(self, instances: list[Any], seconds: float, clients: int) -> list[float]:
        """Latencies (s) of one-instance requests from ``clients`` at once for ``seconds``."""
        return asyncio.run(self._load(instances, seconds, clients))

    async def _load(self, instances: list[Any], seconds: float, clients: int) -> list[float]:
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds
        limits = httpx.Limits(max_connections=clients)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:

            async def one_client(offset: int) -> None:
                index = offset
                while time.perf_counter() < deadline:
                    body = {"instances": [instances[index % len(instances)]]}
                    started = time.perf_counter()
                    answer = await client.post(self._predict_url, json=body)
                    if answer.status_code != 200:
                        raise Refused(answer.status_code, _message(answer))
                    latencies.append(time.perf_counter() - started)
                    index += clients

            await asyncio.gather(*(one_client(offset) for offset in range(clients)))
        return latencies

    @property
    def _predict_url(self) -> str:
        return f"{self.url}/v1/models/{self.model}:predict"


def latency_figures(latencies: list[float], seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 3),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "rps": round(len(ordered) / seconds, 1),
    }


@contextlib.contextmanager
def served(target: str, model: str | None) -> Iterator[Served]:
    """``target`` answering: a URL as it is, anything else started with ``serve --direct``."""
    if target.startswith(("http://", "https://")):
        url = target.rstrip("/")
        yield Served(target, url, model or _only_model(target, url))
        return
    with tempfile.TemporaryDirectory(prefix="zeroserve-validate-") as scratch:
        log_path = Path(scratch) / "serve.log"
        port = _free_port()
        command = [sys.executable, "-m", "zeroserve", "serve", target, "--direct"]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        with log_path.open("w") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()
            )
        try:
            url = f"http://127.0.0.1:{port}"
            name = _wait_ready(target, url, model, process, log_path)
            yield Served(target, url, name)
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen[Any], grace_s: float = 30.0) -> None:
    """SIGTERM (a server drains), SIGKILL after ``grace_s``; return once it has exited."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_ready(
    target: str, url: str, model: str | None, process: subprocess.Popen[bytes], log: Path
) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    name = model
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-LOG_TAIL:]
            raise StartFailed(f"{target} did not start (exit code {process.returncode}):\n{tail}")
        with contextlib.suppress(httpx.TransportError):
            name = name or _only_model(target, url)
            answer = httpx.get(f"{url}/v2/models/{name}/ready", timeout=2)
            if answer.status_code == 200 and answer.json().get("ready"):
                return name
        time.sleep(0.1)
    raise StartFailed(f"{target} was not ready within {START_TIMEOUT_S:.0f}s")


def _only_model(target: str, url: str) -> str:
    names = httpx.get(f"{url}/v1/models", timeout=10).json().get("models", [])
    if len(names) != 1:
        raise UsageError(f"{target} serves {sorted(names)}; pass --model with the one to validate")
    return str(names[0])


def _message(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:300]
    error = body.get("error") if isinstance(body, dict) else None
    return str(error if error is not None else body)[:300]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
