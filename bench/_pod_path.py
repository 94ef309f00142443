"""pod_path: a cluster pod's start to model ready, zeroserve's runtime vs KServe's own path.

zeroserve: ``zeroserve serve CODE_URI --direct`` with the environment ``render`` gives the pod
(its InferenceService, the weights pinned by digest), on a warm shared cache: the code artifact
and the weights are cache hits, linked, not copied.
KServe: the storage-initializer init container (``kserve_storage.Storage.download`` from the same
S3 endpoint into an empty folder, a process of its own) and then a stock ``kserve.ModelServer``
process loading the same model (bench/_plain_kserve.py), one after the other as in a pod.
kserve-storage is installed with --no-deps into a scratch folder: its S3 path needs only boto3,
which is installed; its other stores' libraries (Azure, GCS, Hugging Face) are not needed.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench._process import free_port, wait_ready

ROOT = Path(__file__).resolve().parent.parent
KSERVE_STORAGE = "kserve-storage==0.21.0"
DOWNLOAD = (
    "import sys; from kserve_storage import Storage; Storage.download(sys.argv[1], sys.argv[2])"
)
ROUNDS = 5
GOAL = 0.3


def timed_start(command: list[str], ready: str, log: Path, env: dict[str, str]) -> float:
    """Seconds from spawning ``command`` to ``ready`` answering 200; the process is stopped."""
    started = time.perf_counter()
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(process, ready, log, 120)
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=30)


def zeroserve_pod(
    code_uri: str, pinned: str, cache: Path, scratch: Path, env: dict[str, str]
) -> float:
    port = free_port()
    pod_env = {
        **env,
        "ZEROSERVE_CACHE__ROOT": str(cache),
        "ZEROSERVE_POD__INFERENCE_SERVICE": "iris",
        "ZEROSERVE_POD__MODEL_URI": pinned,
    }
    command = [sys.executable, "-m", "zeroserve", "serve", code_uri, "--direct",
               "--port", str(port), "--no-access-log"]  # fmt: skip
    return timed_start(command, f"http://127.0.0.1:{port}/v2/models/iris/ready",
                       scratch / "pod.log", pod_env)  # fmt: skip


def kserve_pod(weights_uri: str, scratch: Path, env: dict[str, str], storage: Path) -> float:
    target = scratch / "kserve-model"
    subprocess.run(["rm", "-rf", str(target)], check=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", DOWNLOAD, weights_uri, str(target)],
                   env={**env, "PYTHONPATH": str(storage)}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    download = time.perf_counter() - started
    port = free_port()
    command = [sys.executable, "-m", "bench._plain_kserve", str(target), str(port)]
    serve = timed_start(command, f"http://127.0.0.1:{port}/v2/models/iris/ready",
                        scratch / "kserve.log", {**env, "PYTHONPATH": str(ROOT)})  # fmt: skip
    return download + serve


def install_kserve_storage(scratch: Path) -> Path:
    folder = scratch / "kserve-storage"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(folder), KSERVE_STORAGE], check=True)  # fmt: skip
    return folder


def measure(bucket: str, weights: Path, scratch: Path, env: dict[str, str]) -> dict[str, float]:
    """Median seconds of each path over alternating rounds, and their ratio."""
    from zeroserve.coldstart import push, resolve

    push(weights, f"s3://{bucket}/pod-path", name="iris", version="v1")  # model.joblib only
    weights_uri = f"s3://{bucket}/pod-path/iris/v1"  # the folder KServe's storageUri names
    pinned = f"s3://{bucket}/pod-path/iris@{resolve(f's3://{bucket}/pod-path/iris@v1').digest}"
    code = scratch / "pod-code"
    code.mkdir()
    (code / "model.py").write_text((ROOT / "samples" / "iris" / "model.py").read_text().replace(
        '@predictor(name="iris", ', f'@predictor(name="iris", model_uri="{pinned}", '))  # fmt: skip
    packaged = subprocess.run(
        [sys.executable, "-m", "zeroserve", "package", str(code), "--repository",
         f"s3://{bucket}/pod-code"], env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    code_uri = packaged.stdout.split()[0]
    storage = install_kserve_storage(scratch)
    cache = scratch / "pod-cache"
    zeroserve_pod(code_uri, pinned, cache, scratch, env)  # fills the shared cache: warm from here
    ours, theirs = [], []
    for _ in range(ROUNDS):
        ours.append(zeroserve_pod(code_uri, pinned, cache, scratch, env))
        theirs.append(kserve_pod(weights_uri, scratch, env, storage))
    zeroserve_s, kserve_s = statistics.median(ours), statistics.median(theirs)
    return {
        "zeroserve_s": round(zeroserve_s, 3),
        "kserve_storage_initializer_and_server_s": round(kserve_s, 3),
        "ratio": round(zeroserve_s / kserve_s, 3),
    }
