"""A model's own dependencies on the shared runtime: a model importing a package the runtime lacks
serves from its packaged code artifact (moto S3), the environment is built once on the cache,
and a second pod on the same cache installs nothing.

The package is a small pure-Python wheel this test makes; pods install it from a local folder
(PIP_NO_INDEX, PIP_FIND_LINKS) as a cluster pod would from its package index.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MotoS3, run_zeroserve, start_server, wait_ready

pytestmark = pytest.mark.integration
MODEL = """
import zs_tinydep

from zeroserve import predictor


@predictor(name="tiny")
class Tiny:
    def predict(self, instances: list[float]) -> list[float]:
        return [value * zs_tinydep.FACTOR for value in instances]
"""


def make_wheel(folder: Path) -> Path:
    """zs_tinydep 1.0 (FACTOR = 7), a pure-Python wheel."""
    files = {
        "zs_tinydep/__init__.py": "FACTOR = 7\n",
        "zs_tinydep-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: zs-tinydep\n"
        "Version: 1.0\n",
        "zs_tinydep-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: zeroserve-tests\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    record.append("zs_tinydep-1.0.dist-info/RECORD,,")
    files["zs_tinydep-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "zs_tinydep-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


def start_pod(moto: MotoS3, reference: str, log: Path, cache: Path, index: Path) -> Any:
    """The runtime as a pod runs it, on ``cache``, installing from the wheels in ``index``."""
    index.mkdir(exist_ok=True)
    env = {**moto.env, "ZEROSERVE_CACHE__ROOT": str(cache), "PIP_NO_INDEX": "1",
           "PIP_FIND_LINKS": str(index)}  # fmt: skip
    return start_server(reference, log, "--direct", env=env)


@pytest.fixture
def packaged(moto_s3: MotoS3, tmp_path: Path) -> tuple[str, Path]:
    """The tiny model's code artifact (its lock names zs-tinydep==1.0), and the wheel folder."""
    wheels = tmp_path / "wheels"
    make_wheel(wheels)
    here = tmp_path / "installed-here"  # where the model was developed: the package is installed
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels),
         "--target", str(here), "zs-tinydep"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    code = tmp_path / "tiny"
    code.mkdir()
    (code / "model.py").write_text(MODEL)
    (code / "requirements.txt").write_text("zs-tinydep\n")
    bucket = moto_s3.new_bucket()
    env = {**moto_s3.env, "PYTHONPATH": str(here)}
    done = run_zeroserve("package", str(code), "--repository", f"s3://{bucket}/code", env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0], wheels


@pytest.mark.timeout(300)
def test_a_locked_package_the_runtime_lacks_is_installed_once_per_cache(
    moto_s3: MotoS3, tmp_path: Path, packaged: tuple[str, Path]
) -> None:
    reference, wheels = packaged
    cache = tmp_path / "cache"
    assert importlib.util.find_spec("zs_tinydep") is None  # not in the runtime
    answers = []
    for pod, index in (("first", wheels), ("second", tmp_path / "empty-index")):
        # the second pod's index is empty: it can only serve if it installs nothing
        server = start_pod(moto_s3, reference, tmp_path / f"{pod}.log", cache, index)
        try:
            wait_ready(server, "tiny")
            answers.append(httpx.post(f"{server.url}/v1/models/tiny:predict",
                                      json={"instances": [1, 2]}).json())  # fmt: skip
        finally:
            server.stop()
        assert '"name": "dependencies"' in server.log()
    assert answers == [{"predictions": [7, 14]}] * 2
    built = [path for path in (cache / "environments").iterdir() if path.is_dir()]
    assert len(built) == 1  # one environment, built by the first pod
    assert (built[0] / "zeroserve-environment.json").is_file()


def test_a_requirement_the_pod_cannot_install_is_one_line_and_exit_code_3(
    moto_s3: MotoS3, tmp_path: Path, packaged: tuple[str, Path]
) -> None:
    """A fresh cache and an index without the package: nothing to install it from."""
    server = start_pod(
        moto_s3, packaged[0], tmp_path / "pod.log", tmp_path / "cache", tmp_path / "no-wheels"
    )
    assert server.process.wait(timeout=120) == 3
    log = server.log()
    assert "the model's locked requirements could not be installed: " in log
    assert "No matching distribution found for zs-tinydep==1.0" in log
    assert "Traceback" not in log
    leftovers = [path for path in (tmp_path / "cache" / "environments").iterdir() if path.is_dir()]
    assert leftovers == []  # nothing half-built is left to be used
