"""Drift end to end: push with a reference sample (moto S3), serve, feed the reference and then a
shifted distribution, and watch the flag in the drift route, /metrics and `status --local`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris

from tests.conftest import MotoS3, RunningServer, run_zeroserve, start_server, wait_ready


def send(server: RunningServer, rows: list[list[float]]) -> None:
    for start in range(0, len(rows), 25):
        answer = httpx.post(
            f"{server.url}/v1/models/iris:predict",
            json={"instances": rows[start : start + 25]},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text


def drift(server: RunningServer) -> dict[str, dict[str, object]]:
    report = httpx.get(f"{server.url}/zeroserve/models/iris/drift", timeout=10).json()
    assert report["profile"] is True
    return {feature["name"]: feature for feature in report["features"]}


def test_reference_stays_down_and_a_shift_is_flagged(
    moto_s3: MotoS3, iris_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "iris"
    shutil.copytree(iris_dir, folder)
    features = load_iris().data.tolist()
    (tmp_path / "sample.json").write_text(json.dumps({"instances": features}))
    bucket = moto_s3.new_bucket()
    pushed = run_zeroserve(
        *("push", str(folder), f"s3://{bucket}/models", "--name", "iris", "--version", "v1"),
        *("--reference", str(tmp_path / "sample.json")),
        env=moto_s3.env,
    )
    assert pushed.returncode == 0, pushed.stderr
    assert (folder / "zeroserve-reference.json").is_file()
    listed = run_zeroserve("models", "ls", f"s3://{bucket}/models/iris", env=moto_s3.env)
    assert "v1" in listed.stdout

    server = start_server(f"{folder / 'model.py'}:Iris", tmp_path / "serve.log")
    try:
        wait_ready(server, "iris")
        send(server, features)
        assert not any(feature["drifted"] for feature in drift(server).values())
        shifted = [[value + 3.0 for value in row] for row in features]
        send(server, shifted + shifted)
        flagged = drift(server)
        assert all(feature["drifted"] for feature in flagged.values()), flagged
        metrics = httpx.get(f"{server.url}/metrics").text
        status = run_zeroserve("status", "--local", "--url", server.url, "iris")
    finally:
        server.stop()
    drifted = {
        sample.labels["feature"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "zeroserve_feature_drifted" and sample.labels.get("model") == "iris"
    }
    assert drifted == {"0": 1.0, "1": 1.0, "2": 1.0, "3": 1.0}
    outputs = [
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "zeroserve_prediction_outputs_total"
        and sample.labels.get("model") == "iris"
    ]
    assert sum(outputs) == 3 * len(features)
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("DRIFTED") == 4
