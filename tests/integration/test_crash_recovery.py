"""Crashes the activator must recover from by the next request (real processes, real signals)."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration.test_activator import model_status, poll
from tests.integration.test_activator_http import _start


def host_process(activator_pid: int) -> psutil.Process:
    for child in psutil.Process(activator_pid).children():
        if "zeroserve.local.child.forkserver" in " ".join(child.cmdline()):
            return child
    raise AssertionError("no model host among the activator's children")


def predict(url: str, model: str, instances: list[str]) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/{model}:predict", json={"instances": instances}, timeout=60)


@pytest.mark.timeout(180)
def test_kill_9_of_the_model_host_is_recovered_by_the_next_request(tmp_path: Path) -> None:
    server = _start(tmp_path)
    try:
        assert predict(server.url, "echo", ["before"]).json() == {"predictions": ["before"]}
        old_worker = model_status(server, "echo")["replicas"][0]["pid"]
        host = host_process(server.process.pid)
        host.send_signal(signal.SIGKILL)
        poll(
            lambda: old_worker not in [r["pid"] for r in model_status(server, "echo")["replicas"]],
            "the dead host's worker is no longer listed",
            server,
        )
        assert predict(server.url, "echo", ["after"]).json() == {"predictions": ["after"]}
        assert model_status(server, "echo")["replicas"][0]["pid"] != old_worker
        assert host_process(server.process.pid).pid != host.pid
        gate = tmp_path / "open"
        gate.touch()  # "held" was at zero when the host died: it starts on the new host
        assert predict(server.url, "held", [str(gate)]).json() == {"predictions": [str(gate)]}
        assert not psutil.pid_exists(old_worker) or psutil.Process(old_worker).status() == "zombie"
    finally:
        server.process.send_signal(signal.SIGTERM)
        try:
            code = server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            raise
    assert code == 0, server.log()[-3000:]


@pytest.mark.timeout(180)
def test_kill_9_of_the_host_while_a_model_starts_still_answers_the_held_request(
    tmp_path: Path,
) -> None:
    server = _start(tmp_path)
    gate = tmp_path / "gate"
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            host = host_process(server.process.pid)
            os.kill(host.pid, signal.SIGSTOP)  # its fork command waits unread in the channel
            answer = pool.submit(predict, server.url, "held", [str(gate)])
            poll(lambda: model_status(server, "held")["queued"] == 1, "request held", server)
            host.send_signal(signal.SIGKILL)
            gate.touch()
            assert answer.result(timeout=90).json() == {"predictions": [str(gate)]}
    finally:
        server.stop()


@pytest.mark.timeout(120)
def test_a_worker_out_of_memory_is_replaced_before_the_next_request(tmp_path: Path) -> None:
    server = _start(tmp_path)
    try:
        first_pid = predict(server.url, "hungry", ["a"]).json()["predictions"][0]
        answer = predict(server.url, "hungry", ["oom"])
        assert answer.status_code == 503
        assert answer.json()["type"] == "OutOfMemory"
        assert "retry" in answer.json()["error"]
        for attempt in range(3):  # every later request is served, by a fresh worker
            again = predict(server.url, "hungry", [str(attempt)])
            assert again.status_code == 200, again.text
            assert again.json()["predictions"][0] != first_pid
        poll(lambda: not psutil.pid_exists(first_pid), "the old worker exited", server)
        assert "stops: predict() of model 'hungry' ran out of memory" in server.log()
    finally:
        server.stop()


@pytest.mark.timeout(120)
def test_direct_serving_stops_with_an_error_after_running_out_of_memory(tmp_path: Path) -> None:
    from tests.conftest import FIXTURES, start_server

    server = start_server(FIXTURES / "http" / "hungry.py", tmp_path / "direct.log", "--direct")
    try:
        poll(
            lambda: httpx.get(f"{server.url}/v2/models/hungry/ready").status_code == 200,
            "ready",
            server,
        )
        answer = predict(server.url, "hungry", ["oom"])
        assert answer.status_code == 503
        assert server.process.wait(timeout=60) == 1  # the pod's container restarts
        assert "ran out of memory" in server.log()
    finally:
        server.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("fixture", "model", "reason"),
    [
        ("unhealthy.py", "sickly", "healthy() returned False"),
        ("hanging_health.py", "stuck", "healthy() gave no answer within 10 s"),
    ],
    ids=["says-no", "hangs"],
)
def test_a_worker_whose_healthy_turns_false_is_replaced(
    tmp_path: Path, fixture: str, model: str, reason: str
) -> None:
    """A ready model's own healthy() saying no (an LLM engine that died), or never answering,
    does not leave the model answering 503 for good: that worker stops and a fresh one serves."""
    from tests.conftest import FIXTURES, start_server

    flag = tmp_path / "unhealthy-pid"
    env = {**os.environ, "ZEROSERVE_TEST_UNHEALTHY_PID_FILE": str(flag)}
    server = start_server(FIXTURES / fixture, tmp_path / "serve.log", env=env)
    try:
        first = predict(server.url, model, ["1"]).json()["predictions"][0]
        flag.write_text(str(first))

        def served_by_another() -> bool:
            answer = predict(server.url, model, ["1"])
            return answer.status_code == 200 and answer.json()["predictions"][0] != first

        poll(served_by_another, "a fresh worker answers", server)
        poll(lambda: not psutil.pid_exists(first), "the unhealthy worker exited", server)
        assert f"is no longer healthy ({reason})" in server.log()
    finally:
        server.stop()
