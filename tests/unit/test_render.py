"""`zeroserve render`: every variant validates against KServe's real CRD; unexpressible specs fail.

Regenerate the golden files after an intended change with:
    ZEROSERVE_UPDATE_GOLDEN=1 pytest tests/unit/test_render.py
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import SAMPLES
from tests.kube_schemas import problems
from zeroserve import Batching, LLMEngine, UsageError
from zeroserve.cli.build import render_objects
from zeroserve.spec.spec import PredictorSpec, config_map, secret
from zeroserve.targets.kserve.render import MAX_NAME, RenderOptions, render_inference_service

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
OPTIONS = RenderOptions(namespace="models", code_uri="s3://bucket/zs/m-code@sha256:" + "a" * 64)

VARIANTS = {
    "defaults": PredictorSpec(name="plain"),
    "gpu": PredictorSpec(name="llm", gpu=2, cpu="8", memory="48Gi", max_replicas=3),
    "batching": PredictorSpec(
        name="batched", concurrency=64, batching=Batching(max_batch_size=32, max_latency_ms=5)
    ),
    "warm": PredictorSpec(name="warm", min_replicas=2, max_replicas=10, scale_to_zero_after=30),
    "model-uri": PredictorSpec(
        name="remote", model_uri="s3://bucket/models/remote@v3", env={"OMP_NUM_THREADS": "2"}
    ),
    "no-resources": PredictorSpec(name="bare", cpu=None, memory=None),
    "cluster-values": PredictorSpec(
        name="refs",
        env={
            "API_KEY": secret("model-credentials", "api-key"),
            "REGION": config_map("model-settings", "region"),
            "LOG_LEVEL": "info",
        },
    ),
    "vllm": PredictorSpec(
        name="chat",
        model_uri="s3://bucket/models/chat@v1",
        gpu=2,
        memory="64Gi",
        llm=LLMEngine(max_model_len=8192, tensor_parallel_size=2, startup_timeout_s=1200),
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("image", [None, "registry.example.com/team/runtime:1.2"])
def test_every_variant_validates_against_the_crd(variant: str, image: str | None) -> None:
    options = RenderOptions(**{**OPTIONS.__dict__, "image": image, "service_account": "models"})
    isvc = render_inference_service(VARIANTS[variant], options)
    assert problems(isvc) == []
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] == VARIANTS[variant].min_replicas  # zero stays explicit
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert "storageUri" not in predictor["model"]  # no storage-initializer download
    assert predictor["model"].get("image") == image


def test_gpu_gets_resources_toleration_and_node_selector() -> None:
    predictor = render_inference_service(VARIANTS["gpu"], OPTIONS)["spec"]["predictor"]
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert predictor["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


def test_llm_gets_gpus_shared_memory_engine_arguments_and_a_long_startup_probe() -> None:
    predictor = render_inference_service(VARIANTS["vllm"], OPTIONS)["spec"]["predictor"]
    model = predictor["model"]
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "2"
    shm = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}
    assert shm in predictor["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in model["volumeMounts"]
    assert {"name": "model-cache", "mountPath": "/var/cache/zeroserve"} in model["volumeMounts"]
    env = {item["name"]: item.get("value") for item in model["env"]}
    args = env["ZEROSERVE_VLLM_ARGS"].split()
    assert args[args.index("--max-model-len") + 1] == "8192"
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    probe = model["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] == 1200


def test_knative_annotations_are_documented_keys() -> None:
    from tests.kube_schemas import SCHEMAS, require_schemas

    require_schemas()
    documented = (SCHEMAS / "knative" / "autoscaler.yaml").read_text()
    annotations = render_inference_service(VARIANTS["defaults"], OPTIONS)["metadata"]["annotations"]
    knative = {key.split("/", 1)[1] for key in annotations if key.startswith("autoscaling.")}
    assert knative == {
        "scale-to-zero-pod-retention-period",
        "target-burst-capacity",
        "initial-scale",
    }
    for key in knative:
        assert key in documented, key


def test_spec_digest_changes_with_the_spec() -> None:
    first = render_inference_service(VARIANTS["defaults"], OPTIONS)
    changed = render_inference_service(PredictorSpec(name="plain", max_replicas=2), OPTIONS)
    key = "zeroserve.dev/spec-digest"
    assert first["metadata"]["annotations"][key] != changed["metadata"]["annotations"][key]


@pytest.mark.parametrize(
    ("spec", "options", "needle"),
    [
        (PredictorSpec(name="a" * (MAX_NAME + 1)), OPTIONS, f"at most {MAX_NAME}"),
        (
            PredictorSpec(name="ok"),
            RenderOptions(namespace="Team_A", code_uri="s3://b/c"),
            "not a DNS-1123 label",
        ),
        (PredictorSpec(name="ok"), RenderOptions(), "no code artifact URI"),
        (
            PredictorSpec(name="ok"),
            RenderOptions(code_uri="s3://b/c", image="Not An Image"),
            "not an image reference",
        ),
        (PredictorSpec(name="ok", env={"ZEROSERVE_CODE_URI": "x"}), OPTIONS, "zeroserve sets"),
        (
            PredictorSpec(name="ok", env={"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI"}),
            OPTIONS,
            r"look like credentials but are written inline.*zeroserve.secret\('NAME', 'KEY'\)",
        ),
        (PredictorSpec(name="ok", env={"db_password": "hunter2"}), OPTIONS, "like credentials"),
        (
            PredictorSpec(name="ok", batching=Batching(max_batch_size=32)),
            OPTIONS,
            "set concurrency >= 32",
        ),
    ],
)
def test_unexpressible_specs_fail_with_a_clear_message(
    spec: PredictorSpec, options: RenderOptions, needle: str
) -> None:
    with pytest.raises(UsageError, match=needle):
        render_inference_service(spec, options)


def test_iris_sample_matches_its_golden_file(tmp_path: Path) -> None:
    source = tmp_path / "iris"
    source.mkdir()
    for name in ("model.py", "train.py"):  # the sample as committed, without trained weights
        shutil.copy(SAMPLES / "iris" / name, source / name)
    objects = render_objects(
        str(source / "model.py"),
        namespace="default",
        image=None,
        repository="s3://my-bucket/zeroserve",
        service_account="zeroserve-model",
    )
    for obj in objects:
        assert problems(obj) == []
    rendered = yaml.safe_dump_all(objects, sort_keys=False)
    golden = GOLDEN / "iris.yaml"
    if os.environ.get("ZEROSERVE_UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert rendered == golden.read_text(), (
        "run ZEROSERVE_UPDATE_GOLDEN=1 pytest tests/unit/test_render.py"
    )


def test_values_kept_in_the_cluster_are_rendered_as_references_never_values() -> None:
    isvc = render_inference_service(VARIANTS["cluster-values"], OPTIONS)
    env = {item["name"]: item for item in isvc["spec"]["predictor"]["model"]["env"]}
    assert env["API_KEY"] == {
        "name": "API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "model-credentials", "key": "api-key"}},
    }
    assert env["REGION"]["valueFrom"] == {
        "configMapKeyRef": {"name": "model-settings", "key": "region"}
    }
    assert env["LOG_LEVEL"] == {"name": "LOG_LEVEL", "value": "info"}


@pytest.mark.parametrize(
    ("name", "key"), [("Not_A_Name", "k"), ("ok", "has space"), ("", "k"), ("ok", "")]
)
def test_a_bad_cluster_value_reference_fails_at_decoration(name: str, key: str) -> None:
    from zeroserve import SpecError, predictor

    with pytest.raises((SpecError, ValueError)):

        @predictor(name="refs", env={"API_KEY": secret(name, key)})
        class Refs:
            def predict(self, instances: list[int]) -> list[int]:
                return instances
