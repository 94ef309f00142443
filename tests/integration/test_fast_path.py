"""The fast path answers exactly as KServe's app does: two `--direct` servers on the same models,
one with the fast path and one without (ZEROSERVE_SERVER__FAST_PATH=false), get the same
requests; status, content type and JSON body must match for each, and KServe's request metrics
count the fast path's answers too."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import FIXTURES, RunningServer, start_server, wait_ready

pytestmark = pytest.mark.timeout(180)
MODELS = ("echo", "failing", "async-double", "iris")
JSON = {"Content-Type": "application/json"}


def tensor(name: str, shape: list[int], datatype: str, data: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


CASES: list[tuple[str, str, dict[str, str], bytes]] = [
    (
        "v1 echo",
        "/v1/models/echo:predict",
        JSON,
        b'{"instances": [0.1, 1e-7, "\\u00e9", [1, {"a": null}]]}',
    ),
    ("v1 failing raises", "/v1/models/failing:predict", JSON, b'{"instances": ["boom"]}'),
    ("v1 wrong type", "/v1/models/failing:predict", JSON, b'{"instances": [1, 2]}'),
    ("v1 no instances", "/v1/models/echo:predict", JSON, b'{"inputs": [1]}'),
    ("v1 not json", "/v1/models/echo:predict", JSON, b'{"instances": [1,'),
    ("v1 array body", "/v1/models/echo:predict", JSON, b"[1, 2]"),
    ("v1 instances not a list", "/v1/models/echo:predict", JSON, b'{"instances": {"a": 1}}'),
    (
        "v1 parameters",
        "/v1/models/echo:predict",
        JSON,
        b'{"instances": [1], "parameters": {"x": 1}}',
    ),
    (
        "v1 text/plain",
        "/v1/models/echo:predict",
        {"Content-Type": "text/plain"},
        b'{"instances": [1]}',
    ),
    (
        "v1 charset",
        "/v1/models/echo:predict",
        {"Content-Type": "application/json; charset=utf-8"},
        b'{"instances": [2]}',
    ),
    ("v1 unknown model", "/v1/models/nobody:predict", JSON, b'{"instances": [1]}'),
    (
        "v1 iris",
        "/v1/models/iris:predict",
        JSON,
        b'{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}',
    ),
]
V2_BODIES: list[tuple[str, str, dict[str, Any]]] = [
    ("v2 int64", "async-double", {"id": "a", "inputs": [tensor("x", [3], "INT64", [1, 2, 3])]}),
    ("v2 fp32 echo", "echo", {"id": "b", "inputs": [tensor("x", [3], "FP32", [0.1, 1e-7, 3])]}),
    (
        "v2 nested data",
        "echo",
        {"id": "c", "inputs": [tensor("x", [2, 2], "FP64", [[1, 2], [3, 4]])]},
    ),
    ("v2 bytes", "failing", {"id": "d", "inputs": [tensor("x", [2], "BYTES", ["a", "b"])]}),
    ("v2 bytes boom", "failing", {"id": "e", "inputs": [tensor("x", [1], "BYTES", ["boom"])]}),
    ("v2 shape mismatch", "echo", {"id": "f", "inputs": [tensor("x", [4], "FP32", [1, 2])]}),
    ("v2 wrong type", "async-double", {"id": "g", "inputs": [tensor("x", [2], "FP32", [1.5, 2])]}),
    (
        "v2 outputs asked",
        "echo",
        {"id": "h", "inputs": [tensor("x", [1], "INT32", [1])], "outputs": [{"name": "output-0"}]},
    ),
    ("v2 integer id", "echo", {"id": 5, "inputs": [tensor("x", [1], "INT32", [1])]}),
    (
        "v2 binary output",
        "echo",
        {
            "id": "i",
            "inputs": [tensor("x", [1], "INT32", [1])],
            "parameters": {"binary_data_output": True},
        },
    ),
    ("v2 no inputs", "echo", {"id": "j", "inputs": []}),
    (
        "v2 two inputs",
        "echo",
        {"id": "k", "inputs": [tensor("x", [1], "INT32", [1]), tensor("y", [1], "INT32", [2])]},
    ),
    ("v2 bool", "echo", {"id": "l", "inputs": [tensor("x", [2], "BOOL", [True, False])]}),
    (
        "v2 iris",
        "iris",
        {"id": "m", "inputs": [tensor("flowers", [1, 4], "FP64", [5.1, 3.5, 1.4, 0.2])]},
    ),
    ("v2 no id", "async-double", {"inputs": [tensor("x", [1], "INT64", [4])]}),
    (
        "v2 unknown parameter",
        "echo",
        {"id": "n", "inputs": [tensor("x", [1], "INT32", [1])], "parameters": {"x": 1}},
    ),
    ("v2 parameters not an object", "echo", {"id": "o", "inputs": [], "parameters": [1]}),
]
CASES += [
    (name, f"/v2/models/{model}/infer", JSON, orjson.dumps(body)) for name, model, body in V2_BODIES
]


@pytest.fixture(scope="module")
def folder(iris_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    for name in ("echo", "failing", "async_double"):
        (models / f"{name}.py").write_text((FIXTURES / "predictors" / f"{name}.py").read_text())
    (models / "iris.py").write_text((iris_dir / "model.py").read_text())
    (models / "model.joblib").write_bytes((iris_dir / "model.joblib").read_bytes())
    return models


@pytest.fixture(scope="module")
def servers(
    folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, RunningServer]]:
    logs = tmp_path_factory.mktemp("logs")
    started = {}
    try:
        for path, fast in (("fast", "true"), ("app", "false")):
            env = {**os.environ, "ZEROSERVE_SERVER__FAST_PATH": fast}
            started[path] = start_server(folder, logs / f"{path}.log", "--direct", env=env)
            for model in MODELS:
                wait_ready(started[path], model)
        yield started
    finally:
        for server in started.values():
            server.stop()


def answer(
    server: RunningServer, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, str, Any]:
    response = httpx.post(f"{server.url}{path}", headers=headers, content=body, timeout=30)
    try:
        decoded = response.json()
    except ValueError:
        decoded = response.text
    if isinstance(decoded, dict) and "model_name" in decoded and not orjson.loads(body).get("id"):
        decoded["id"] = "generated"  # a fresh uuid on each path
    return response.status_code, response.headers.get("content-type", ""), decoded


@pytest.mark.parametrize(
    ("case", "path", "headers", "body"), CASES, ids=[case[0] for case in CASES]
)
def test_each_request_gets_the_same_answer_on_both_paths(
    servers: dict[str, RunningServer], case: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    fast = answer(servers["fast"], path, headers, body)
    app = answer(servers["app"], path, headers, body)
    assert fast == app, case


def test_the_fast_path_answers_and_kserve_metrics_count_it(
    servers: dict[str, RunningServer],
) -> None:
    server = servers["fast"]
    before = predict_count(server, "async-double")
    body = {"inputs": [tensor("x", [1], "INT64", [1])]}
    for _ in range(3):
        response = httpx.post(f"{server.url}/v2/models/async-double/infer", json=body, timeout=30)
        assert response.status_code == 200, response.text
    httpx.post(f"{server.url}/v1/models/async-double:predict", json={"instances": [1]}, timeout=30)
    assert predict_count(server, "async-double") == before + 4
    # KServe's app logs a timing line per request it routes; the fast path's v2 answers have none
    assert "kserve.io.v2.models.async-double.infer" not in server.log()
    app = servers["app"]
    httpx.post(f"{app.url}/v2/models/async-double/infer", json=body, timeout=30)
    assert "kserve.io.v2.models.async-double.infer" in app.log()


def predict_count(server: RunningServer, model: str) -> float:
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        if line.startswith("request_predict_seconds_count") and f'model_name="{model}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_per_request_log_lines_only_with_access_log(
    servers: dict[str, RunningServer], folder: Path, tmp_path: Path
) -> None:
    """Off by default: no line per request. With --access-log: uvicorn's access line and
    KServe's latency line for each answer, fast path or not."""
    quiet = servers["fast"]
    logged = start_server(folder, tmp_path / "logged.log", "--direct", "--access-log")
    try:
        for model in MODELS:
            wait_ready(logged, model)
        for server in (quiet, logged):
            for path, body in (
                ("/v1/models/iris:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]}),
                ("/v1/models/echo:predict", {"instances": [1]}),
            ):
                response = httpx.post(f"{server.url}{path}", json=body, timeout=30)
                assert response.status_code == 200, response.text
        lines = logged.log().splitlines()
        access = [line for line in lines if "uvicorn.access" in line and ":predict" in line]
        latency = [line for line in lines if "kserve.trace" in line and "predict_ms" in line]
        assert len(access) == 2, logged.log()[-2000:]
        assert len(latency) == 2, logged.log()[-2000:]
        assert "uvicorn.access" not in quiet.log()
        assert "predict_ms" not in quiet.log()
    finally:
        logged.stop()


def test_kserves_rest_client_gets_the_same_answers_on_both_paths(
    servers: dict[str, RunningServer],
) -> None:
    import asyncio

    import numpy as np
    from kserve import InferenceRESTClient, InferInput, InferRequest
    from kserve.inference_client import RESTConfig

    flowers = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]

    async def ask(url: str) -> tuple[Any, Any]:
        v1 = InferenceRESTClient(RESTConfig(protocol="v1", timeout=30))
        v2 = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        tensor = InferInput("flowers", [2, 4], "FP64")
        tensor.set_data_from_numpy(np.asarray(flowers, dtype=np.float64))
        try:
            by_v1 = await v1.infer(url, {"instances": flowers}, model_name="iris")
            request = InferRequest(model_name="iris", infer_inputs=[tensor], request_id="r1")
            by_v2 = await v2.infer(url, request, model_name="iris")
        finally:
            await v1.close()
            await v2.close()
        output = by_v2.outputs[0]
        return by_v1, (by_v2.model_name, by_v2.id, output.name, output.datatype, output.data)

    fast = asyncio.run(ask(servers["fast"].url))
    app = asyncio.run(ask(servers["app"].url))
    assert fast == app
    assert fast[0] == {"predictions": [0, 2]}


ONE_INT = tensor("x", [1], "INT32", [1])


@pytest.mark.parametrize(
    ("path", "body", "extra"),
    [
        ("/v1/models/iris:predict", b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}', {}),
        ("/v2/models/echo/infer", orjson.dumps({"id": "x", "inputs": [ONE_INT]}), {}),
        ("/v1/models/failing:predict", b'{"instances": ["boom"]}', {}),
        ("/v1/models/echo:predict", b'{"instances": [1]}', {"Connection": "close"}),
    ],
    ids=["v1", "v2", "error", "connection-close"],
)  # fmt: skip
def test_the_hot_route_writes_the_heads_the_app_writes(
    servers: dict[str, RunningServer], path: str, body: bytes, extra: dict[str, str]
) -> None:
    """The fast path's answers, written by the HTTP layer (serving/hot_route.py), carry the
    same status line and headers, in the same order, as the app's answers to the same request."""
    heads = []
    for server in (servers["fast"], servers["app"]):
        response = httpx.post(
            f"{server.url}{path}", content=body, headers={**JSON, **extra}, timeout=30
        )
        fields = [(k, v) for k, v in response.headers.raw if k.lower() != b"date"]
        heads.append((response.status_code, response.reason_phrase, fields, response.content))
    assert heads[0] == heads[1]
