"""`zeroserve serve --engine ray` on a real two-node Ray cluster (head + worker, this machine).

The tests run in file order on one cluster: the last one kills the worker node.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer, run_zeroserve, start_server, wait_ready
from tests.ray.conftest import MODELS, RayCluster

pytestmark = pytest.mark.timeout(300)


def status(front: RunningServer) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{front.url}/zeroserve/status", timeout=10).json()
    return body


def wait_for(check: Callable[[], bool], timeout: float, what: str, front: RunningServer) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(
        f"{what} not within {timeout}s; status: {status(front)}\n{front.log_gist(60)}"
    )


def node_with(front: RunningServer, resource: str) -> str:
    (node,) = [n for n in status(front)["nodes"] if resource in n["resources"] and n["alive"]]
    return str(node["node_id"])


async def post_all(url: str, bodies: list[Any], timeout: float = 120) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=timeout) as client:
        return list(await asyncio.gather(*(client.post(url, json=body) for body in bodies)))


def at_zero(front: RunningServer, model: str) -> bool:
    item = status(front)["models"][model]
    return item["state"] == "zero" and not item["replica_states"] and not item["replicas"]


def last_cold_start(front: RunningServer, model: str) -> dict[str, Any]:
    return dict(status(front)["models"][model]["last_cold_start"] or {})


def test_twenty_requests_held_at_zero_are_all_answered_then_it_returns_to_zero(
    ray_front: RunningServer,
) -> None:
    wait_for(lambda: at_zero(ray_front, "echo"), 60, "echo at zero", ray_front)
    bodies = [{"instances": [[float(i), 1.0, 2.0, 3.0]]} for i in range(20)]
    answers = asyncio.run(post_all(f"{ray_front.url}/v1/models/echo:predict", bodies))
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers]
    assert [a.json() for a in answers] == [{"predictions": [i + 6.0]} for i in range(20)]
    # the replica reports its timeline to the front's poll a moment after it answers
    wait_for(
        lambda: "worker_timeline" in last_cold_start(ray_front, "echo"),
        30,
        "the cold start's worker timeline",
        ray_front,
    )
    last = last_cold_start(ray_front, "echo")
    assert last["trigger"] == "request"
    assert last["first_response_s"] > 0
    phases = [phase["name"] for phase in last["worker_timeline"]["phases"]]
    assert (phases[0], phases[-1]) == ("imports", "ready"), phases
    # scale_to_zero_after=2: Ray Serve (min_replicas 0) stops the replica; nothing stays up
    wait_for(lambda: at_zero(ray_front, "echo"), 90, "echo back at zero", ray_front)
    assert last_cold_start(ray_front, "echo")["worker_timeline"] == last["worker_timeline"]


def test_a_custom_resource_places_the_model_on_the_worker_node(ray_front: RunningServer) -> None:
    answer = httpx.post(
        f"{ray_front.url}/v1/models/pinned:predict", json={"instances": [1.0]}, timeout=120
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [node_with(ray_front, "worker_node")]}
    (replica,) = status(ray_front)["models"]["pinned"]["replicas"]
    assert replica["node_id"] == node_with(ray_front, "worker_node")


def test_load_scales_out_across_both_nodes(ray_front: RunningServer) -> None:
    nodes = {node_with(ray_front, "head_node"), node_with(ray_front, "worker_node")}
    seen: set[str] = set()
    url = f"{ray_front.url}/v1/models/spread:predict"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answers = asyncio.run(post_all(url, [{"instances": [0.3]}] * 12))
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        seen |= {a.json()["predictions"][0] for a in answers}
        replicas = status(ray_front)["models"]["spread"]["replicas"]
        if seen == nodes and {r["node_id"] for r in replicas} == nodes:
            break
    else:
        raise AssertionError(f"answers came from {seen}, not both nodes {nodes}")
    # the weights came from S3 once: this machine's two nodes share one cache folder
    fetches = [
        phase
        for replica in status(ray_front)["models"]["spread"]["replicas"]
        for phase in replica["timeline"]["phases"]
        if phase["name"] == "fetch"
    ]
    assert sorted(phase["hit"] for phase in fetches) == [False, True], fetches


BAD_INPUTS: list[tuple[str, str, str | bytes]] = [
    ("POST", "/v1/models/echo:predict", '{"instances": [[1, 2]]}'),
    ("POST", "/v1/models/echo:predict", '{"instances": [["a", 2, 3, 4]]}'),
    ("POST", "/v1/models/echo:predict", '{"instances": '),
    ("POST", "/v1/models/echo:predict", "[1, 2, 3]"),
    ("POST", "/v1/models/echo:predict", '{"instances": [[1, 2, 3, 4]], "pad": "' + "x" * 2048),
    ("POST", "/v1/models/nope:predict", '{"instances": [[1, 2, 3, 4]]}'),
    ("GET", "/v1/models/echo:predict", ""),
    (
        "POST",
        "/v2/models/echo/infer",
        '{"inputs": [{"name": "instances", "shape": [1, 4], "datatype": "FP64", "data": [1]}]}',
    ),
    (
        "POST",
        "/v2/models/echo/infer",
        '{"inputs": [{"name": "instances", "shape": [1, 4], "datatype": "BYTES", '
        '"data": ["a", "b", "c", "d"]}]}',
    ),
    ("POST", "/v1/models/echo:predict", "{}"),
]


def test_bad_input_gets_the_local_servers_status_and_body(
    ray_front: RunningServer, ray_cluster: RayCluster, tmp_path: Any
) -> None:
    local = start_server(
        MODELS, tmp_path / "direct.log", "--direct", "--max-body-size", "1KiB", env=ray_cluster.env
    )
    try:
        wait_ready(local, "echo")
        for method, path, body in BAD_INPUTS:
            headers = {"content-type": "application/json"}
            seen = [
                httpx.request(method, server.url + path, content=body, headers=headers, timeout=60)
                for server in (local, ray_front)
            ]
            assert seen[0].status_code in (400, 404, 405, 413), (path, body, seen[0].text)
            assert seen[1].status_code == seen[0].status_code, (path, body, seen[1].text)
            assert seen[1].json() == seen[0].json(), (path, body)
    finally:
        local.stop()


def test_status_and_predict_commands_work_against_it(ray_front: RunningServer) -> None:
    shown = run_zeroserve("status", "--engine", "ray", "--url", ray_front.url, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    models = json.loads(shown.stdout)["models"]
    assert set(models) == {"echo", "pinned", "spread"}
    table = run_zeroserve("status", "--engine", "ray", "--url", ray_front.url)
    assert "replicas run on Ray Serve" in table.stdout, table.stdout + table.stderr
    sent = run_zeroserve(
        "predict", "echo", "--url", ray_front.url, "--data", '{"instances": [[1, 1, 1, 1]]}'
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout) == {"predictions": [4.0]}
    metrics = httpx.get(f"{ray_front.url}/metrics", timeout=10).text
    assert 'zeroserve_replicas{model="echo",state="running"} 1.0' in metrics
    assert 'zeroserve_held_requests{model="echo"} 0.0' in metrics


def test_the_console_and_its_figures_are_served_by_the_front(ray_front: RunningServer) -> None:
    page = httpx.get(f"{ray_front.url}/zeroserve/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script src="/zeroserve/console.js"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = httpx.get(f"{ray_front.url}/zeroserve/console.js", timeout=10)
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    figures = httpx.get(f"{ray_front.url}/zeroserve/overview", timeout=10).json()
    assert set(figures["models"]) == {"echo", "pinned", "spread"}
    assert figures["models"]["echo"]["latency_ms"].keys() == {"p50", "p99"}


def test_a_model_whose_load_fails_answers_503_with_the_reason(
    ray_cluster: RayCluster, tmp_path: Any
) -> None:
    broken = MODELS.parent / "broken.py"
    flags = ("--engine", "ray", "--address", ray_cluster.address)
    front = start_server(broken, tmp_path / "front.log", *flags, env=ray_cluster.env)
    try:
        wait_ready(front, "broken", timeout=120)
        answer = httpx.post(
            f"{front.url}/v1/models/broken:predict", json={"instances": [1.0]}, timeout=180
        )
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"]
        body = answer.json()
        assert body["type"] == "StartFailed"
        assert "weights.bin is missing" in body["error"], body
        again = httpx.post(
            f"{front.url}/v1/models/broken:predict", json={"instances": [1.0]}, timeout=30
        )
        assert (again.status_code, again.json()["type"]) == (503, "StartFailed")
    finally:
        front.stop()


def test_a_model_kept_warm_whose_load_fails_stops_the_front_with_the_reason(
    ray_cluster: RayCluster, tmp_path: Any
) -> None:
    """With min_replicas=1, Ray Serve fails the application's deployment: the front exits
    with the reason instead of serving on with a model that never gets ready."""
    broken = MODELS.parent / "broken.py"
    env = {**ray_cluster.env, "ZEROSERVE_TEST_BROKEN_MIN_REPLICAS": "1"}
    flags = ("--engine", "ray", "--address", ray_cluster.address)
    front = start_server(broken, tmp_path / "front.log", *flags, env=env)
    try:
        code = front.process.wait(timeout=180)
        assert code == 1, front.log_gist()
        (said,) = [line for line in front.log().splitlines() if line.startswith("error: ")]
        assert "deploy() of model 'broken' raised DeployFailed" in said, said
        assert "DEPLOY_FAILED" in said, said
        assert "weights.bin is missing" in said, said
    finally:
        front.stop()


def test_a_killed_worker_node_fails_its_requests_clearly_and_the_head_serves_on(
    ray_front: RunningServer, ray_cluster: RayCluster
) -> None:
    head = node_with(ray_front, "head_node")
    wait_for(
        lambda: len(status(ray_front)["models"]["spread"]["replicas"]) == 2,
        120,
        "two spread replicas",
        ray_front,
    )

    async def requests_then_kill() -> list[httpx.Response]:
        url = f"{ray_front.url}/v1/models/spread:predict"
        sent = asyncio.ensure_future(post_all(url, [{"instances": [4.0]}] * 6, timeout=90))
        await asyncio.sleep(1.5)  # all six sent: two in each replica, two held at the handle
        await asyncio.to_thread(ray_cluster.kill_worker_node)
        return await sent

    began = time.monotonic()
    answers = asyncio.run(requests_then_kill())
    assert time.monotonic() - began < 80, "a request hung after the node was lost"
    failed = [a for a in answers if a.status_code != 200]
    assert failed, "no request was in flight on the worker node's replica"
    for answer in failed:
        assert answer.status_code == 502, answer.text
        assert answer.json()["type"] == "ReplicaLost"
        assert "spread" in answer.json()["error"]
    for answer in answers:
        if answer.status_code == 200:
            assert answer.json() == {"predictions": [head]}
    later = asyncio.run(
        post_all(f"{ray_front.url}/v1/models/spread:predict", [{"instances": [0]}] * 4)
    )
    assert [a.json() for a in later] == [{"predictions": [head]}] * 4, [a.text for a in later]
