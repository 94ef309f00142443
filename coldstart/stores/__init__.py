"""Object stores behind one small interface, one module per scheme, chosen by ``open_store``.

``s3://`` (boto3), ``file://`` and plain paths (local folders), and fsspec for every other
scheme. Third-party errors are translated at this boundary (``translate``) into ColdStartError
subclasses whose message names the URI and what to do.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from zeroserve.coldstart.stores.base import ObjectInfo, ObjectStore
from zeroserve.coldstart.stores.fsspec_store import FsspecStore
from zeroserve.coldstart.stores.local import LocalStore
from zeroserve.coldstart.stores.s3 import S3Store
from zeroserve.coldstart.stores.translate import translated

__all__ = [
    "FsspecStore",
    "LocalStore",
    "ObjectInfo",
    "ObjectStore",
    "S3Store",
    "open_store",
    "translated",
]


def open_store(uri: str) -> ObjectStore:
    """The store for a folder URI: ``s3://``, ``file://``, a plain path, or any fsspec URL."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return S3Store(uri)
    if parsed.scheme in ("", "file"):
        return LocalStore(Path(parsed.path if parsed.scheme else uri).expanduser())
    return FsspecStore(uri)
