"""Fetch an artifact's files into a folder: parallel, hashed while streaming, retried, resumed.

Files are fetched concurrently, one streaming GET each. A file of at least RANGED_MIN_BYTES is
fetched in parallel ranged reads, a window of parts at a time, each part hashed in order as it is
written. A transfer that fails part way retries with backoff and resumes where it stopped; a
partial file left by an earlier, killed fill is rehashed and resumed too.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from zeroserve.coldstart.errors import (
    ArtifactNotFound,
    ColdStartError,
    DiskFull,
    IntegrityError,
    StoreAccessError,
)
from zeroserve.coldstart.manifest import ArtifactManifest, FileEntry, safe_join
from zeroserve.coldstart.stores import ObjectStore

Progress = Callable[[int], None]
CHUNK = 4 * 1024 * 1024
RANGED_MIN_BYTES = 256 * 1024 * 1024
PART_BYTES = 32 * 1024 * 1024
WORKERS = 8
RETRIES = 4
BACKOFF_S = 0.2


def fetch_into(
    store: ObjectStore,
    manifest: ArtifactManifest,
    destination: Path,
    *,
    progress: Progress | None = None,
    workers: int = WORKERS,
) -> dict[str, str]:
    """Fetch every file of ``manifest`` into ``destination``; return path -> sha256 computed."""
    report = progress or (lambda _count: None)
    ranged = [entry for entry in manifest.files if entry.size >= RANGED_MIN_BYTES]
    whole = [entry for entry in manifest.files if entry.size < RANGED_MIN_BYTES]
    hashes: dict[str, str] = {}
    with ThreadPoolExecutor(workers) as pool:
        futures = {
            entry.path: pool.submit(_fetch_whole, store, entry, destination, report)
            for entry in whole
        }
        for entry in ranged:
            hashes[entry.path] = _fetch_ranged(store, entry, destination, report, pool, workers)
        for path, future in futures.items():
            hashes[path] = future.result()
    return hashes


def _fetch_whole(store: ObjectStore, entry: FileEntry, root: Path, report: Progress) -> str:
    target = safe_join(root, entry.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    hasher, written = _resume(target, entry, report)
    attempt = 0
    with _writing(target) as sink:
        while written < entry.size:
            try:
                with contextlib.closing(store.open_range(entry.path, start=written)) as stream:
                    copied = _copy(stream, sink, hasher, report, limit=entry.size - written)
                if copied == 0:  # the object ends here: no retry makes it longer
                    target.unlink(missing_ok=True)
                    raise IntegrityError(
                        f"{entry.path}: the stored object ends after {written} bytes but the "
                        f"manifest says {entry.size}: it was truncated or replaced after it was "
                        "pushed; push the model again"
                    )
            except (ArtifactNotFound, StoreAccessError, IntegrityError):
                raise
            except OSError as exc:
                if exc.errno == errno.ENOSPC:  # not transient: retrying cannot help
                    raise _disk_error(target, exc) from None
                attempt += 1
                _backoff(entry, attempt, exc)
            except Exception as exc:
                attempt += 1
                _backoff(entry, attempt, exc)
            finally:
                written = sink.tell()  # what reached the file (and the hash), even on failure
        os.fsync(sink.fileno())
    return _checked(entry, hasher.hexdigest(), written, target)


def _fetch_ranged(
    store: ObjectStore,
    entry: FileEntry,
    root: Path,
    report: Progress,
    pool: ThreadPoolExecutor,
    window: int,
) -> str:
    target = safe_join(root, entry.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    hasher, written = _resume(target, entry, report)
    with _writing(target) as sink:
        while written < entry.size:
            starts = range(written, entry.size, PART_BYTES)[:window]
            parts = [pool.submit(_read_part, store, entry, start) for start in starts]
            for part in parts:  # write and hash in order, so the hash streams with the bytes
                data = part.result()
                _write(sink, data)
                hasher.update(data)
                report(len(data))
                written += len(data)
        os.fsync(sink.fileno())
    return _checked(entry, hasher.hexdigest(), written, target)


def _read_part(store: ObjectStore, entry: FileEntry, start: int) -> bytes:
    end = min(start + PART_BYTES, entry.size)
    attempt = 0
    while True:
        try:
            with contextlib.closing(store.open_range(entry.path, start=start, end=end)) as stream:
                return _read_exactly(stream, end - start)
        except (ArtifactNotFound, StoreAccessError, IntegrityError):
            raise
        except _EndOfObject as exc:
            raise IntegrityError(
                f"{entry.path}: the stored object ends before byte {end} ({exc}); the manifest "
                f"says {entry.size} bytes: it was truncated or replaced; push the model again"
            ) from None
        except Exception as exc:
            attempt += 1
            _backoff(entry, attempt, exc)


class _EndOfObject(Exception):
    """A part's stream ended cleanly before the part did: the object is shorter."""


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(min(CHUNK, remaining))
        if not chunk:  # a broken transfer raises; a clean end means the object is shorter
            raise _EndOfObject(f"the part ended {remaining} bytes early")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _resume(target: Path, entry: FileEntry, report: Progress) -> tuple[Any, int]:
    """Rehash what an earlier attempt left in ``target`` and continue after it."""
    hasher = hashlib.sha256()
    if not target.exists():
        return hasher, 0
    with target.open("rb+") as existing:
        if os.fstat(existing.fileno()).st_size > entry.size:
            existing.truncate(entry.size)
        written = 0
        while chunk := existing.read(CHUNK):
            hasher.update(chunk)
            written += len(chunk)
    report(written)
    return hasher, written


class _writing:
    """Open ``target`` for appending, translating a full disk into DiskFull."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.stream: BinaryIO | None = None

    def __enter__(self) -> BinaryIO:
        self.stream = self.target.open("ab")
        return self.stream

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        assert self.stream is not None
        try:
            self.stream.close()
        except OSError as exc:
            raise _disk_error(self.target, exc) from None
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise _disk_error(self.target, error) from None


def _disk_error(target: Path, exc: OSError) -> ColdStartError:
    if exc.errno == errno.ENOSPC:
        return DiskFull(
            f"no space left on the filesystem of {target.parent}; free space or "
            "lower the cache budget"
        )
    return ColdStartError(f"writing {target}: {exc}")


def _copy(stream: BinaryIO, sink: BinaryIO, hasher: Any, report: Progress, *, limit: int) -> int:
    """Copy up to ``limit`` bytes (fewer if the stream ends); return how many."""
    copied = 0
    while copied < limit:
        chunk = stream.read(min(CHUNK, limit - copied))
        if not chunk:
            break
        _write(sink, chunk)
        hasher.update(chunk)
        report(len(chunk))
        copied += len(chunk)
    return copied


def _write(sink: BinaryIO, data: bytes) -> None:
    sink.write(data)


def _backoff(entry: FileEntry, attempt: int, exc: Exception) -> None:
    if attempt > RETRIES:
        raise StoreAccessError(
            f"{entry.path}: transfer failed {attempt} times ({type(exc).__name__}: {exc}); "
            "check the network and the store, then retry"
        ) from exc
    time.sleep(BACKOFF_S * 2 ** (attempt - 1))


def _checked(entry: FileEntry, sha256: str, written: int, target: Path) -> str:
    if written != entry.size:
        target.unlink(missing_ok=True)
        raise IntegrityError(f"{entry.path}: got {written} bytes, the manifest says {entry.size}")
    if not entry.sha256.startswith("etag:") and sha256 != entry.sha256:
        target.unlink(missing_ok=True)
        raise IntegrityError(
            f"{entry.path}: checksum mismatch (sha256 {sha256}, manifest {entry.sha256}); the "
            "stored object changed or is corrupt"
        )
    return sha256
