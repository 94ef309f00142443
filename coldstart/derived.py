"""Derived entries: files made from a cached model (an ONNX conversion), kept in the same
content-addressed cache and found again by what they were made from.

``derived/<key>.json`` maps a key (a hash of the source's digest and how it was derived) to the
entry's digest; the entry itself is an ordinary, verified cache entry, so it is leased, evicted
and rehashed like any other. A key whose entry was evicted is made again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from zeroserve.coldstart.artifacts import ModelRef, ResolvedArtifact
from zeroserve.coldstart.cache import Lease, ModelCache
from zeroserve.coldstart.manifest import manifest_of_folder
from zeroserve.coldstart.stores.local import LocalStore

Make = Callable[[Path], None]  # writes the derived files into the (empty) folder it is given


def derived_key(*parts: str) -> str:
    """One key for everything a derivation depends on (source digest, tool versions, options)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def derived_entry(cache: ModelCache, key: str, make: Make, *, name: str) -> Lease:
    """A lease on the entry derived under ``key``: the cached one, else made by ``make`` now.

    ``make`` runs in a scratch folder; only what it wrote completely becomes an entry (by the
    cache's own atomic fill), so a failed or killed derivation leaves nothing behind."""
    index = cache.root / "derived" / f"{key}.json"
    if index.is_file():
        lease = cache.cached(json.loads(index.read_text())["digest"])
        if lease is not None:
            return lease
    with tempfile.TemporaryDirectory(dir=cache.root, prefix="deriving-") as scratch:
        folder = Path(scratch)
        make(folder)
        manifest = manifest_of_folder(folder, name=name)
        artifact = ResolvedArtifact(ModelRef.parse(str(folder)), LocalStore(folder), manifest)
        lease = cache.materialize(artifact)
    index.parent.mkdir(exist_ok=True)
    partial = index.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps({"digest": lease.digest, "name": name}))
    os.replace(partial, index)
    return lease
