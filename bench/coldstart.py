"""Cold start, all in one run against a moto S3 server on 127.0.0.1.

1. Fill throughput of a cold cache for a 1 GiB model of 16 files, against boto3's
   ``download_file`` of the same objects with ``TransferConfig(max_concurrency=8)`` (goal >= 0.9x).
   moto answers a ranged GET in time proportional to the whole object, which punishes
   ``download_file``'s multipart ranges; so a second, kinder baseline is printed too: whole-object
   ``download_file`` calls in 8 threads. Only ratios on identical workloads mean anything here.
2. A warm hit for the same model: ``materialize()`` to a ready folder (goal < 50 ms, no bytes).
3. iris time-to-ready (process start to ``/v2/models/iris/ready`` true) from a cold and a warm
   cache, next to the floor: a bare ``python -c 'import sklearn, joblib; joblib.load(...)'``.
4. pod_path: a cluster pod's start to ready on a warm shared cache vs KServe's storage-initializer
   plus ModelServer (bench/_pod_path.py; goal <= 0.3x), with the floor's share of KServe's path.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench._pod_path import GOAL as POD_PATH_GOAL
from bench._pod_path import measure as pod_path
from bench._process import free_port, running, wait_ready

ROOT = Path(__file__).resolve().parent.parent
FILES = 16
FILE_BYTES = 64 * 1024 * 1024
FILL_GOAL = 0.9
HIT_GOAL_MS = 50.0
STARTS = 3


def s3_env(url: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def client() -> Any:
    import boto3

    return boto3.session.Session().client("s3")


def upload_big_model(bucket: str, scratch: Path) -> str:
    """Push a 1 GiB model of 16 random files; return its reference."""
    from zeroserve.coldstart import push

    folder = scratch / "big"
    folder.mkdir()
    for index in range(FILES):
        (folder / f"shard-{index:02d}.safetensors").write_bytes(os.urandom(FILE_BYTES))
    push(folder, f"s3://{bucket}/models", name="big", version="v1")
    shutil.rmtree(folder)
    return f"s3://{bucket}/models/big@v1"


def boto3_baseline(bucket: str, target: Path, *, ranged: bool) -> float:
    """Seconds for boto3 download_file of the 16 objects (multipart ranges, or whole in threads)."""
    from boto3.s3.transfer import TransferConfig

    s3 = client()
    keys = [f"models/big/v1/shard-{index:02d}.safetensors" for index in range(FILES)]
    target.mkdir()
    started = time.perf_counter()
    if ranged:
        config = TransferConfig(max_concurrency=8)
        for key in keys:
            s3.download_file(bucket, key, str(target / Path(key).name), Config=config)
    else:
        whole = TransferConfig(multipart_threshold=2 * FILE_BYTES, use_threads=False)
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda key: s3.download_file(
                        bucket, key, str(target / Path(key).name), Config=whole
                    ),
                    keys,
                )
            )
    elapsed = time.perf_counter() - started
    shutil.rmtree(target)
    return elapsed


def fill_and_hit(reference: str, cache_root: Path) -> tuple[float, float, int, float]:
    """(cold fill seconds, warm hit milliseconds, bytes fetched on the hit, milliseconds of the
    first hit after a boot, which rehashes every byte before handing the folder out)."""
    from zeroserve.coldstart import ModelCache, resolve

    cache = ModelCache(cache_root, 4 * FILES * FILE_BYTES)
    artifact = resolve(reference)
    started = time.perf_counter()
    cache.materialize(artifact).release()
    fill = time.perf_counter() - started
    hits = []
    for _ in range(20):
        started = time.perf_counter()
        lease = cache.materialize(artifact)
        hits.append(1000 * (time.perf_counter() - started))
        fetched = lease.fetched_bytes
        lease.release()
    (meta_path,) = (cache_root / "meta").glob("*.json")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "verified_boot": "an earlier boot"}))
    started = time.perf_counter()
    lease = cache.materialize(artifact)
    after_boot_ms = 1000 * (time.perf_counter() - started)
    assert lease.hit, "the rehash after a boot must find the entry intact"
    lease.release()
    return fill, statistics.median(hits), fetched, after_boot_ms


def iris_starts(bucket: str, scratch: Path, env: dict[str, str]) -> dict[str, float]:
    """Median seconds from process start to iris ready: cold cache, warm cache, and the floor."""
    from zeroserve.coldstart import push

    weights = scratch / "iris-weights"
    weights.mkdir()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "samples" / "iris" / "train.py"),
            str(weights / "model.joblib"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    push(weights, f"s3://{bucket}/models", name="iris", version="v1")
    source = (
        (ROOT / "samples" / "iris" / "model.py")
        .read_text()
        .replace(
            '@predictor(name="iris", ',
            f'@predictor(name="iris", model_uri="s3://{bucket}/models/iris@v1", ',
        )
    )
    (scratch / "iris.py").write_text(source)
    cache = scratch / "iris-cache"
    times: dict[str, list[float]] = {"cold_cache": [], "warm_cache": [], "floor": []}
    floor = f"import sklearn, joblib; joblib.load({str(weights / 'model.joblib')!r})"
    for _ in range(STARTS):
        shutil.rmtree(cache, ignore_errors=True)
        for kind in ("cold_cache", "warm_cache"):
            times[kind].append(time_to_ready(scratch, cache, env))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", floor], check=True)
        times["floor"].append(time.perf_counter() - started)
    return {kind: round(statistics.median(values), 3) for kind, values in times.items()}


def time_to_ready(scratch: Path, cache: Path, env: dict[str, str]) -> float:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "zeroserve",
        "serve",
        f"{scratch / 'iris.py'}:Iris",  # the sample's batched twin has no model_uri
        "--direct",  # the cold-start path of one process, as in a pod
        "--port",
        str(port),
        "--no-access-log",
    ]
    started = time.perf_counter()
    with (scratch / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**env, "ZEROSERVE_CACHE__ROOT": str(cache)},
        )
    try:
        wait_ready(
            process, f"http://127.0.0.1:{port}/v2/models/iris/ready", scratch / "serve.log", 120
        )
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> dict[str, object]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **s3_env(url)}
    os.environ.update(s3_env(url))
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        moto = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        with running(moto, f"{url}/moto-api/", scratch / "moto.log"):
            bucket = "bench-models"
            client().create_bucket(Bucket=bucket)
            reference = upload_big_model(bucket, scratch)
            ranged = boto3_baseline(bucket, scratch / "ranged", ranged=True)
            whole = boto3_baseline(bucket, scratch / "whole", ranged=False)
            fill, hit_ms, hit_bytes, after_boot_ms = fill_and_hit(reference, scratch / "cache")
            starts = iris_starts(bucket, scratch, env)
            pod = pod_path(bucket, scratch / "iris-weights", scratch, env)
    total_mb = FILES * FILE_BYTES / 1e6
    fill_ratio = ranged / fill
    print(
        f"fill 1 GiB: zeroserve {total_mb / fill:.0f} MB/s ({fill:.2f} s); boto3 download_file "
        f"max_concurrency=8: {total_mb / ranged:.0f} MB/s ({ranged:.2f} s); whole objects in 8 "
        f"threads: {total_mb / whole:.0f} MB/s ({whole:.2f} s)"
    )
    print(f"warm hit: {hit_ms:.2f} ms, {hit_bytes} bytes fetched")
    print(f"first hit after a boot (rehash of 1 GiB): {after_boot_ms:.0f} ms")
    print(
        f"iris time to ready: cold cache {starts['cold_cache']} s, warm cache "
        f"{starts['warm_cache']} s, floor (import sklearn + joblib.load) {starts['floor']} s"
    )
    floor_share = starts["floor"] / pod["kserve_storage_initializer_and_server_s"]
    print(
        f"pod path, warm shared cache: zeroserve {pod['zeroserve_s']} s vs KServe's "
        f"storage-initializer + ModelServer {pod['kserve_storage_initializer_and_server_s']} s: "
        f"ratio {pod['ratio']} (goal <= {POD_PATH_GOAL}); the floor alone is "
        f"{floor_share:.2f} of KServe's path"
    )
    met = fill_ratio >= FILL_GOAL and hit_ms < HIT_GOAL_MS and hit_bytes == 0
    return {
        "bench": "coldstart",
        "ratio": round(fill_ratio, 2),
        "goal": FILL_GOAL,
        "met": met,
        "fill_mb_per_s": round(total_mb / fill, 1),
        "boto3_download_file_mb_per_s": round(total_mb / ranged, 1),
        "boto3_whole_objects_8_threads_mb_per_s": round(total_mb / whole, 1),
        "ratio_vs_whole_objects": round(whole / fill, 2),
        "warm_hit_ms": round(hit_ms, 2),
        "warm_hit_goal_ms": HIT_GOAL_MS,
        "warm_hit_bytes_fetched": hit_bytes,
        "first_hit_after_boot_ms": round(after_boot_ms, 1),
        "rehash_mb_per_s": round(total_mb / (after_boot_ms / 1000), 1),
        "iris_ready_s": starts,
        "pod_path": pod,
        "pod_path_goal": POD_PATH_GOAL,
        "pod_path_met": pod["ratio"] <= POD_PATH_GOAL,
        "pod_path_floor_share_of_kserve": round(floor_share, 3),
    }


if __name__ == "__main__":
    print(json.dumps(main()))
