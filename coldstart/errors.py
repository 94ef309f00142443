"""Errors of the cold-start subsystem; each message names the URI or path and what to do.

Hierarchy::

    ColdStartError             root of every error zeroserve.coldstart raises on purpose
    ├── ReferenceError_        a model reference that cannot be parsed or resolved
    │   └── ArtifactNotFound   no such bucket, key, version or digest
    ├── StoreAccessError       the object store refused: no credentials, access denied, unreachable
    ├── ImmutableVersion       pushing a version that exists with other content
    ├── UnsafeManifest         a manifest path escapes its folder (.., absolute, symlink)
    ├── IntegrityError         bytes that do not match their manifest (size or sha256)
    ├── CacheFull              the cache cannot hold an entry, even after eviction
    ├── DiskFull               the filesystem ran out of space while writing
    ├── CacheNotWritable       the cache folder cannot be written by this process
    └── DependencyError        a model's locked requirement that cannot be installed
"""

from __future__ import annotations


class ColdStartError(Exception):
    """Root of every error zeroserve.coldstart raises on purpose."""


class ReferenceError_(ColdStartError):  # noqa: N801 - the builtin name is taken
    """A model reference that cannot be parsed or resolved."""


class ArtifactNotFound(ReferenceError_):
    """The bucket, key, version or digest does not exist."""


class StoreAccessError(ColdStartError):
    """The object store refused the request or could not be reached."""


class ImmutableVersion(ColdStartError):
    """A version that exists already was pushed again with other content."""


class UnsafeManifest(ColdStartError):
    """A manifest names a path outside its folder."""


class IntegrityError(ColdStartError):
    """Bytes that do not match their manifest."""


class CacheFull(ColdStartError):
    """The cache cannot hold an entry within its budget."""


class DiskFull(ColdStartError):
    """The filesystem ran out of space while writing."""


class DependencyError(ColdStartError):
    """A model's locked requirement that cannot be installed (no such version, no index)."""


class CacheNotWritable(ColdStartError):
    """The cache folder (a pod's shared volume) cannot be created or written by this process."""
