"""Reference parsing, digests and manifest safety (no store needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeroserve.coldstart import ArtifactManifest, FileEntry, ModelRef, UnsafeManifest
from zeroserve.coldstart.artifacts import local_folder
from zeroserve.coldstart.errors import ReferenceError_
from zeroserve.coldstart.manifest import digest_of, manifest_of_folder

locations = st.sampled_from(
    [
        "s3://bucket/models/iris",
        "/srv/models/iris",
        "gs://b/m",
        "file:///models/x",
        "https://host/models/m",
        "pvc://cache/iris",
    ]
)
versions = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
digests = st.from_regex(r"[0-9a-f]{64}", fullmatch=True).map(lambda hexa: f"sha256:{hexa}")


@given(locations, st.none() | versions)
def test_version_references_round_trip(location: str, version: str | None) -> None:
    text = f"{location}@{version}" if version else location
    ref = ModelRef.parse(text)
    assert (ref.location, ref.version, ref.digest) == (location, version, None)
    assert str(ref) == text


@given(locations, digests)
def test_digest_references_round_trip(location: str, digest: str) -> None:
    ref = ModelRef.parse(f"{location}@{digest}")
    assert (ref.location, ref.version, ref.digest) == (location, None, digest)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("s3://b/m@sha256:xyz", "64 hex digits"),
        ("s3://b/m@bad version", "must be letters"),
        ("@v1", "has no location"),
    ],
)
def test_bad_references_say_the_accepted_form(text: str, needle: str) -> None:
    with pytest.raises(ReferenceError_, match=needle):
        ModelRef.parse(text)


def test_at_sign_inside_the_location_is_not_a_pin() -> None:
    ref = ModelRef.parse("https://user@host/models/iris")
    assert (ref.location, ref.version) == ("https://user@host/models/iris", None)


file_entries = st.lists(
    st.tuples(
        st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8}){0,2}", fullmatch=True),
        st.integers(0, 10**9),
        st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda item: item[0],
)


@given(file_entries, st.randoms())
def test_digest_ignores_order_and_changes_with_content(entries: list, rng: object) -> None:
    files = [FileEntry(path, size, sha) for path, size, sha in entries]
    shuffled = list(files)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert digest_of(files) == digest_of(shuffled)
    changed = [FileEntry(files[0].path, files[0].size + 1, files[0].sha256), *files[1:]]
    assert digest_of(changed) != digest_of(files)


@pytest.mark.parametrize(
    "path", ["../etc/passwd", "/etc/passwd", "a/../../b", "", "a//b", "./a", "a\\..\\b"]
)
def test_unsafe_manifest_paths_are_refused(path: str) -> None:
    with pytest.raises(UnsafeManifest):
        ArtifactManifest(files=(FileEntry(path, 1, "0" * 64),))


def test_tampered_manifest_digest_is_refused() -> None:
    manifest = ArtifactManifest(files=(FileEntry("a.bin", 1, "0" * 64),))
    body = json.loads(manifest.to_json())
    body["files"][0]["size"] = 2
    with pytest.raises(UnsafeManifest, match="does not match its files"):
        ArtifactManifest.from_json(json.dumps(body))


def test_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", tmp_path / "model" / "link")
    with pytest.raises(UnsafeManifest, match="symlink out of"):
        manifest_of_folder(tmp_path / "model")


def test_local_folders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZEROSERVE_PVC_ROOT", "/mnt/pvc")
    assert local_folder("pvc://cache/models/iris") == Path("/mnt/pvc/cache/models/iris")
    assert local_folder("file:///srv/m") == Path("/srv/m")
    assert local_folder("weights", base=tmp_path) == tmp_path / "weights"
    assert local_folder("s3://bucket/m") is None
