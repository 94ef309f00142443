"""ModelCache on local folders: hits, leases, corruption, eviction, budget."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from zeroserve.coldstart import CacheFull, ModelCache, push, resolve
from zeroserve.coldstart.cache import _stat_of, boot_id
from zeroserve.coldstart.manifest import ArtifactManifest, FileEntry


def pushed(root: Path, name: str, size: int = 100_000, files: int = 2) -> str:
    folder = root / "src" / name
    folder.mkdir(parents=True)
    for index in range(files):
        (folder / f"w{index}.bin").write_bytes(os.urandom(size))
    push(folder, str(root / "repo"), name=name, version="v1")
    return str(root / "repo" / name) + "@v1"


def test_miss_then_hit_without_copying(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache", 10**7)
    artifact = resolve(pushed(tmp_path, "a"))
    with cache.materialize(artifact) as first:
        assert not first.hit
        assert first.fetched_bytes == 200_000
        inode = (first.path / "w0.bin").stat().st_ino
    started = time.perf_counter()
    with cache.materialize(artifact) as second:
        elapsed = time.perf_counter() - started
        assert second.hit
        assert second.fetched_bytes == 0
        assert (second.path / "w0.bin").stat().st_ino == inode  # the same bytes, not a copy
    assert elapsed < 5  # sanity only; the benchmark measures the real figure


def test_lease_check_catches_a_modified_file_and_refetches(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache", 10**7)
    artifact = resolve(pushed(tmp_path, "a"))
    with cache.materialize(artifact) as lease:
        original = (lease.path / "w1.bin").read_bytes()
        path = lease.path
    (path / "w1.bin").write_bytes(b"corrupted")
    with cache.materialize(artifact) as again:
        assert not again.hit  # the lease check saw it and the entry was refetched
        assert (again.path / "w1.bin").read_bytes() == original


def test_same_size_bytes_changed_with_the_mtime_restored_are_not_served(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache", 10**7)
    artifact = resolve(pushed(tmp_path, "a"))
    with cache.materialize(artifact) as lease:
        target = lease.path / "w0.bin"
        original = target.read_bytes()
    stat = target.stat()
    target.write_bytes(bytes([original[0] ^ 0xFF]) + original[1:])
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # size and mtime as published
    with cache.materialize(artifact) as again:
        assert not again.hit  # the ctime moved: removed and fetched again
        assert (again.path / "w0.bin").read_bytes() == original


def test_an_entry_is_rehashed_on_its_first_use_after_a_boot(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache", 10**7)
    artifact = resolve(pushed(tmp_path, "a"))
    with cache.materialize(artifact) as lease:
        target = lease.path / "w1.bin"
        original = target.read_bytes()
    meta_path = cache.root / "meta" / (artifact.digest.removeprefix("sha256:") + ".json")

    def as_if_rebooted(corrupt: bool) -> None:
        """What another boot would find: bytes changed below the filesystem, stats as before."""
        if corrupt:
            target.write_bytes(b"\0" * len(original))
        meta = json.loads(meta_path.read_text())
        meta["stats"]["w1.bin"] = _stat_of(target)
        meta["verified_boot"] = "an earlier boot"
        meta_path.write_text(json.dumps(meta))

    as_if_rebooted(corrupt=False)
    with cache.materialize(artifact) as intact:
        assert intact.hit  # rehashed, found intact, marked verified for this boot
    assert json.loads(meta_path.read_text())["verified_boot"] == boot_id()
    as_if_rebooted(corrupt=True)
    with cache.materialize(artifact) as refetched:
        assert not refetched.hit
        assert (refetched.path / "w1.bin").read_bytes() == original


def test_verify_catches_same_size_corruption(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache", 10**7)
    artifact = resolve(pushed(tmp_path, "a"))
    with cache.materialize(artifact) as lease:
        target = lease.path / "w0.bin"
    stat = target.stat()
    data = bytearray(target.read_bytes())
    data[10] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # looks untouched to a stat
    problems = cache.verify()
    assert len(problems) == 1
    assert "w0.bin is missing or corrupt" in problems[0]
    assert cache.entries() == []
    with cache.materialize(artifact) as refetched:
        assert not refetched.hit


def test_eviction_keeps_leased_entries_and_evicts_the_least_used(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache", 450_000)  # room for two entries of 200 kB
    a, b, c = (resolve(pushed(tmp_path, name)) for name in "abc")
    held = cache.materialize(a)
    cache.materialize(b).release()
    with cache.materialize(c):
        names = {entry.name for entry in cache.entries()}
    assert names == {"a", "c"}  # b was least recently used and not leased
    held.release()


def test_all_entries_leased_means_cache_full(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache", 450_000)
    a, b, c = (resolve(pushed(tmp_path, name)) for name in "abc")
    with (
        cache.materialize(a),
        cache.materialize(b),
        pytest.raises(CacheFull, match="held by running"),
    ):
        cache.materialize(c)


def test_entry_bigger_than_the_budget_is_a_clear_error(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache", 1000)
    with pytest.raises(CacheFull, match="raise the budget"):
        cache.materialize(resolve(pushed(tmp_path, "a")))


def test_checksum_mismatch_publishes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "plain"
    source.mkdir()
    (source / "x.bin").write_bytes(b"12345")
    artifact = resolve(str(source))
    lying = ArtifactManifest(files=(FileEntry("x.bin", 5, "0" * 64),))
    forged = type(artifact)(artifact.ref, artifact.store, lying)
    cache = ModelCache(tmp_path / "cache", 10**6)
    from zeroserve.coldstart import IntegrityError

    with pytest.raises(IntegrityError, match="checksum mismatch"):
        cache.materialize(forged)
    assert cache.entries() == []
    assert not any((tmp_path / "cache" / "entries").iterdir())


def test_gc_removes_stale_partial_fills(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "cache", 10**6)
    stale = tmp_path / "cache" / "partial" / ("0" * 64)
    stale.mkdir(parents=True)
    (stale / "half.bin").write_bytes(b"half")
    assert cache.gc() == [f"partial fill {'0' * 64}"]
    assert not stale.exists()


def test_read_ahead_takes_what_a_loader_reads_first_first(tmp_path: Path) -> None:
    from zeroserve.coldstart.preload import read_ahead, read_order

    names = [
        "model-00002-of-00002.safetensors",
        "README.md",
        "model-00001-of-00002.safetensors",
        "tokenizer.json",
        "config.json",
        "model.safetensors.index.json",
        "chat_template.jinja",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    order = [path.name for path in read_order(tmp_path)]
    assert order == [
        "chat_template.jinja",
        "config.json",
        "model.safetensors.index.json",
        "tokenizer.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "README.md",
    ]
    read_ahead(tmp_path)  # every file opens and is advised: nothing raises
