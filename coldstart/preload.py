"""Preload: resolve a model reference, fill the shared cache, expose the folder, read it ahead.

Used by the cache warmer and in process by the runtime
(``python -m zeroserve.coldstart preload URI --cache DIR --into PATH``). Exit codes: 0 ready;
2 bad arguments or reference; 3 not found (a model, or a locked requirement of its code); 4 access
refused (store credentials, permissions, network; or a cache folder this process cannot write);
5 integrity (checksum mismatch or an unsafe manifest); 6 no room (cache budget or disk);
1 anything else.
"""

from __future__ import annotations

import os
from pathlib import Path

from zeroserve.coldstart.artifacts import ModelRef, resolve
from zeroserve.coldstart.cache import FillNotice, Lease, ModelCache
from zeroserve.coldstart.errors import (
    ArtifactNotFound,
    CacheFull,
    CacheNotWritable,
    ColdStartError,
    DependencyError,
    DiskFull,
    ImmutableVersion,
    IntegrityError,
    ReferenceError_,
    StoreAccessError,
    UnsafeManifest,
)
from zeroserve.coldstart.fetch import Progress

# read-ahead order (read_order): what a loader reads before the weights, then the weights
DESCRIPTION_SUFFIXES = {".json", ".jinja", ".txt", ".model", ".tiktoken"}
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".gguf"}

EXIT_CODES: dict[type[ColdStartError], int] = {
    ReferenceError_: 2,
    ImmutableVersion: 2,
    ArtifactNotFound: 3,
    DependencyError: 3,
    StoreAccessError: 4,
    CacheNotWritable: 4,
    IntegrityError: 5,
    UnsafeManifest: 5,
    CacheFull: 6,
    DiskFull: 6,
}


def exit_code_for(error: ColdStartError) -> int:
    for klass in type(error).__mro__:
        if klass in EXIT_CODES:
            return EXIT_CODES[klass]
    return 1


def preload(
    reference: str,
    cache: ModelCache,
    *,
    into: Path | None = None,
    readahead: bool = True,
    progress: Progress | None = None,
) -> Lease:
    """Materialize ``reference`` in ``cache``; link it at ``into``; read its files ahead."""
    lease = lease_reference(reference, cache, progress=progress)
    if into is not None:
        expose(lease.path, into)
    if readahead:
        read_ahead(lease.path)
    return lease


def lease_reference(
    reference: str,
    cache: ModelCache,
    *,
    progress: Progress | None = None,
    notice: FillNotice | None = None,
) -> Lease:
    """The cache's entry for ``reference``: from the cache alone when the reference is pinned by
    a digest the cache holds intact (no store is asked: a pod on a warm cache starts even while
    the store is down), else resolved and filled (or found) through the store."""
    digest = ModelRef.parse(reference).digest
    lease = cache.cached(digest) if digest else None
    return lease or cache.materialize(resolve(reference), progress=progress, notice=notice)


def expose(entry: Path, into: Path) -> None:
    """Make ``into`` show the entry without copying: a symlink, or links inside an empty folder."""
    if into.is_symlink() or not into.exists():
        if into.is_symlink():
            into.unlink()
        into.parent.mkdir(parents=True, exist_ok=True)
        into.symlink_to(entry, target_is_directory=True)
        return
    if any(into.iterdir()):
        raise ReferenceError_(f"{into} is not empty; preload links the model into an empty folder")
    for child in entry.iterdir():
        (into / child.name).symlink_to(child, target_is_directory=child.is_dir())


def read_order(folder: Path) -> list[Path]:
    """The folder's files in the order loaders read them: the small descriptions first (config,
    tokenizer, the safetensors index: an LLM engine reads all of them before any weight), then
    the weight shards in name order (vLLM and transformers load ``model-00001-of-…`` first),
    then the rest."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())

    def rank(path: Path) -> int:
        if path.suffix in DESCRIPTION_SUFFIXES:
            return 0
        return 1 if path.suffix in WEIGHT_SUFFIXES else 2

    return sorted(files, key=rank)


def read_ahead(folder: Path) -> None:
    """Ask the kernel to bring every file into the page cache, so load() reads from memory: in
    the order a loader reads them (``read_order``), since the kernel reads ahead in turn."""
    for path in read_order(folder):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)
