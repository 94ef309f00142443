"""Saved models served with no code: each built-in format, its schema, batching, --optimize onnx,
artifacts in S3, and the files that cannot be served. Models are trained here (no downloads)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
import yaml

from tests.conftest import MotoS3, RunningServer, run_zeroserve, start_server, wait_ready

pytestmark = pytest.mark.timeout(300)
NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def iris() -> tuple[Any, np.ndarray]:
    import pandas as pd
    from sklearn.datasets import load_iris

    rows, labels = load_iris(return_X_y=True)
    return pd.DataFrame(rows, columns=NAMES), labels


def framed(rows: list[list[float]]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows, columns=NAMES)


def save_models(folder: Path) -> dict[str, Any]:
    """One model per format, each saved as its library saves it; the fitted objects by name."""
    import lightgbm
    import skops.io
    import xgboost
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    frame, labels = iris()
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(frame, labels)
    joblib.dump(forest, folder / "forest.joblib")
    logistic = LogisticRegression(max_iter=500).fit(frame.values, labels)
    skops.io.dump(logistic, folder / "logistic.skops")
    boosted = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(frame, labels)
    boosted.get_booster().save_model(folder / "boosted.json")
    regression = lightgbm.LGBMRegressor(n_estimators=20, verbose=-1)
    regression.fit(frame.values[:, :3], frame.values[:, 3])
    regression.booster_.save_model(folder / "petal-width.txt")
    converted = to_onnx(logistic, frame.values[:1].astype(np.float32), target_opset=17)
    (folder / "linear.onnx").write_bytes(converted.SerializeToString())
    return {"forest": forest, "logistic": logistic, "boosted": boosted, "petal-width": regression}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("saved")
    return folder, save_models(folder)


@pytest.fixture(scope="module")
def server(
    saved: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("log") / "saved.log"
    running = start_server(saved[0], log)
    try:
        assert running.process.poll() is None, running.log()
        yield running
    finally:
        running.stop()


def predict(server: RunningServer, model: str, body: dict[str, Any]) -> httpx.Response:
    wait_ready(server, model)
    return httpx.post(f"{server.url}/v1/models/{model}:predict", json=body, timeout=30)


def test_each_format_answers_as_its_library_does(
    server: RunningServer, saved: tuple[Path, dict[str, Any]]
) -> None:
    fitted = saved[1]
    rows = np.asarray(ROWS)
    expected = {
        "forest": fitted["forest"].predict(framed(ROWS)).tolist(),
        "logistic": fitted["logistic"].predict(rows).tolist(),
        "boosted": fitted["boosted"].predict(framed(ROWS)).tolist(),
        "linear": fitted["logistic"].predict(rows).tolist(),
    }
    for model, labels in expected.items():
        answer = predict(server, model, {"instances": ROWS})
        assert answer.status_code == 200, (model, answer.text, server.log_gist())
        assert answer.json() == {"predictions": labels}, model
    values = predict(server, "petal-width", {"instances": [row[:3] for row in ROWS]}).json()
    wanted = fitted["petal-width"].predict(rows[:, :3])
    assert np.allclose(values["predictions"], wanted), values


def test_probabilities_per_request_and_named_features(
    server: RunningServer, saved: tuple[Path, dict[str, Any]]
) -> None:
    forest = saved[1]["forest"]
    body = {"instances": ROWS, "parameters": {"output": "probabilities"}}
    answer = predict(server, "forest", body)
    assert answer.status_code == 200, answer.text
    assert np.allclose(answer.json()["predictions"], forest.predict_proba(framed(ROWS)))
    named = [dict(zip(NAMES, row, strict=True)) for row in ROWS]
    assert predict(server, "forest", {"instances": named}).json() == {
        "predictions": forest.predict(framed(ROWS)).tolist()
    }
    assert predict(server, "boosted", {"instances": named[:1]}).status_code == 200


@pytest.mark.parametrize(
    ("model", "instances", "parameters", "says"),
    [
        ("forest", [[5.1, 3.5, 1.4]], None, "instances[0] has 3 features; the model expects 4"),
        ("forest", [ROWS[0], [1.0] * 5], None, "instances[1] has 5 features"),
        ("forest", [{"sepal_length": 5.1}], None, "missing sepal_width, petal_length"),
        (
            "forest",
            [{**dict(zip(NAMES, ROWS[0], strict=True)), "colour": 1.0}],
            None,
            "unknown colour",
        ),
        ("logistic", [{"a": 1.0}], None, "this model has no feature names"),
        ("petal-width", [[1.0, 2.0, 3.0]], {"output": "probabilities"}, "is a regressor"),
        ("linear", [[1.0, 2.0]], None, "has 2 features; the model expects 4"),
        ("boosted", [["a", 1, 2, 3]], None, "instances[0]"),
    ],
)
def test_a_request_the_model_cannot_take_gets_400_naming_it(
    server: RunningServer,
    model: str,
    instances: list[Any],
    parameters: dict[str, str] | None,
    says: str,
) -> None:
    body: dict[str, Any] = {"instances": instances}
    if parameters:
        body["parameters"] = parameters
    answer = predict(server, model, body)
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"], answer.json()


def test_v2_metadata_and_inference_with_kserves_client(server: RunningServer) -> None:
    import asyncio

    from kserve import InferenceRESTClient, InferInput, InferRequest
    from kserve.inference_client import RESTConfig

    wait_ready(server, "boosted")
    metadata = httpx.get(f"{server.url}/v2/models/boosted", timeout=10).json()
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]} in metadata["outputs"]

    async def infer() -> Any:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        tensor = InferInput("input", [2, 4], "FP32")
        tensor.set_data_from_numpy(np.asarray(ROWS[:2], dtype=np.float32))
        try:
            request = InferRequest(model_name="boosted", infer_inputs=[tensor])
            return await client.infer(server.url, request, model_name="boosted")
        finally:
            await client.close()

    response = asyncio.run(infer())
    assert response.outputs[0].data == [0, 2]


def test_batching_is_on_and_one_call_predicts_many_rows(server: RunningServer) -> None:
    wait_ready(server, "forest")
    status = httpx.get(f"{server.url}/zeroserve/status", timeout=10).json()
    forest = status["models"]["forest"]
    assert forest["batching"]["max_batch_size"] == 32, forest
    assert forest["concurrency_target"] == 32, forest  # a batch can fill before scaling out

    def one(_: int) -> int:
        body = {"instances": [ROWS[0]]}
        return httpx.post(
            f"{server.url}/v1/models/forest:predict", json=body, timeout=30
        ).status_code

    with ThreadPoolExecutor(32) as pool:
        assert set(pool.map(one, range(256))) == {200}
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    count = total = 0.0
    for line in metrics.splitlines():
        if line.startswith("zeroserve_batch_size_count") and 'model="forest"' in line:
            count = float(line.rsplit(" ", 1)[1])
        if line.startswith("zeroserve_batch_size_sum") and 'model="forest"' in line:
            total = float(line.rsplit(" ", 1)[1])
    assert count > 0, metrics
    assert total / count > 1, (count, total)  # concurrent rows shared calls


def test_optimize_onnx_answers_the_same_and_converts_once(
    saved: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("forest.joblib", "boosted.json", "petal-width.txt"):
        (folder / name).write_bytes((saved[0] / name).read_bytes())
    env = {**_env(), "ZEROSERVE_CACHE__ROOT": str(tmp_path / "cache")}
    for start in ("first", "second"):
        server = start_server(folder, tmp_path / f"{start}.log", "--optimize", "onnx", env=env)
        try:
            assert server.process.poll() is None, server.log()
            for model in ("forest", "boosted"):
                answer = predict(server, model, {"instances": ROWS})
                assert answer.json() == {"predictions": [0, 2, 1]}, (model, answer.text)
            metadata = httpx.get(f"{server.url}/v2/models/forest", timeout=10).json()
            assert metadata["inputs"][0]["datatype"] == "FP32"  # served by onnxruntime
            named = {"instances": [dict(zip(NAMES, ROWS[0], strict=True))]}
            assert predict(server, "forest", named).json() == {"predictions": [0]}
            width = predict(server, "petal-width", {"instances": [ROWS[0][:3]]}).json()
            assert np.allclose(width["predictions"], saved[1]["petal-width"].predict([ROWS[0][:3]]))
        finally:
            server.stop()
    assert "to ONNX" not in (tmp_path / "second.log").read_text()  # the cache had it
    assert len(list((tmp_path / "cache" / "derived").glob("*.json"))) == 3


def test_a_model_that_converts_wrongly_is_refused(saved: tuple[Path, dict[str, Any]]) -> None:
    from zeroserve.predictors.onnx_convert import disagreement, write_onnx
    from zeroserve.predictors.sklearn import SklearnPredictor

    original = SklearnPredictor()
    original.read(saved[0] / "forest.joblib")
    other = SklearnPredictor()
    other.read(saved[0] / "logistic.skops")
    converted = saved[0] / "other.onnx.tmp"
    write_onnx(other, "skops", converted)
    why = disagreement(original, converted)  # another model's conversion stands in for it
    assert why is not None
    assert "sample labels differ" in why, why
    write_onnx(original, "sklearn", converted)
    assert disagreement(original, converted) is None


def test_files_that_cannot_be_served_are_named_and_the_others_serve(
    saved: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.joblib").write_bytes((saved[0] / "forest.joblib").read_bytes())
    (folder / "garbage.onnx").write_bytes(b"not a model at all")
    (folder / "broken.json").write_text('{"not": "xgboost"}')
    (folder / "custom.pkl").write_bytes(_pickle_of_an_unknown_class(tmp_path))
    (folder / "net.pt2").write_bytes(b"PK\x03\x04")
    server = start_server(folder, tmp_path / "mixed.log")
    try:
        assert predict(server, "good", {"instances": ROWS[:1]}).status_code == 200
        log = server.log()
    finally:
        server.stop()
    assert "garbage.onnx is not a onnx model file: it is not an ONNX protobuf" in log
    assert "broken.json is not a xgboost model file: the JSON has no 'learner' object" in log
    assert "custom.pkl is not a sklearn model file: it refers to module 'private_models'" in log
    assert "net.pt2 is a torch model but torch is not installed; pip install torch" in log
    assert "Traceback" not in log


def _pickle_of_an_unknown_class(tmp_path: Path) -> bytes:
    module = tmp_path / "private" / "private_models.py"
    module.parent.mkdir()
    module.write_text("class Model:\n    def predict(self, rows):\n        return rows\n")
    script = (
        "import pickle, sys, private_models; "
        "sys.stdout.buffer.write(pickle.dumps(private_models.Model()))"
    )
    made = subprocess.run(
        [sys.executable, "-c", script], cwd=module.parent, capture_output=True, check=True
    )
    assert b"private_models" in made.stdout  # never unpickled here
    return made.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--format", "xgboost"], "forest.joblib is not a xgboost model file: it is not JSON"),
        (["--format", "lightgbm"], "does not start with LightGBM's 'tree'"),
    ],
)
def test_a_wrong_format_is_one_line_and_exit_2(
    saved: tuple[Path, dict[str, Any]], args: list[str], says: str
) -> None:
    result = run_zeroserve("serve", str(saved[0] / "forest.joblib"), *args, timeout=60)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_a_pushed_artifact_serves_and_renders_from_s3(
    saved: tuple[Path, dict[str, Any]], moto_s3: MotoS3, tmp_path: Path
) -> None:
    bucket = moto_s3.new_bucket()
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "model.json").write_bytes((saved[0] / "boosted.json").read_bytes())
    env = {**moto_s3.env, "ZEROSERVE_CACHE__ROOT": str(tmp_path / "cache")}
    push = ("push", str(artifact), f"s3://{bucket}/models", "--name", "churn", "--version", "v1")
    pushed = run_zeroserve(*push, "--framework", "xgboost==3.2", env=env)
    assert pushed.returncode == 0, pushed.stderr
    uri = f"s3://{bucket}/models/churn@v1"
    server = start_server(uri, tmp_path / "s3.log", env=env)
    try:
        answer = predict(server, "churn", {"instances": ROWS})
        assert answer.json() == {"predictions": [0, 2, 1]}, answer.text
    finally:
        server.stop()
    rendered = run_zeroserve("render", uri, "--repository", f"s3://{bucket}/code", env=env)
    assert rendered.returncode == 0, rendered.stderr
    isvc = yaml.safe_load(rendered.stdout)
    assert isvc["metadata"]["name"] == "churn"
    assert json.dumps(isvc).count(f"s3://{bucket}/models/churn@sha256:") >= 1, rendered.stdout


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_a_pushed_artifact_deploys_as_an_inference_service(
    saved: tuple[Path, dict[str, Any]],
    apiserver: Any,
    deploy_env: dict[str, str],
    moto_s3: MotoS3,
    tmp_path: Path,
) -> None:
    bucket = deploy_env["ZEROSERVE_REPOSITORY"].split("/")[2]
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "model.txt").write_bytes((saved[0] / "petal-width.txt").read_bytes())
    push = ("push", str(artifact), f"s3://{bucket}/models", "--name", "petals", "--version", "v1")
    assert run_zeroserve(*push, env=deploy_env).returncode == 0
    deployed = run_zeroserve("deploy", f"s3://{bucket}/models/petals@v1", env=deploy_env)
    assert deployed.returncode == 0, deployed.stderr
    assert "inferenceservice/petals applied in default" in deployed.stdout
    got = apiserver.kubectl("get", "isvc", "petals", "-n", "default", "-o", "json")
    assert got.returncode == 0, got.stderr
    assert f"s3://{bucket}/models/petals@sha256:" in got.stdout  # weights pinned by digest
    # the pod's runtime image has scikit-learn, not LightGBM: the code artifact locks it, and
    # the pod installs it once into the cache's environments
    client = moto_s3.client()
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"]]
    (lock_key,) = [key for key in keys if key.endswith("requirements.lock")]
    lock = client.get_object(Bucket=bucket, Key=lock_key)["Body"].read().decode()
    assert lock.startswith("lightgbm=="), lock


def test_a_model_on_a_mounted_volume_and_a_ubj_booster_serve(
    saved: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    import xgboost

    claim = tmp_path / "volumes" / "claim" / "models"
    claim.mkdir(parents=True)
    booster = xgboost.Booster()
    booster.load_model(saved[0] / "boosted.json")
    booster.save_model(claim / "boosted.ubj")
    env = {**_env(), "ZEROSERVE_PVC_ROOT": str(tmp_path / "volumes")}
    server = start_server("pvc://claim/models/boosted.ubj", tmp_path / "pvc.log", env=env)
    try:
        answer = predict(server, "boosted", {"instances": ROWS})
        assert answer.json() == {"predictions": [0, 2, 1]}, (answer.text, server.log_gist())
    finally:
        server.stop()
