"""ModelCache: a content-addressed cache of model folders on a shared filesystem.

Layout under the cache root (a ReadWriteMany PVC in a cluster, ``~/.cache/zeroserve`` locally)::

    entries/<hex>/      published entries: complete, verified files, never written again
    meta/<hex>.json     per entry: manifest, computed hashes, file sizes, mtimes and ctimes,
                        the boot it was last verified in; its mtime is the entry's last use (LRU)
    locks/<hex>.lock    fill lock: one process fills an entry, the others wait for it
    leases/<hex>.lease  reader leases: each holder keeps a shared lock; eviction needs exclusive
    partial/<hex>/      a fill in progress; a later filler resumes it
    cache.lock          serializes eviction decisions

An entry appears only by the atomic rename of a verified, fsynced folder, so readers never see
partial data. What a lease hands to ``load()`` is checked on every hit by size, mtime and ctime
(a write moves the ctime, and restoring the mtime moves it again), and rehashed in full on its
first use after each boot (which finds what changed below the filesystem, or while it was not
mounted here); an entry that fails either check is removed and fetched again.

Locks are ``flock`` locks held on open files: the kernel drops them when their holder dies, so a
lease or fill lock of a killed process expires by itself. The filesystem must
support ``flock`` across its clients: local filesystems, NFSv4 (Linux emulates flock with NFS
byte-range locks) and CephFS do; NFSv3 without lockd and most FUSE object-store mounts do not.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from zeroserve.coldstart.artifacts import ResolvedArtifact
from zeroserve.coldstart.errors import CacheFull, CacheNotWritable, IntegrityError
from zeroserve.coldstart.fetch import Progress, fetch_into
from zeroserve.coldstart.manifest import ArtifactManifest, fsync_folder, hash_file

FillNotice = Callable[[str], None]


@dataclass(frozen=True)
class EntryInfo:
    """One published entry, as `zeroserve cache ls` shows it."""

    digest: str
    size: int
    last_used: float
    leased: bool
    name: str


class Lease:
    """A reader's hold on an entry: while held, the entry is never evicted."""

    def __init__(
        self, path: Path, digest: str, handle: IO[str], *, hit: bool, fetched: int
    ) -> None:
        self.path = path
        self.digest = digest
        self.hit = hit
        self.fetched_bytes = fetched
        self._handle: IO[str] | None = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file drops the shared lock
            self._handle = None

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class ModelCache:
    """Content-addressed model folders with single-flight fills, leases and LRU eviction."""

    def __init__(self, root: Path, budget_bytes: int) -> None:
        self.root = root
        self.budget_bytes = budget_bytes
        try:
            for folder in ("entries", "meta", "locks", "leases", "partial"):
                (root / folder).mkdir(parents=True, exist_ok=True)
            probe = root / "partial" / f".write-probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise CacheNotWritable(
                f"the cache folder {root} is not writable by uid {os.getuid()} "
                f"({exc.strerror or exc}); mount a volume this user may write there (a pod's "
                "fsGroup, or the volume's own permissions) or set ZEROSERVE_CACHE__ROOT"
            ) from None

    def entry_path(self, digest: str) -> Path:
        return self.root / "entries" / _hex(digest)

    def materialize(
        self,
        artifact: ResolvedArtifact,
        *,
        progress: Progress | None = None,
        notice: FillNotice | None = None,
    ) -> Lease:
        """A lease on the verified folder of ``artifact``, filling the cache on a miss."""
        digest = artifact.digest
        lease = self._lease_if_intact(digest)
        if lease is not None:
            return lease
        if artifact.manifest.total_bytes > self.budget_bytes:
            raise CacheFull(
                f"{artifact.ref} needs {artifact.manifest.total_bytes} bytes but the cache budget "
                f"is {self.budget_bytes}; raise the budget (--cache-budget) or use a larger volume"
            )
        with self._fill_lock(digest, notice):
            lease = self._lease_if_intact(digest)  # filled meanwhile by the lock's last holder
            if lease is not None:
                return lease
            fetched = self._fill(artifact, progress)
            lease = self._lease_if_intact(digest)
        if lease is None:
            raise IntegrityError(
                f"{artifact.ref}: entry {digest} failed its check right after its fill"
            )
        lease.hit, lease.fetched_bytes = False, fetched
        return lease

    def _fill_lock(self, digest: str, notice: FillNotice | None) -> Any:
        """Hold the entry's fill lock, saying so when another process holds it first."""
        waiting = f"another process is filling {digest[:19]}…; waiting for it"
        return exclusive(self.root / "locks" / f"{_hex(digest)}.lock", waiting, notice)

    def cached(self, digest: str) -> Lease | None:
        """A lease on the entry of ``digest`` if the cache holds it intact (no store is asked:
        for a reference pinned by digest, the cache alone can answer)."""
        lease = self._lease_if_intact(digest)
        if lease is not None:
            lease.hit, lease.fetched_bytes = True, 0
        return lease

    def _lease_if_intact(self, digest: str) -> Lease | None:
        path = self.entry_path(digest)
        if not path.is_dir():
            return None
        handle = (self.root / "leases" / f"{_hex(digest)}.lease").open("a+")
        fcntl.flock(handle, fcntl.LOCK_SH)
        meta = self._meta(digest)
        if not path.is_dir() or meta is None:  # evicted before our lease was taken
            handle.close()
            return None
        if not _stats_match(path, meta) or not self._verified_this_boot(digest, path, meta):
            handle.close()
            self._quarantine(digest)
            return None
        os.utime(self._meta_path(digest))
        return Lease(path, digest, handle, hit=True, fetched=0)

    def _verified_this_boot(self, digest: str, path: Path, meta: dict[str, Any]) -> bool:
        """Rehash the entry once per boot of this machine (its fill counts); record it."""
        boot = boot_id()
        if meta.get("verified_boot") == boot:
            return True
        expected: dict[str, str] = meta["sha256"]
        with ThreadPoolExecutor(min(8, max(len(expected), 1))) as pool:
            computed = pool.map(hash_file, (path / relative for relative in expected))
            hashes = dict(zip(expected, computed, strict=True))
        if hashes != expected:
            return False
        self._replace_meta(digest, {**meta, "verified_boot": boot})
        return True

    def _fill(self, artifact: ResolvedArtifact, progress: Progress | None) -> int:
        digest = artifact.digest
        partial = self.root / "partial" / _hex(digest)
        partial.mkdir(parents=True, exist_ok=True)
        self._make_room(artifact.manifest.total_bytes)
        counted = [0]

        def count(size: int) -> None:
            counted[0] += size
            if progress:
                progress(size)

        hashes = fetch_into(artifact.store, artifact.manifest, partial, progress=count)
        for folder in {partial, *(partial / e.path for e in artifact.manifest.files)}:
            if folder.is_dir():
                fsync_folder(folder)
        self._write_meta(digest, artifact.manifest, hashes, partial)
        os.rename(partial, self.entry_path(digest))
        fsync_folder(self.root / "entries")
        return counted[0]

    def _write_meta(
        self, digest: str, manifest: ArtifactManifest, hashes: dict[str, str], folder: Path
    ) -> None:
        stats = {entry.path: _stat_of(folder / entry.path) for entry in manifest.files}
        body = {
            "digest": digest,
            "manifest": json.loads(manifest.to_json()),
            "sha256": hashes,
            "stats": stats,
            "size": manifest.total_bytes,
            "verified_boot": boot_id(),  # the fill hashed every byte it wrote
        }
        self._replace_meta(digest, body)

    def _replace_meta(self, digest: str, body: dict[str, Any]) -> None:
        temporary = self._meta_path(digest).with_suffix(f".{uuid.uuid4().hex}.tmp")
        with temporary.open("w") as stream:
            json.dump(body, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, self._meta_path(digest))

    def _meta_path(self, digest: str) -> Path:
        return self.root / "meta" / f"{_hex(digest)}.json"

    def _meta(self, digest: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self._meta_path(digest).read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def entries(self) -> list[EntryInfo]:
        """Published entries, least recently used first."""
        found = []
        for path in (self.root / "entries").iterdir():
            meta = self._meta(path.name) if path.is_dir() else None
            if meta is None:
                continue
            found.append(
                EntryInfo(
                    digest=str(meta["digest"]),
                    size=int(meta["size"]),
                    last_used=self._meta_path(path.name).stat().st_mtime,
                    leased=self._is_leased(path.name),
                    name=str(meta["manifest"].get("name", "")),
                )
            )
        return sorted(found, key=lambda entry: entry.last_used)

    def _is_leased(self, digest: str) -> bool:
        with self._locked(
            self.root / "leases" / f"{_hex(digest)}.lease", fcntl.LOCK_EX | fcntl.LOCK_NB
        ) as held:
            return held is None

    def _make_room(self, needed: int) -> None:
        with self._locked(self.root / "cache.lock", fcntl.LOCK_EX):
            entries = self.entries()
            used = sum(entry.size for entry in entries)
            for entry in entries:
                if used + needed <= self.budget_bytes:
                    return
                if self._evict(entry.digest):
                    used -= entry.size
            if used + needed > self.budget_bytes:
                raise CacheFull(
                    f"the cache needs {needed} bytes but {used} of its {self.budget_bytes} are "
                    "held by running models; raise the budget or stop a model"
                )

    def _evict(self, digest: str) -> bool:
        """Remove an entry unless someone holds a lease on it; return whether it went."""
        lease_file = self.root / "leases" / f"{_hex(digest)}.lease"
        with self._locked(lease_file, fcntl.LOCK_EX | fcntl.LOCK_NB) as held:
            if held is None:
                return False
            self._quarantine(digest)
            return True

    def _quarantine(self, digest: str) -> None:
        """Make an entry disappear atomically, then delete its files."""
        graveyard = self.root / "partial" / f"{_hex(digest)}.gone-{uuid.uuid4().hex[:8]}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.entry_path(digest), graveyard)
        self._meta_path(digest).unlink(missing_ok=True)
        shutil.rmtree(graveyard, ignore_errors=True)

    def verify(self) -> list[str]:
        """Rehash every entry; remove the corrupt ones (refetched on next use); list problems."""
        problems = []
        for entry in self.entries():
            meta = self._meta(_hex(entry.digest))
            path = self.entry_path(entry.digest)
            if meta is None:
                continue
            for relative, expected in meta["sha256"].items():
                target = path / relative
                if not target.is_file() or hash_file(target) != expected:
                    problems.append(f"{entry.digest}: {relative} is missing or corrupt; removed")
                    self._quarantine(entry.digest)
                    break
        return problems

    def gc(self) -> list[str]:
        """Remove leftovers of killed fills and orphan metadata, then evict down to the budget."""
        removed = []
        for leftover in (self.root / "partial").iterdir():
            lock = self.root / "locks" / f"{leftover.name.split('.')[0]}.lock"
            with self._locked(lock, fcntl.LOCK_EX | fcntl.LOCK_NB) as held:
                if held is not None:
                    shutil.rmtree(leftover, ignore_errors=True)
                    removed.append(f"partial fill {leftover.name}")
        for meta in (self.root / "meta").glob("*.json"):
            if not (self.root / "entries" / meta.stem).is_dir():
                meta.unlink(missing_ok=True)
                removed.append(f"orphan metadata {meta.name}")
        with contextlib.suppress(CacheFull):
            self._make_room(0)
        return removed

    @contextlib.contextmanager
    def _locked(self, path: Path, operation: int) -> Iterator[IO[str] | None]:
        """Hold an flock on ``path``; yields None when a non-blocking attempt is refused."""
        handle = path.open("a+")
        try:
            try:
                fcntl.flock(handle, operation)
            except BlockingIOError:
                yield None
                return
            yield handle
        finally:
            handle.close()


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def _stat_of(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _stats_match(folder: Path, meta: dict[str, Any]) -> bool:
    """The lease check: every file still has the size, mtime and ctime it was published with
    (entries published before ctimes were recorded compare size and mtime)."""
    for relative, expected in meta["stats"].items():
        try:
            if _stat_of(folder / relative)[: len(expected)] != list(expected):
                return False
        except FileNotFoundError:
            return False
    return True


@functools.cache
def boot_id() -> str:
    """This machine's boot (Linux); elsewhere one per process, so each process rehashes once."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"process-{os.getpid()}-{uuid.uuid4().hex}"


@contextlib.contextmanager
def exclusive(path: Path, waiting: str, notice: FillNotice | None) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (across processes and, on a shared volume, pods),
    telling ``notice`` the ``waiting`` line when another holder is there first."""
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if notice:
                notice(waiting)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
