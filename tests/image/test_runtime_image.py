"""The runtime image is real and the rendered pod runs from it (tox -e image).

`hack/runtime-image.sh` builds manifests/runtime/Dockerfile with buildah on a Debian base made by
debootstrap (no registry is reachable here). A "pod" is the kit's runtime container (command,
args, env, user) with the rendered InferenceService's env, run inside that image by
`buildah run --isolation chroot`, its cache volume a host folder, against moto S3 on 127.0.0.1
(the pods share this machine's network, so each gets its own port in place of 8080; nothing else
of the manifest changes). `podman run` cannot run here (its OCI runtime cannot set rlimits).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import MANIFESTS, SAMPLES, MotoS3, free_port, run_zeroserve
from tests.integration.test_dependencies import make_wheel

IMAGE = os.environ.get("ZEROSERVE_RUNTIME_IMAGE", "localhost/zeroserve-runtime:ci")
BUILDAH = shutil.which("buildah")
MODEL = """
from pathlib import Path

import zs_tinydep

from zeroserve import predictor


@predictor(name="scaler", model_uri="s3://BUCKET/models/scaler")
class Scaler:
    def load(self, model_dir: Path) -> None:
        self.factor = float((model_dir / "scale.txt").read_text()) * zs_tinydep.FACTOR

    def predict(self, instances: list[float]) -> list[float]:
        return [value * self.factor for value in instances]
"""


def image_exists(name: str) -> bool:
    assert BUILDAH
    return subprocess.run([BUILDAH, "inspect", "--type", "image", name],
                          capture_output=True, check=False).returncode == 0  # fmt: skip


pytestmark = [
    pytest.mark.skipif(BUILDAH is None, reason="needs buildah (hack/runtime-image.sh installs it)"),
    pytest.mark.skipif(
        BUILDAH is not None and not image_exists(IMAGE),
        reason=f"no image {IMAGE}: run hack/runtime-image.sh (tox -e image does)",
    ),
]


class Pod:
    """One container run inside an image by buildah, stopped (and removed) by ``stop``."""

    def __init__(self, image: str, argv: list[str], env: dict[str, str], mounts: dict[Path, str],
                 log: Path, user: str = "10001") -> None:  # fmt: skip
        assert BUILDAH
        self.container = subprocess.run([BUILDAH, "from", "--quiet", image], capture_output=True,
                                         text=True, check=True).stdout.strip()  # fmt: skip
        command = [BUILDAH, "run", "--isolation", "chroot", "--user", user]
        for host, inside in mounts.items():
            command += ["--volume", f"{host}:{inside}"]
        for key, value in env.items():
            command += ["--env", f"{key}={value}"]
        self.log = log
        with log.open("w") as output:
            self.process = subprocess.Popen([*command, self.container, "--", *argv],
                                            stdout=output, stderr=subprocess.STDOUT,
                                            start_new_session=True)  # fmt: skip

    def wait_ready(self, url: str, timeout: float = 180) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-4000:]
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"not ready at {url}:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        assert BUILDAH
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        subprocess.run([BUILDAH, "rm", self.container], capture_output=True, check=False)


def pod_container(isvc: dict[str, Any], port: int) -> tuple[list[str], dict[str, str]]:
    """The argv and env of the pod KServe makes: the kit runtime's container, the model's env
    over the runtime's, $(VAR) expanded as the kubelet does; the port made this pod's own."""
    runtime = yaml.safe_load((MANIFESTS / "base" / "clusterservingruntime.yaml").read_text())
    container = runtime["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    env |= {item["name"]: item["value"] for item in isvc["spec"]["predictor"]["model"]["env"]}
    argv = [*container["command"], *container["args"]]
    argv = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in argv]
    argv[argv.index("--port") + 1] = str(port)
    assert container["securityContext"]["runAsUser"] == 10001
    return argv, env


@pytest.fixture
def deployed(moto_s3: MotoS3, tmp_path: Path) -> dict[str, Any]:
    """A model whose weights (scale 3) are on moto and whose code locks zs-tinydep (FACTOR 7):
    pushed, packaged, and its InferenceService rendered."""
    bucket = moto_s3.new_bucket()
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "scale.txt").write_text("3")
    subprocess.run([sys.executable, "-m", "zeroserve", "push", str(weights),
                    f"s3://{bucket}/models", "--name", "scaler", "--version", "v1"],
                   env=moto_s3.env, check=True, capture_output=True, timeout=120)  # fmt: skip
    wheels = tmp_path / "wheels"
    make_wheel(wheels)
    here = tmp_path / "installed-here"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links",
                    str(wheels), "--target", str(here), "zs-tinydep"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    code = tmp_path / "scaler"
    code.mkdir()
    (code / "model.py").write_text(MODEL.replace("BUCKET", bucket))
    (code / "requirements.txt").write_text("zs-tinydep\n")
    env = {**moto_s3.env, "PYTHONPATH": str(here)}
    repository = f"s3://{bucket}/code"
    assert run_zeroserve("package", str(code), "--repository", repository, env=env).returncode == 0
    rendered = run_zeroserve("render", str(code), "--repository", repository, "-o", "json", env=env)
    assert rendered.returncode == 0, rendered.stderr
    return {"isvc": json.loads(rendered.stdout), "wheels": wheels, "moto": moto_s3}


@pytest.fixture
def pods() -> Iterator[list[Pod]]:
    started: list[Pod] = []
    yield started
    for pod in started:
        pod.stop()


@pytest.mark.timeout(600)
def test_two_rendered_pods_share_one_cache_and_fetch_and_install_once(
    deployed: dict[str, Any], pods: list[Pod], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"  # the shared volume, as the pod's user may write it (fsGroup)
    cache.mkdir()
    os.chown(cache, 10001, 10001)
    ports = [free_port(), free_port()]
    for number, port in enumerate(ports):
        argv, env = pod_container(deployed["isvc"], port)
        # what the zeroserve-storage Secret gives the runtime: the store's AWS_* settings
        env |= {k: v for k, v in deployed["moto"].env.items() if k.startswith("AWS_")}
        env |= {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/wheels", "HOSTNAME": f"pod-{number}"}
        mounts = {cache: "/var/cache/zeroserve", deployed["wheels"]: "/wheels"}
        pods.append(Pod(IMAGE, argv, env, mounts, tmp_path / f"pod{number}.log"))
    for pod, port in zip(pods, ports, strict=True):
        pod.wait_ready(f"http://127.0.0.1:{port}/v2/models/scaler/ready")
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/models/scaler:predict",
                            json={"instances": [1, 2]}, timeout=30)  # fmt: skip
        assert answer.json() == {"predictions": [21.0, 42.0]}  # 3 from S3 x 7 from the package
    logs = [pod.log.read_text() for pod in pods]
    # started together: each object fetched by one pod, the other found it in the cache
    for kind in ("code artifact", "model s3://"):
        fetched = [log for log in logs if re.search(rf"{kind}.*: fetched \d+ bytes", log)]
        assert len(fetched) == 1, logs
    assert sum(log.count("built the environment") for log in logs) == 1, logs
    environments = [p for p in (cache / "environments").iterdir() if p.is_dir()]
    assert len(environments) == 1


@pytest.mark.timeout(600)
def test_the_dockerfile_zeroserve_build_writes_builds_on_the_runtime_and_serves(
    pods: list[Pod], tmp_path: Path
) -> None:
    assert BUILDAH
    iris = tmp_path / "iris"
    shutil.copytree(SAMPLES / "iris", iris)
    subprocess.run([sys.executable, str(iris / "train.py")], check=True, capture_output=True,
                   timeout=120, cwd=iris)  # fmt: skip
    context = tmp_path / "context"
    written = run_zeroserve("build", f"{iris / 'model.py'}:Iris", "--output", str(context))
    assert written.returncode == 0, written.stderr
    assert "zeroserve==" not in (context / "Dockerfile").read_text()  # nothing from PyPI
    built = subprocess.run(
        [BUILDAH, "bud", "--isolation", "chroot", "--quiet", "--build-arg", f"RUNTIME={IMAGE}",
         "-t", "localhost/zeroserve-iris:ci", str(context)],
        capture_output=True, text=True, timeout=540, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    port = free_port()
    entrypoint = json.loads(
        re.search(r"^ENTRYPOINT (.*)$", (context / "Dockerfile").read_text(), re.M).group(1)
    )
    entrypoint[entrypoint.index("--port") + 1] = str(port)
    pods.append(Pod("localhost/zeroserve-iris:ci", entrypoint, {}, {}, tmp_path / "iris.log"))
    pods[0].wait_ready(f"http://127.0.0.1:{port}/v2/models/iris/ready")
    answer = httpx.post(f"http://127.0.0.1:{port}/v1/models/iris:predict",
                        json={"instances": [[6.7, 3.0, 5.2, 2.3]]}, timeout=30)  # fmt: skip
    assert answer.json() == {"predictions": [2]}
