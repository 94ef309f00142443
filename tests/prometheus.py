"""A real Prometheus (Debian's ``prometheus`` package) scraping local model servers as the
kit's PodMonitor (``manifests/monitoring/podmonitor.yaml``) has pods scraped.

The Prometheus Operator turns a PodMonitor into a scrape job whose targets carry ``namespace``,
``container``, ``pod``, ``endpoint`` (the port's name) and, for each of ``podTargetLabels``, the
pod's label of that name with every character outside ``[a-zA-Z0-9_]`` made ``_``
(``pkg/prometheus/promcfg.go``, ``generatePodMonitorConfig``: ``sanitizeLabelName``). Here the
pods are local processes, so the targets are static, with the labels the operator would give.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import MANIFESTS, free_port
from zeroserve.delivery.probe import stop_process

PODMONITOR = MANIFESTS / "monitoring" / "podmonitor.yaml"
INSTALL_HINT = "apt-get install prometheus (hack/prometheus.sh does it)"


@dataclass(frozen=True)
class Pod:
    """A model server standing in for one pod: its address and its Kubernetes labels."""

    name: str
    namespace: str
    address: str  # host:port of its http1 port
    labels: dict[str, str]


def binary() -> str | None:
    return shutil.which("prometheus")


def target_labels(pod: Pod, monitor: dict[str, Any]) -> dict[str, str]:
    """The labels the Prometheus Operator puts on ``pod``'s target for this PodMonitor."""
    spec, endpoint = monitor["spec"], monitor["spec"]["podMetricsEndpoints"][0]
    labels = {
        "namespace": pod.namespace,
        "container": "kserve-container",
        "pod": pod.name,
        "endpoint": endpoint["port"],
        "job": f"{pod.namespace}/{monitor['metadata']['name']}",
    }
    for name in spec.get("podTargetLabels", []):
        if name in pod.labels:
            labels[re.sub(r"[^a-zA-Z0-9_]", "_", name)] = pod.labels[name]
    return labels


def config(pods: list[Pod], scrape_interval_s: float) -> dict[str, Any]:
    monitor = yaml.safe_load(PODMONITOR.read_text())
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    return {
        "global": {"scrape_interval": f"{round(1000 * scrape_interval_s)}ms"},
        "scrape_configs": [
            {
                "job_name": f"podMonitor/default/{monitor['metadata']['name']}/0",
                "metrics_path": endpoint["path"],
                "static_configs": [
                    {"targets": [pod.address], "labels": target_labels(pod, monitor)}
                    for pod in pods
                ],
            }
        ],
    }


class Prometheus:
    """A Prometheus server on a free port, its data in ``folder``; ``stop()`` ends it."""

    def __init__(self, folder: Path, pods: list[Pod], scrape_interval_s: float = 1.0) -> None:
        path = folder / "prometheus.yml"
        path.write_text(yaml.safe_dump(config(pods, scrape_interval_s)))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = folder / "prometheus.log"
        command = [
            str(binary()), f"--config.file={path}", f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]  # fmt: skip
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"prometheus not ready in {timeout_s}s:\n{self.log.read_text()}")

    def scraped(self, pod: str, timeout_s: float = 30) -> None:
        """Wait until ``pod``'s target has been scraped and is up."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = httpx.get(f"{self.url}/api/v1/query", params={"query": f'up{{pod="{pod}"}}'})
            result = found.json()["data"]["result"]
            if result and result[0]["value"][1] == "1":
                return
            time.sleep(0.2)
        raise AssertionError(f"prometheus never scraped {pod}:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        stop_process(self.process)
