"""fetch_into: ranged parallel reads, retries that resume, checksums while streaming."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import pytest

from zeroserve.coldstart import StoreAccessError, manifest_of_folder
from zeroserve.coldstart import fetch as fetch_module
from zeroserve.coldstart.fetch import fetch_into
from zeroserve.coldstart.stores import LocalStore


class FlakyStore(LocalStore):
    """A local store whose weights.bin streams break after ``break_after`` bytes, ``failures``
    times."""

    def __init__(self, root: Path, *, failures: int, break_after: int) -> None:
        super().__init__(root)
        self.failures = failures
        self.break_after = break_after
        self.starts: list[int] = []

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        self.starts.append(start)
        stream = super().open_range(key, start, end)
        if self.failures <= 0 or key != "weights.bin":
            return stream
        self.failures -= 1
        return _Breaking(stream, self.break_after)


class _Breaking(io.RawIOBase):
    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self.inner, self.left = inner, limit

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise ConnectionResetError("connection reset by peer")
        data = self.inner.read(min(size if size > 0 else self.left, self.left))
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.inner.close()
        super().close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "source"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(os.urandom(3_000_000))
    (folder / "small.txt").write_text("tokenizer")
    return folder


def test_broken_transfer_retries_and_resumes_where_it_stopped(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch_module, "BACKOFF_S", 0.001)
    monkeypatch.setattr(fetch_module, "CHUNK", 100_000)
    manifest = manifest_of_folder(source)
    store = FlakyStore(source, failures=2, break_after=1_000_000)
    fetch_into(store, manifest, tmp_path / "out", workers=1)
    assert (tmp_path / "out" / "weights.bin").read_bytes() == (source / "weights.bin").read_bytes()
    weights_starts = [start for start in store.starts if start > 0]
    assert weights_starts == [1_000_000, 2_000_000]  # resumed, not restarted


def test_persistent_failure_gives_up_with_a_clear_error(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch_module, "BACKOFF_S", 0.001)
    store = FlakyStore(source, failures=100, break_after=0)
    with pytest.raises(StoreAccessError, match="transfer failed 5 times"):
        fetch_into(store, manifest_of_folder(source), tmp_path / "out", workers=1)


def test_large_files_use_parallel_ranged_reads_hashed_in_order(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch_module, "RANGED_MIN_BYTES", 1_000_000)
    monkeypatch.setattr(fetch_module, "PART_BYTES", 256_000)
    store = FlakyStore(source, failures=0, break_after=0)
    manifest = manifest_of_folder(source)
    hashes = fetch_into(store, manifest, tmp_path / "out", workers=4)
    assert (tmp_path / "out" / "weights.bin").read_bytes() == (source / "weights.bin").read_bytes()
    assert hashes["weights.bin"] == {e.path: e.sha256 for e in manifest.files}["weights.bin"]
    ranged_starts = sorted(start for start in store.starts if start > 0)
    assert ranged_starts == list(range(256_000, 3_000_000, 256_000))


def test_a_partial_file_from_a_killed_fill_is_resumed(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "weights.bin").write_bytes((source / "weights.bin").read_bytes()[:1_234_567])
    store = FlakyStore(source, failures=0, break_after=0)
    fetch_into(store, manifest_of_folder(source), out, workers=1)
    assert 1_234_567 in store.starts
    assert (out / "weights.bin").read_bytes() == (source / "weights.bin").read_bytes()
