"""Batching over real HTTP: concurrent clients, sizes, splitting, settings, disconnects, metrics."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import joblib
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris

from tests.conftest import FIXTURES, RunningServer, start_server, wait_ready
from tests.raw_http import closed_by_peer, read_answers

pytestmark = pytest.mark.integration


def v1(server: RunningServer, model: str, body: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/{model}:predict", json=body, timeout=60)


def concurrently(count: int, call: Any) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(call, range(count)))


def test_concurrent_requests_share_batches_and_get_their_own_results(
    batching_server: RunningServer,
) -> None:
    def ask(index: int) -> httpx.Response:
        return v1(batching_server, "recorder", {"instances": [f"a{index}", f"b{index}"]})

    responses = concurrently(24, ask)
    sizes = []
    for index, response in enumerate(responses):
        assert response.status_code == 200, response.text
        answer = response.json()["predictions"]
        assert [item["id"] for item in answer] == [f"a{index}", f"b{index}"]
        sizes += [item["batch"] for item in answer]
    assert max(sizes) <= 8
    assert max(sizes) > 2  # requests were grouped, not served one by one


def test_request_larger_than_a_batch_is_split_in_order(batching_server: RunningServer) -> None:
    instances = [f"x{i}" for i in range(19)]
    answer = v1(batching_server, "recorder", {"instances": instances}).json()["predictions"]
    assert [item["id"] for item in answer] == instances
    assert all(item["batch"] <= 8 for item in answer)


def test_request_parameters_never_mix_in_one_batch(batching_server: RunningServer) -> None:
    def ask(index: int) -> httpx.Response:
        tag = "red" if index % 2 else "blue"
        return v1(
            batching_server, "recorder", {"instances": [str(index)], "parameters": {"tag": tag}}
        )

    for index, response in enumerate(concurrently(12, ask)):
        (item,) = response.json()["predictions"]
        assert item["tag"] == ("red" if index % 2 else "blue")


def test_split_false_refuses_large_requests_with_413(batching_server: RunningServer) -> None:
    response = v1(batching_server, "strict", {"instances": [1, 2, 3, 4, 5]})
    assert response.status_code == 413
    assert response.json()["type"] == "BatchTooLarge"
    assert v1(batching_server, "strict", {"instances": [1, 2]}).json() == {"predictions": [2, 3]}


def test_wrong_result_length_is_500_naming_both_lengths(batching_server: RunningServer) -> None:
    response = v1(batching_server, "short", {"instances": [1, 2, 3]})
    assert response.status_code == 500
    assert "returned 2 results for a batch of 3 instances" in response.json()["error"]
    assert v1(batching_server, "short", {"instances": [1, 2, 3]}).status_code == 500  # still up


def settings_url(server: RunningServer, model: str) -> str:
    return f"{server.url}/zeroserve/models/{model}/batching"


def test_settings_can_be_read_and_changed_while_serving(batching_server: RunningServer) -> None:
    url = settings_url(batching_server, "recorder")
    before = httpx.get(url).json()
    assert before["batching"] == {"max_batch_size": 8, "max_latency_ms": 50.0, "split": True}
    changed = httpx.put(url, json={"max_batch_size": 2})
    assert changed.status_code == 200
    assert changed.json()["batching"]["max_batch_size"] == 2
    try:
        responses = concurrently(
            8, lambda i: v1(batching_server, "recorder", {"instances": [str(i)]})
        )
        assert all(r.json()["predictions"][0]["batch"] <= 2 for r in responses)
    finally:
        httpx.put(url, json={"max_batch_size": 8})


@pytest.mark.parametrize(
    ("model", "body", "status", "needle"),
    [
        ("recorder", {"max_batch_size": 0}, 400, "max_batch_size=0 is invalid"),
        ("recorder", {"max_batch": 3}, 400, "max_batch_size, max_latency_ms, split"),
        ("recorder", [1], 400, "must be a JSON object"),
        ("nope", {"max_batch_size": 2}, 404, "nope"),
    ],
)
def test_bad_settings_changes_are_refused(
    batching_server: RunningServer, model: str, body: object, status: int, needle: str
) -> None:
    response = httpx.put(settings_url(batching_server, model), json=body)
    assert response.status_code == status
    assert needle in response.json()["error"]


def test_settings_of_an_unbatched_model_is_409(fixtures_server: RunningServer) -> None:
    response = httpx.get(settings_url(fixtures_server, "echo"))
    assert response.status_code == 409
    assert "does not batch" in response.json()["error"]


def queued(server: RunningServer, model: str) -> int:
    return int(httpx.get(settings_url(server, model)).json()["queued_instances"])


def wait_queued(server: RunningServer, model: str, expected: int) -> None:
    deadline = time.monotonic() + 10
    while queued(server, model) != expected:
        assert time.monotonic() < deadline, f"queue never reached {expected}"
        time.sleep(0.01)


@pytest.mark.parametrize("how", ["closed", "half-closed"])
@pytest.mark.parametrize("which", ["batching_server", "batching_direct"])
def test_a_client_that_closed_leaves_the_queue_and_a_half_closed_one_is_answered(
    request: pytest.FixtureRequest, which: str, how: str, tmp_path: Path
) -> None:
    """Through the activator and straight to one process (what a pod runs): a client that
    hung up has its instances taken out of the queue before dispatch; one that only closed
    its sending side still gets its answer, then the connection closes."""
    server: RunningServer = request.getfixturevalue(which)
    wait_ready(server, "held")
    port = int(server.url.rsplit(":", 1)[1])
    body = json.dumps({"instances": [how, how]}).encode()
    sent = (
        f"POST /v1/models/held:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(sent)
        if how == "half-closed":
            client.shutdown(socket.SHUT_WR)
        wait_queued(server, "held", 2)
        if how == "half-closed":  # the next request releases the queue ("held" waits for 4)
            answer = v1(server, "held", {"instances": ["c", "d"]}).json()
            assert answer == {"predictions": ["c:4", "d:4"]}
            reader = read_answers(client, 1)
            assert [a.json() for a in reader.answers] == [{"predictions": [f"{how}:4"] * 2}]
            assert closed_by_peer(client)
            return
    wait_queued(server, "held", 0)  # the hang-up removed its instances
    answer = v1(server, "held", {"instances": ["a", "b", "c", "d"]}).json()
    assert answer == {"predictions": ["a:4", "b:4", "c:4", "d:4"]}


def test_batch_metrics_are_exported(batching_server: RunningServer) -> None:
    v1(batching_server, "recorder", {"instances": ["m"]})
    text = httpx.get(f"{batching_server.url}/metrics").text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    sizes = families["zeroserve_batch_size"]
    counts = [
        s.value
        for s in sizes.samples
        if s.name.endswith("_count") and s.labels["model"] == "recorder"
    ]
    assert counts
    assert counts[0] >= 1
    reasons = {
        s.labels["reason"]
        for s in families["zeroserve_batch_dispatches"].samples
        if s.labels.get("model") == "recorder" and s.name.endswith("_total")
    }
    assert reasons <= {"full", "timeout"}
    assert reasons
    assert "zeroserve_batch_queue_wait_seconds" in families


def test_iris_batched_matches_iris_under_concurrency(
    iris_server: RunningServer, iris_dir: Path
) -> None:
    features, _ = load_iris(return_X_y=True)
    expected = joblib.load(iris_dir / "model.joblib").predict(features).tolist()

    def ask(index: int) -> list[int]:
        rows = features[index * 5 : index * 5 + 5].tolist()
        response = v1(iris_server, "iris-batched", {"instances": rows})
        assert response.status_code == 200, response.text
        return list(response.json()["predictions"])

    answers = concurrently(30, ask)
    assert [label for answer in answers for label in answer] == expected


def test_v2_tensors_are_batched_along_the_first_dimension(batching_server: RunningServer) -> None:
    def ask(index: int) -> httpx.Response:
        body = {
            "inputs": [
                {"name": "x", "shape": [2], "datatype": "INT64", "data": [index, index * 10]}
            ]
        }
        return httpx.post(f"{batching_server.url}/v2/models/strict/infer", json=body, timeout=60)

    for index, response in enumerate(concurrently(6, ask)):
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [index + 1, index * 10 + 1]


@pytest.fixture(scope="module")
def batching_direct(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The batching fixtures in one process, as a pod serves them."""
    log = tmp_path_factory.mktemp("log") / "direct.log"
    server = start_server(FIXTURES / "batching", log, "--direct")
    wait_ready(server, "recorder")
    yield server
    server.stop()


NONSENSE = [
    b'{"max_latency_ms": Infinity}',
    b'{"max_latency_ms": 1e400}',
    b'{"max_latency_ms": NaN}',
    b'{"max_latency_ms": 86400000}',
    b'{"max_batch_size": 1' + b"0" * 400 + b"}",
    b'{"max_batch_size": 100000000}',
    b"not json",
]


@pytest.mark.parametrize("body", NONSENSE, ids=range(len(NONSENSE)))
@pytest.mark.parametrize("where", ["activator", "direct"])
def test_nonsense_batching_settings_are_400_and_change_nothing(
    request: pytest.FixtureRequest, where: str, body: bytes
) -> None:
    server = request.getfixturevalue(
        "batching_server" if where == "activator" else "batching_direct"
    )
    url = settings_url(server, "recorder")
    response = httpx.put(url, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "InvalidPayload"
    after = httpx.get(url)
    assert after.status_code == 200
    assert after.json()["batching"] == {"max_batch_size": 8, "max_latency_ms": 50.0, "split": True}
    assert v1(server, "recorder", {"instances": ["x"]}).status_code == 200


def test_a_change_for_a_model_at_zero_is_kept_for_its_next_start(tmp_path: Path) -> None:
    from tests.conftest import FIXTURES, start_server
    from tests.integration.test_activator import model_status

    server = start_server(FIXTURES / "batching", tmp_path / "activator.log")
    try:
        url = settings_url(server, "recorder")
        changed = httpx.put(url, json={"max_batch_size": 3})
        assert changed.json() == {
            "model": "recorder",
            "batching": {"max_batch_size": 3, "max_latency_ms": 50.0, "split": True},
            "replicas": 0,
        }
        assert model_status(server, "recorder")["state"] == "zero"  # no cold start for it
        assert v1(server, "recorder", {"instances": ["a"]}).status_code == 200
        assert httpx.get(url).json()["batching"]["max_batch_size"] == 3  # the worker's own
        again = httpx.put(url, json={"max_latency_ms": 7})
        assert again.json()["replicas"] == 1
        assert httpx.get(url).json()["batching"] == {
            "max_batch_size": 3,
            "max_latency_ms": 7.0,
            "split": True,
        }
        # applied once by the activator per change, and once by the one replica for the second
        assert server.log().count("model 'recorder' batching is now") == 3
    finally:
        server.stop()
