"""`zeroserve serve` over real HTTP on 127.0.0.1: v1, v2, errors, limits, readiness."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import joblib
import pytest
from sklearn.datasets import load_iris

from tests.conftest import FIXTURES, RunningServer, start_server, wait_ready
from zeroserve.serving.runner import OFFLOAD_AFTER_SLOW_CALLS

pytestmark = pytest.mark.integration


def v1(server: RunningServer, model: str, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/{model}:predict", json=body, timeout=30, **kwargs)


def test_iris_v1_matches_the_model_own_predict(iris_server: RunningServer, iris_dir: Path) -> None:
    features, _ = load_iris(return_X_y=True)
    sample = features[::7].tolist()
    expected = joblib.load(iris_dir / "model.joblib").predict(sample).tolist()
    response = v1(iris_server, "iris", {"instances": sample})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": expected}


def test_iris_v2_tensor_matches_the_model_own_predict(
    iris_server: RunningServer, iris_dir: Path
) -> None:
    features, _ = load_iris(return_X_y=True)
    sample = features[::11]
    expected = joblib.load(iris_dir / "model.joblib").predict(sample).tolist()
    body = {
        "id": "req-1",
        "inputs": [
            {
                "name": "flowers",
                "shape": list(sample.shape),
                "datatype": "FP64",
                "data": sample.flatten().tolist(),
            }
        ],
    }
    response = httpx.post(f"{iris_server.url}/v2/models/iris/infer", json=body, timeout=30)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["id"] == "req-1"
    assert answer["model_name"] == "iris"
    (output,) = answer["outputs"]
    assert output["shape"] == [len(expected)]
    assert output["data"] == expected


def test_iris_wrong_feature_count_is_400_naming_the_field(iris_server: RunningServer) -> None:
    response = v1(iris_server, "iris", {"instances": [[5.1, 3.5, 1.4]]})
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "InvalidPayload"
    assert body["details"][0]["field"] == "instances[0]"
    assert body["details"][0]["expected"] == "a longer array"


def test_bad_value_names_field_value_and_type(fixtures_server: RunningServer) -> None:
    response = v1(fixtures_server, "async-double", {"instances": [1, "two", 3]})
    assert response.status_code == 400
    detail = response.json()["details"][0]
    assert detail == {
        "field": "instances[1]",
        "value": "two",
        "expected": "integer",
        "message": "Input should be a valid integer, unable to parse string as an integer",
    }


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b'{"inputs": [1, 2]}', '"instances" list'),
        (b"[1, 2, 3]", '"instances" list'),
        (b"not json at all", "Unrecognized request format"),
    ],
)
def test_malformed_bodies_are_400_with_json(
    fixtures_server: RunningServer, content: bytes, needle: str
) -> None:
    response = httpx.post(
        f"{fixtures_server.url}/v1/models/echo:predict",
        content=content,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400
    assert needle in response.json()["error"]


def test_json_without_json_content_type_still_works(fixtures_server: RunningServer) -> None:
    response = httpx.post(
        f"{fixtures_server.url}/v1/models/echo:predict",
        content=b'{"instances": [1, "a", null]}',
        headers={"content-type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert response.json() == {"predictions": [1, "a", None]}


def test_predict_exception_is_500_and_server_keeps_serving(fixtures_server: RunningServer) -> None:
    response = v1(fixtures_server, "failing", {"instances": ["ok", "boom"]})
    assert response.status_code == 500
    body = response.json()
    assert body["exception"] == "ValueError"
    assert "the instance 'boom' blew up" in body["error"]
    assert body["model"] == "failing"
    assert "Traceback" in fixtures_server.log()
    again = v1(fixtures_server, "failing", {"instances": ["ok"]})
    assert again.json() == {"predictions": ["OK"]}


def test_oversized_body_is_413_by_declared_length(fixtures_server: RunningServer) -> None:
    big = {"instances": ["x" * 1000] * 100}  # about 100 KB, over the 64 KiB limit
    response = v1(fixtures_server, "echo", big)
    assert response.status_code == 413
    assert "over the limit of 65536 bytes" in response.json()["error"]
    assert v1(fixtures_server, "echo", {"instances": [1]}).status_code == 200


def test_oversized_chunked_body_is_413(fixtures_server: RunningServer) -> None:
    def chunks():  # no Content-Length: the server must count as the body streams in
        yield b'{"instances": ["'
        for _ in range(100):
            yield b"y" * 1024
        yield b'"]}'

    response = httpx.post(
        f"{fixtures_server.url}/v1/models/echo:predict",
        content=chunks(),
        timeout=30,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["type"] == "PayloadTooLarge"


def test_request_parameters_and_warmup(fixtures_server: RunningServer) -> None:
    plain = v1(fixtures_server, "tuned", {"instances": [1.0, 2.0]})
    assert plain.json() == {"predictions": [1.5, 2.5]}
    scaled = v1(fixtures_server, "tuned", {"instances": [1.0], "parameters": {"scale": 10}})
    assert scaled.json() == {"predictions": [10.5]}
    unknown = v1(fixtures_server, "tuned", {"instances": [1.0], "parameters": {"shift": 1}})
    assert unknown.status_code == 400
    assert "accepts: scale" in unknown.json()["error"]


def test_async_predict_and_v2_int_tensor(fixtures_server: RunningServer) -> None:
    body = {"inputs": [{"name": "x", "shape": [3], "datatype": "INT64", "data": [1, 2, 3]}]}
    response = httpx.post(
        f"{fixtures_server.url}/v2/models/async-double/infer", json=body, timeout=30
    )
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert (output["datatype"], output["data"]) == ("INT64", [2, 4, 6])


def test_kserve_routes_are_served(fixtures_server: RunningServer) -> None:
    url = fixtures_server.url
    assert httpx.get(f"{url}/v2/health/live").status_code == 200
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    assert (
        httpx.get(f"{url}/v1/models/echo").json().items() >= {"name": "echo", "ready": True}.items()
    )
    listed = httpx.get(f"{url}/v1/models").json()["models"]
    assert sorted(listed) == ["async-double", "echo", "failing", "slow", "tuned"]
    metadata = httpx.get(f"{url}/v2/models/tuned").json()
    assert metadata["inputs"][0]["name"] == "instances"
    assert "paths" in httpx.get(f"{url}/openapi.json").json()
    assert httpx.get(f"{url}/docs").status_code == 200
    assert "request_predict_seconds" in httpx.get(f"{url}/metrics").text
    assert httpx.get(f"{url}/v1/models/nope").status_code == 404


def test_binds_loopback_only(fixtures_server: RunningServer) -> None:
    port = int(fixtures_server.url.rsplit(":", 1)[1])
    listening = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    if not listening.strip():
        pytest.skip("ss (iproute2) is not available to list listening sockets")
    local_addresses = [line.split()[3] for line in listening.splitlines()]
    assert local_addresses == [f"127.0.0.1:{port}"]


def test_ready_only_after_load(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    env = {**os.environ, "SLOW_LOAD_GATE": str(gate)}
    server = start_server(
        FIXTURES / "broken" / "slow_load.py", tmp_path / "slow.log", "--direct", env=env
    )
    try:
        ready = httpx.get(f"{server.url}/v2/models/slow-load/ready", timeout=5)
        assert ready.status_code == 503 or ready.json()["ready"] is False
        early = v1(server, "slow-load", {"instances": [1]})
        assert early.status_code == 503
        gate.touch()
        wait_ready(server, "slow-load")
        assert v1(server, "slow-load", {"instances": [1]}).json() == {"predictions": [1]}
    finally:
        server.stop()


def test_load_failure_exits_1_with_the_cause(tmp_path: Path) -> None:
    server = start_server(FIXTURES / "broken" / "load_fails.py", tmp_path / "fail.log", "--direct")
    try:
        code = server.process.wait(timeout=60)
    finally:
        server.stop()
    assert code == 1
    assert "load() of model 'load-fails' raised RuntimeError: weights are corrupt" in server.log()


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    server = start_server(FIXTURES / "predictors" / "echo.py", tmp_path / "echo.log")
    wait_ready(server, "echo")
    assert server.stop() == 0, server.log()
    assert "stopped by SIGTERM" in server.log()


def test_sigterm_on_a_pods_server_answers_the_request_being_predicted(tmp_path: Path) -> None:
    """``serve --direct`` (what a pod runs): a request whose predict() runs when SIGTERM comes
    still gets its answer, and the server then exits cleanly."""
    server = start_server(FIXTURES / "predictors" / "slow.py", tmp_path / "slow.log", "--direct")
    try:
        wait_ready(server, "slow")
        flag, answers = tmp_path / "started", []
        body = {"instances": [7], "parameters": {"started_flag": str(flag)}}
        url = f"{server.url}/v1/models/slow:predict"
        asking = threading.Thread(target=lambda: answers.append(httpx.post(url, json=body)))
        asking.start()
        deadline = time.monotonic() + 10
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert flag.exists(), server.log()
        server.process.send_signal(signal.SIGTERM)
        asking.join(timeout=30)
        assert [(a.status_code, a.json()) for a in answers] == [(200, {"predictions": [7]})]
        assert server.process.wait(timeout=60) == 0, server.log()
    finally:
        server.stop()


def test_slow_sync_predict_moves_to_a_thread(
    fixtures_server: RunningServer, tmp_path: Path
) -> None:
    """After a few slow calls, a slow plain-def predict no longer blocks health checks."""
    # one runs long, the next are measured; on a busy machine a measured call that was
    # preempted does not count (its time may have been the machine's), so allow a few more
    for _ in range(3 * (1 + OFFLOAD_AFTER_SLOW_CALLS)):
        assert v1(fixtures_server, "slow", {"instances": [1]}).status_code == 200
        if "later calls run in a thread" in fixtures_server.log():
            break
    assert "later calls run in a thread" in fixtures_server.log()
    started_flag = tmp_path / "started"
    finished: dict[str, float] = {}

    def slow_request() -> None:
        v1(
            fixtures_server,
            "slow",
            {"instances": [2], "parameters": {"started_flag": str(started_flag)}},
        )
        finished["predict"] = time.monotonic()

    worker = threading.Thread(target=slow_request)
    worker.start()
    deadline = time.monotonic() + 10
    while not started_flag.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert started_flag.exists()
    # The prediction is in flight now; the health check must not wait for it.
    live = httpx.get(f"{fixtures_server.url}/v2/health/live", timeout=10)
    finished["live"] = time.monotonic()
    worker.join(timeout=30)
    assert live.status_code == 200
    assert finished["live"] < finished["predict"]


def test_v2_bytes_tensor_in_and_out(fixtures_server: RunningServer) -> None:
    body = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["ab", "cd"]}]}
    response = httpx.post(f"{fixtures_server.url}/v2/models/failing/infer", json=body, timeout=30)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert (output["datatype"], output["shape"], output["data"]) == ("BYTES", [2], ["AB", "CD"])


def test_v2_wrong_tensor_type_is_400(fixtures_server: RunningServer) -> None:
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["seven"]}]}
    response = httpx.post(
        f"{fixtures_server.url}/v2/models/async-double/infer", json=body, timeout=30
    )
    assert response.status_code == 400
    assert response.json()["details"][0]["field"] == "inputs[x][0]"
