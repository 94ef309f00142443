"""Artifacts and the cache against a real moto S3 server on 127.0.0.1 (boto3, no mocking)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FIXTURES, MotoS3, start_server, wait_ready
from zeroserve.coldstart import (
    ArtifactNotFound,
    ImmutableVersion,
    ModelCache,
    StoreAccessError,
    list_versions,
    push,
    resolve,
)

pytestmark = pytest.mark.integration


def model_folder(root: Path, files: int = 4, size: int = 200_000) -> Path:
    folder = root / "model"
    (folder / "nested").mkdir(parents=True, exist_ok=True)
    for index in range(files):
        (folder / "nested" / f"part{index}.bin").write_bytes(bytes([index]) * size)
    (folder / "config.json").write_text('{"classes": 3}')
    return folder


def cli_push(moto: MotoS3, folder: object, repository: str, name: str) -> None:
    """`zeroserve push FOLDER REPOSITORY --name NAME --version v1` in a child process."""
    command = [
        sys.executable,
        "-m",
        "zeroserve",
        "push",
        str(folder),
        repository,
        "--name",
        name,
        "--version",
        "v1",
    ]
    subprocess.run(command, env=moto.env, check=True, capture_output=True, timeout=120)


def test_push_resolve_and_list_versions(aws_env: MotoS3, tmp_path: Path) -> None:
    bucket = aws_env.new_bucket()
    repo = f"s3://{bucket}/models"
    folder = model_folder(tmp_path)
    first, uploaded = push(folder, repo, name="iris", version="v1", labels={"team": "a"})
    assert uploaded
    (folder / "config.json").write_text('{"classes": 4}')
    second, _ = push(folder, repo, name="iris", version="v2")
    assert [m.version for m in list_versions(f"{repo}/iris")] == ["v1", "v2"]
    assert resolve(f"{repo}/iris@v1").digest == first.digest
    assert resolve(f"{repo}/iris").digest == second.digest  # no pin: the newest version
    assert resolve(f"{repo}/iris@{first.digest}").manifest.version == "v1"
    assert resolve(f"{repo}/iris@v1").manifest.labels == {"team": "a"}


def test_versions_are_immutable(aws_env: MotoS3, tmp_path: Path) -> None:
    repo = f"s3://{aws_env.new_bucket()}/models"
    folder = model_folder(tmp_path)
    push(folder, repo, name="iris", version="v1")
    assert push(folder, repo, name="iris", version="v1")[1] is False  # same content: no-op
    (folder / "config.json").write_text("changed")
    with pytest.raises(ImmutableVersion, match="versions are immutable"):
        push(folder, repo, name="iris", version="v1")


def test_plain_prefix_without_manifest_is_pinned_from_its_listing(
    aws_env: MotoS3, tmp_path: Path
) -> None:
    bucket = aws_env.new_bucket()
    client = aws_env.client()
    client.put_object(Bucket=bucket, Key="other/tool/weights.bin", Body=b"w" * 1000)
    client.put_object(Bucket=bucket, Key="other/tool/vocab.txt", Body=b"a b c")
    artifact = resolve(f"s3://{bucket}/other/tool")
    assert sorted(f.path for f in artifact.manifest.files) == ["vocab.txt", "weights.bin"]
    assert not artifact.manifest.verifiable  # ETag pins, sha256 computed while fetching
    cache = ModelCache(tmp_path / "cache", 10**8)
    with cache.materialize(artifact) as lease:
        assert (lease.path / "weights.bin").read_bytes() == b"w" * 1000
    client.put_object(Bucket=bucket, Key="other/tool/vocab.txt", Body=b"changed")
    assert resolve(f"s3://{bucket}/other/tool").digest != artifact.digest


@pytest.mark.parametrize(
    ("reference", "error", "needle"),
    [
        ("s3://no-such-bucket-zs/models/iris@v1", ArtifactNotFound, "no version v1"),
        ("s3://{bucket}/models/ghost@v9", ArtifactNotFound, "no version v9"),
        ("s3://{bucket}/empty/prefix", ArtifactNotFound, "nothing there"),
    ],
)
def test_missing_things_are_named(
    aws_env: MotoS3, reference: str, error: type[Exception], needle: str
) -> None:
    with pytest.raises(error, match=needle):
        resolve(reference.format(bucket=aws_env.new_bucket()))


def test_wrong_credentials_are_explained(
    aws_env: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = f"s3://{aws_env.new_bucket()}/models"
    push(model_folder(tmp_path), repo, name="iris", version="v1")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StoreAccessError, match="no AWS credentials found"):
        resolve(f"{repo}/iris@v1")


def test_eight_processes_fetch_each_object_once(moto_s3: MotoS3, tmp_path: Path) -> None:
    """Single flight across processes: 8 start on one empty cache; S3 serves each object once."""
    bucket = moto_s3.new_bucket()
    repo = f"s3://{bucket}/models"
    folder = model_folder(tmp_path, files=6, size=2_000_000)
    cli_push(moto_s3, str(folder), repo, "big")
    cache = tmp_path / "cache"
    moto_s3.start_recording()
    command = [
        sys.executable,
        "-m",
        "zeroserve.coldstart",
        "preload",
        f"{repo}/big@v1",
        "--cache",
        str(cache),
    ]
    starters = [
        subprocess.Popen(command, env=moto_s3.env, stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    outputs = [process.communicate(timeout=120)[1] for process in starters]
    assert [process.returncode for process in starters] == [0] * 8, outputs
    gets = moto_s3.recorded_gets(bucket)
    data_gets = [path for path in gets if "/big/v1/nested/" in path or path.endswith("config.json")]
    assert sorted(data_gets) == sorted(set(data_gets))  # no object fetched twice
    assert len(data_gets) == 7
    assert sum("(filled" in output for output in outputs) == 1
    entries = list((cache / "entries").iterdir())
    assert len(entries) == 1
    for index in range(6):
        part = entries[0] / "nested" / f"part{index}.bin"
        assert part.read_bytes() == bytes([index]) * 2_000_000


def test_preload_exit_codes(moto_s3: MotoS3, tmp_path: Path) -> None:
    def preload(reference: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "zeroserve.coldstart",
                "preload",
                reference,
                "--cache",
                str(tmp_path / "cache"),
                "--into",
                str(tmp_path / "mnt" / "models"),
            ],
            env=moto_s3.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    bucket = moto_s3.new_bucket()
    assert preload(f"s3://{bucket}/models/iris@v1").returncode == 3
    assert preload(f"s3://{bucket}/models/iris@bad version").returncode == 2
    assert preload(f"s3://{bucket}/models/iris@sha256:abc").returncode == 2
    cli_push(moto_s3, str(model_folder(tmp_path)), f"s3://{bucket}/models", "iris")
    ready = preload(f"s3://{bucket}/models/iris@v1")
    assert ready.returncode == 0, ready.stderr
    exposed = tmp_path / "mnt" / "models"
    assert (exposed / "config.json").read_text() == '{"classes": 3}'
    assert exposed.resolve().parent == (tmp_path / "cache" / "entries").resolve()  # no copy


def test_serve_loads_an_s3_model_through_the_cache(moto_s3: MotoS3, tmp_path: Path) -> None:
    bucket = moto_s3.new_bucket()
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "scale.txt").write_text("3")
    cli_push(moto_s3, str(weights), f"s3://{bucket}/models", "scaler")
    source = (FIXTURES / "s3_scaler.py").read_text().replace("BUCKET", bucket)
    (tmp_path / "scaler.py").write_text(source)
    env = {**moto_s3.env, "ZEROSERVE_CACHE__ROOT": str(tmp_path / "cache")}
    for attempt in ("cold", "warm"):
        server = start_server(tmp_path / "scaler.py", tmp_path / f"{attempt}.log", env=env)
        try:
            wait_ready(server, "scaler")
            response = httpx.post(
                f"{server.url}/v1/models/scaler:predict", json={"instances": [1, 2]}, timeout=30
            )
            assert response.json() == {"predictions": [3.0, 6.0]}
            metrics = httpx.get(f"{server.url}/metrics").text
        finally:
            server.stop()
        log = server.log()
        assert '"event": "startup_timeline"' in log
        assert ("cache hit" in log) == (attempt == "warm")
        lookups = {
            (sample.labels["result"], sample.value)
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples
            if sample.name == "zeroserve_cache_lookups_total"
        }
        fetched = [
            sample.value
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples
            if sample.name == "zeroserve_cache_fetched_bytes_total"
        ]
        assert lookups == {("hit" if attempt == "warm" else "miss", 1.0)}
        assert (fetched[0] > 0) == (attempt == "cold")


@pytest.mark.timeout(120)
def test_an_s3_object_shorter_than_its_manifest_is_an_integrity_error(
    moto_s3: MotoS3, tmp_path: Path
) -> None:
    bucket = moto_s3.new_bucket()
    cli_push(moto_s3, str(model_folder(tmp_path)), f"s3://{bucket}/models", "iris")
    client = moto_s3.client()
    (key,) = (
        item["Key"]
        for item in client.list_objects_v2(Bucket=bucket)["Contents"]
        if item["Key"].endswith("part1.bin")
    )
    client.put_object(Bucket=bucket, Key=key, Body=b"\x01" * 1000)  # truncated after the push
    warmed = subprocess.run(
        [sys.executable, "-m", "zeroserve", "cache", "--cache", str(tmp_path / "cache")]
        + ["warm", f"s3://{bucket}/models/iris@v1"],
        env=moto_s3.env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert warmed.returncode == 5, warmed.stderr  # integrity, not access
    assert "part1.bin" in warmed.stderr
    assert "truncated or replaced" in warmed.stderr
