"""What a cluster pod serves: the weights pinned when the InferenceService was rendered (not the
newest push), and only the predictor its InferenceService names. Against moto S3 on 127.0.0.1,
with the pod's runtime (`zeroserve serve --direct`) given the environment `render` writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import MotoS3, run_zeroserve, start_server, wait_ready

pytestmark = pytest.mark.integration
OTHER = """
@predictor(name="other")
class Other:
    def predict(self, instances: list[float]) -> list[float]:
        return instances
"""
SCALER = """
from pathlib import Path

from zeroserve import predictor


@predictor(name="scaler", model_uri="s3://BUCKET/models/scaler")  # newest version
class Scaler:
    def load(self, model_dir: Path) -> None:
        self.factor = float((model_dir / "scale.txt").read_text())

    def predict(self, instances: list[float]) -> list[float]:
        return [value * self.factor for value in instances]

"""


def push_version(moto: MotoS3, root: Path, bucket: str, version: str, factor: str) -> None:
    weights = root / f"weights-{version}"
    weights.mkdir()
    (weights / "scale.txt").write_text(factor)
    subprocess.run(
        [sys.executable, "-m", "zeroserve", "push", str(weights), f"s3://{bucket}/models",
         "--name", "scaler", "--version", version],
        env=moto.env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def rendered_env(moto: MotoS3, model: Path, bucket: str) -> tuple[dict[str, Any], str]:
    """The scaler InferenceService's model env, and its spec digest."""
    rendered = run_zeroserve(
        "render", str(model), "--repository", f"s3://{bucket}/code", env=moto.env
    )
    assert rendered.returncode == 0, rendered.stderr
    (isvc,) = [o for o in yaml.safe_load_all(rendered.stdout) if o["metadata"]["name"] == "scaler"]
    env = {item["name"]: item.get("value") for item in isvc["spec"]["predictor"]["model"]["env"]}
    return env, isvc["metadata"]["annotations"]["zeroserve.dev/spec-digest"]


@pytest.mark.timeout(240)
def test_a_pod_loads_the_weights_pinned_at_render_and_serves_only_its_predictor(
    moto_s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zeroserve.coldstart import resolve

    for key, value in moto_s3.env.items():
        monkeypatch.setenv(key, value)
    bucket = moto_s3.new_bucket()
    model = tmp_path / "code" / "scaler.py"
    model.parent.mkdir()
    model.write_text(SCALER.replace("BUCKET", bucket) + OTHER)
    push_version(moto_s3, tmp_path, bucket, "v1", "3")
    first, first_digest = rendered_env(moto_s3, model, bucket)
    v1 = resolve(f"s3://{bucket}/models/scaler@v1").digest
    assert first["ZEROSERVE_POD__MODEL_URI"] == f"s3://{bucket}/models/scaler@{v1}"
    assert first["ZEROSERVE_POD__INFERENCE_SERVICE"] == "scaler"

    push_version(moto_s3, tmp_path, bucket, "v2", "5")  # pushed after the deploy
    second, second_digest = rendered_env(moto_s3, model, bucket)
    v2 = resolve(f"s3://{bucket}/models/scaler@v2").digest
    assert second["ZEROSERVE_POD__MODEL_URI"] == f"s3://{bucket}/models/scaler@{v2}"
    assert second_digest != first_digest  # a new pin is a new revision

    pod_env = {
        **moto_s3.env,
        "ZEROSERVE_CACHE__ROOT": str(tmp_path / "cache"),
        "ZEROSERVE_POD__INFERENCE_SERVICE": "scaler",
        "ZEROSERVE_POD__MODEL_URI": first["ZEROSERVE_POD__MODEL_URI"],
    }
    pod = start_server(model.parent, tmp_path / "pod.log", "--direct", env=pod_env)
    try:
        wait_ready(pod, "scaler")
        answer = httpx.post(f"{pod.url}/v1/models/scaler:predict", json={"instances": [1, 2]})
        other = httpx.get(f"{pod.url}/v1/models/other")
    finally:
        pod.stop()
    assert answer.json() == {"predictions": [3.0, 6.0]}  # v1's weights, though v2 is newest
    assert other.status_code == 404  # the folder's other predictor is not served here
    # weights pinned by digest come from a warm cache alone: the store is not asked
    store_down = {**pod_env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    again = start_server(model.parent, tmp_path / "again.log", "--direct", env=store_down)
    try:
        wait_ready(again, "scaler")
        answer = httpx.post(f"{again.url}/v1/models/scaler:predict", json={"instances": [1, 2]})
    finally:
        again.stop()
    assert answer.json() == {"predictions": [3.0, 6.0]}


def test_a_pod_whose_inference_service_names_no_predictor_says_so(
    moto_s3: MotoS3, tmp_path: Path
) -> None:
    model = tmp_path / "other.py"
    model.write_text("from zeroserve import predictor\n\n" + OTHER)
    env = {**moto_s3.env, "ZEROSERVE_POD__INFERENCE_SERVICE": "scaler"}
    pod = start_server(model, tmp_path / "pod.log", "--direct", env=env)
    assert pod.process.wait(timeout=60) == 2
    assert (
        "the code has no @predictor named 'scaler' (it has: other); deploy the model again"
    ) in pod.log()


def test_a_pod_whose_cache_volume_is_not_writable_says_so_and_exits_4(tmp_path: Path) -> None:
    """/proc refuses new folders even to root: a volume the pod's user cannot write."""
    code_uri = "s3://bucket/code/x-code@sha256:" + "a" * 64
    done = run_zeroserve(
        "serve", code_uri, "--direct", env={**os.environ, "ZEROSERVE_CACHE__ROOT": "/proc/zs-cache"}
    )
    assert done.returncode == 4
    assert done.stderr.strip().splitlines() == [
        f"error: the cache folder /proc/zs-cache is not writable by uid {os.getuid()} (No such "
        "file or directory); mount a volume this user may write there (a pod's fsGroup, or the "
        "volume's own permissions) or set ZEROSERVE_CACHE__ROOT"
    ]
