"""Fills killed with SIGKILL at random points never leave a visible partial entry."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zeroserve.coldstart import ModelCache, push, resolve

pytestmark = pytest.mark.integration
TRIALS = 20


def entry_is_complete(entry: Path, expected: dict[str, str]) -> bool:
    present = {
        path.relative_to(entry).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in entry.rglob("*")
        if path.is_file()
    }
    return present == expected


def partial_bytes(root: Path) -> int:
    """Bytes a fill in progress has written so far."""
    partial = root / "partial"
    if not partial.is_dir():
        return 0
    total = 0
    for path in partial.rglob("*"):
        with contextlib.suppress(FileNotFoundError):  # renamed into place meanwhile
            total += path.stat().st_size if path.is_file() else 0
    return total


def visible(root: Path) -> list[Path]:
    entries = root / "entries"
    return sorted(entries.iterdir()) if entries.is_dir() else []


@pytest.mark.timeout(300)
def test_sigkill_during_fill_never_exposes_partial_data(tmp_path: Path) -> None:
    source = tmp_path / "model"
    source.mkdir()
    for index in range(12):
        (source / f"shard{index:02d}.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    manifest, _ = push(source, str(tmp_path / "repo"), name="big", version="v1")
    expected = {entry.path: entry.sha256 for entry in manifest.files}
    reference = str(tmp_path / "repo" / "big") + "@v1"
    root = tmp_path / "cache"
    command = [
        sys.executable,
        "-m",
        "zeroserve.coldstart",
        "preload",
        reference,
        "--cache",
        str(root),
        "--no-readahead",
    ]
    rng = random.Random(20261129)
    killed_mid_fill = 0
    total = sum(entry.size for entry in manifest.files)
    for _ in range(TRIALS):
        victim = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        kill_at = rng.uniform(0.0, 1.0) * total  # bytes of the fill written, whatever its speed
        while victim.poll() is None and partial_bytes(root) < kill_at:
            time.sleep(0.001)
        if victim.poll() is None:
            victim.send_signal(signal.SIGKILL)
            killed_mid_fill += 1
        victim.wait(timeout=30)
        for entry in visible(root):  # whatever is visible is whole and verified
            assert entry_is_complete(entry, expected)
        finisher = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert finisher.returncode == 0, finisher.stderr  # resumes or refills after the kill
        (entry,) = visible(root)
        assert entry_is_complete(entry, expected)
        ModelCache(root, 0).gc()  # budget 0: evict everything not leased, clean leftovers
        assert visible(root) == []
        assert list((root / "partial").iterdir()) == []
    assert killed_mid_fill >= 5, "the kills should land during fills, not only after"
    with ModelCache(root, 10**9).materialize(resolve(reference)) as lease:
        assert entry_is_complete(lease.path, expected)
