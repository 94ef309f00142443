"""The local activator with real processes over real HTTP: scale from and to zero, hold, crash,
isolate, scale out, shut down cleanly."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import FIXTURES, RunningServer, run_zeroserve, start_server

LOCAL = FIXTURES / "local"
POLL_TIMEOUT_S = 60.0


def status(server: RunningServer) -> dict[str, Any]:
    return httpx.get(f"{server.url}/zeroserve/status", timeout=10).json()  # type: ignore[no-any-return]


def model_status(server: RunningServer, name: str) -> dict[str, Any]:
    return status(server)["models"][name]  # type: ignore[no-any-return]


def poll(check: Callable[[], bool], what: str, server: RunningServer) -> None:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting until {what}:\n{server.log()[-4000:]}")


def predict(server: RunningServer, name: str, instances: list[int], timeout: float = 60):
    return httpx.post(
        f"{server.url}/v1/models/{name}:predict", json={"instances": instances}, timeout=timeout
    )


def descendants(server: RunningServer) -> list[psutil.Process]:
    return psutil.Process(server.process.pid).children(recursive=True)


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One activator for tests/fixtures/local: flaky, steady, gated, busy, warm."""
    folder = tmp_path_factory.mktemp("local")
    env = {
        **os.environ,
        "CRASH_IN_LOAD": str(folder / "crash-in-load"),
        "ZEROSERVE_LOCAL__STABLE_WINDOW": "2",
        "ZEROSERVE_LOCAL__TICK": "0.2",
    }
    server = start_server(LOCAL, folder / "activator.log", env=env)
    poll(lambda: server.process.poll() is not None or _listed(server), "models listed", server)
    yield server
    server.stop()


def _listed(server: RunningServer) -> bool:
    try:
        return bool(httpx.get(f"{server.url}/v1/models", timeout=2).json()["models"])
    except httpx.TransportError:
        return False


def test_models_start_at_zero_and_are_listed_with_state(local_server: RunningServer) -> None:
    listed = httpx.get(f"{local_server.url}/v1/models").json()
    assert sorted(listed["models"]) == ["busy", "flaky", "gated", "steady", "warm"]
    assert set(listed["states"].values()) <= {"zero", "ready", "starting", "draining", "failed"}
    ready = httpx.get(f"{local_server.url}/v2/models/steady/ready").json()
    assert ready["ready"] is True
    unknown = httpx.post(f"{local_server.url}/v1/models/nope:predict", json={"instances": [1]})
    assert unknown.status_code == 404
    assert "not served here" in unknown.json()["error"]


def test_scale_from_zero_and_back_to_zero(local_server: RunningServer) -> None:
    poll(
        lambda: model_status(local_server, "flaky")["state"] == "zero",
        "flaky at zero",
        local_server,
    )
    answer = predict(local_server, "flaky", [1, 2])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [2, 4]}
    running = model_status(local_server, "flaky")
    assert running["state"] == "ready"
    last = running["last_cold_start"]
    assert last["ready_s"] > 0
    # the worker's phases count from its fork, after the request asked for it: the console's
    # "until the worker runs" row is the difference, never below zero
    (ready_mark,) = [p for p in last["worker_timeline"]["phases"] if p["name"] == "ready"]
    assert 0 < ready_mark["start_s"] < last["ready_s"]
    (replica,) = running["replicas"]
    # scale_to_zero_after=1 on flaky: idle for a second, the worker is stopped
    poll(
        lambda: model_status(local_server, "flaky")["state"] == "zero",
        "scaled to zero",
        local_server,
    )
    assert (
        not psutil.pid_exists(replica["pid"]) or psutil.Process(replica["pid"]).status() == "zombie"
    )
    # min_replicas=1 (and scale_to_zero_after=0.5): started without a request, never stopped
    warm = model_status(local_server, "warm")
    assert warm["state"] == "ready"
    assert [r["state"] for r in warm["replicas"]] == ["ready"]
    assert warm["last_cold_start"]["trigger"] == "min_replicas"
    again = predict(local_server, "flaky", [5])
    assert again.json() == {"predictions": [10]}


def test_requests_held_during_a_cold_start_are_all_answered(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    env = {**os.environ, "LOAD_GATE": str(gate)}
    server = start_server(LOCAL / "gated.py", tmp_path / "gated.log", env=env)
    try:
        poll(lambda: _listed(server), "listening", server)
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            futures = [pool.submit(predict, server, "gated", [i]) for i in range(50)]
            poll(lambda: model_status(server, "gated")["queued"] == 50, "50 held", server)
            assert model_status(server, "gated")["state"] == "starting"
            gate.touch()
            answers = [future.result(timeout=60) for future in futures]
        assert [answer.json() for answer in answers] == [
            {"predictions": [i + 1]} for i in range(50)
        ]
        assert model_status(server, "gated")["last_cold_start"]["trigger"] == "request"
        assert len(model_status(server, "gated")["replicas"]) == 1  # exactly one start
    finally:
        server.stop()


def test_queue_overflow_and_start_timeout_answer_503_with_retry_after(tmp_path: Path) -> None:
    env = {**os.environ, "LOAD_GATE": str(tmp_path / "never")}
    server = start_server(
        LOCAL / "gated.py",
        tmp_path / "gated.log",
        "--queue-limit",
        "2",
        "--start-timeout",
        "3",
        env=env,
    )
    try:
        poll(lambda: _listed(server), "listening", server)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(predict, server, "gated", [i]) for i in range(4)]
            answers = [future.result(timeout=30) for future in futures]
        kinds = sorted(answer.json()["type"] for answer in answers)
        assert kinds == ["QueueFull", "QueueFull", "StartTimeout", "StartTimeout"]
        for answer in answers:
            assert answer.status_code == 503
            assert int(answer.headers["retry-after"]) >= 1
        assert "--start-timeout" in answers[kinds.index("StartTimeout")].text or any(
            "--start-timeout" in answer.text for answer in answers
        )
        # the stuck start is killed at the timeout and counted as a failure
        poll(lambda: model_status(server, "gated")["state"] == "failed", "failed", server)
        assert "did not become ready" in model_status(server, "gated")["last_error"]
    finally:
        server.stop()


def test_crash_in_load_is_reported_and_recovers(
    local_server: RunningServer, tmp_path: Path
) -> None:
    marker = Path(_env_of(local_server)["CRASH_IN_LOAD"])
    poll(
        lambda: model_status(local_server, "flaky")["state"] == "zero",
        "flaky at zero",
        local_server,
    )
    marker.touch()
    try:
        failed = predict(local_server, "flaky", [1])
        assert failed.status_code == 503
        assert failed.json()["type"] == "StartFailed"
        assert "exit code 3" in failed.json()["error"]
        assert "retry-after" in failed.headers
    finally:
        marker.unlink()
    deadline = time.monotonic() + POLL_TIMEOUT_S
    answer = predict(local_server, "flaky", [1])
    while answer.status_code == 503 and time.monotonic() < deadline:  # back-off, if any
        time.sleep(float(answer.headers["retry-after"]) / 4)
        answer = predict(local_server, "flaky", [1])
    assert answer.json() == {"predictions": [2]}
    assert model_status(local_server, "flaky")["failures"] == 0


def _env_of(server: RunningServer) -> dict[str, str]:
    return psutil.Process(server.process.pid).environ()


def test_crash_mid_request_gets_502_and_the_other_model_is_untouched(
    local_server: RunningServer,
) -> None:
    before = predict(local_server, "steady", [0]).json()["predictions"][0]
    crashed = predict(local_server, "flaky", [-1])
    assert crashed.status_code == 502
    body = crashed.json()
    assert body["type"] == "WorkerDied"
    assert body["exit_code"] == 7
    assert "exit code 7" in body["error"]
    assert predict(local_server, "steady", [0]).json()["predictions"][0] == before
    recovered = predict(local_server, "flaky", [3])
    assert recovered.json() == {"predictions": [6]}


def test_scale_out_to_max_replicas_under_load_and_back(local_server: RunningServer) -> None:
    done = threading.Event()
    deadline = time.monotonic() + POLL_TIMEOUT_S
    seen: list[int] = []

    def client() -> None:
        while not done.is_set() and time.monotonic() < deadline:
            assert predict(local_server, "busy", [1]).status_code == 200

    def at_max() -> bool:
        seen.append(len(model_status(local_server, "busy")["replicas"]))
        return seen[-1] == 3

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client) for _ in range(8)]
        try:
            poll(at_max, "busy at max_replicas=3", local_server)
        finally:
            done.set()
        for future in futures:
            future.result(timeout=60)
    assert max(seen) == 3  # never above max_replicas
    poll(
        lambda: [r["state"] for r in model_status(local_server, "busy")["replicas"]] == ["ready"],
        "busy back to one replica",
        local_server,
    )


def test_status_command_local(local_server: RunningServer) -> None:
    result = run_zeroserve("status", "--local", "--url", local_server.url)
    assert result.returncode == 0, result.stderr
    for name in ("busy", "flaky", "gated", "steady", "warm"):
        assert name in result.stdout
    as_json = run_zeroserve("status", "--local", "--url", local_server.url, "-o", "json")
    assert set(json.loads(as_json.stdout)["models"]) == {
        "busy",
        "flaky",
        "gated",
        "steady",
        "warm",
    }


def test_no_fork_spawns_and_threads_at_import_fall_back_to_spawn(tmp_path: Path) -> None:
    server = start_server(FIXTURES / "local_threads", tmp_path / "threads.log")
    try:
        poll(lambda: _listed(server), "listening", server)
        assert predict(server, "threaded", [4]).json() == {"predictions": [4]}
        state = status(server)
        assert state["fork"] is False
        assert "import-time-poller" in state["fork_off_reason"]
        assert state["models"]["threaded"]["last_cold_start"]["mode"] == "spawn"
        assert "spawned fresh, not forked" in server.log()
    finally:
        server.stop()
    server = start_server(LOCAL / "steady.py", tmp_path / "nofork.log", "--no-fork")
    try:
        poll(lambda: _listed(server), "listening", server)
        assert predict(server, "steady", [0]).status_code == 200
        assert status(server)["fork_off_reason"] == "--no-fork was given"
    finally:
        server.stop()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_drains_and_leaves_no_child_process(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    server = start_server(LOCAL, tmp_path / "shutdown.log")
    poll(lambda: _listed(server), "listening", server)
    for name in ("steady", "flaky"):
        assert predict(server, name, [1]).status_code == 200
    children = descendants(server)
    assert len(children) >= 3  # the model host and two workers
    server.process.send_signal(stop_signal)
    assert server.process.wait(timeout=60) == 0
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left running: {alive}"


def test_workers_stop_when_the_activator_is_killed(tmp_path: Path) -> None:
    """SIGKILL gives the activator no chance to drain: the host sees its channel close and the
    kernel's parent-death signal stops the workers, so nothing is left behind."""
    server = start_server(LOCAL, tmp_path / "killed.log")
    poll(lambda: _listed(server), "listening", server)
    assert predict(server, "steady", [1]).status_code == 200
    children = descendants(server)
    assert children
    server.process.kill()
    server.process.wait(timeout=10)
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"left running: {alive}"
