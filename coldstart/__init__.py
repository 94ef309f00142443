"""zeroserve.coldstart: model artifacts, the shared content-addressed cache, fetch and preload.

This layer knows files, URIs and bytes only: it never imports an HTTP server, Kubernetes, or the
``zeroserve`` framework above it.
"""

from zeroserve.coldstart.artifacts import ModelRef, ResolvedArtifact, list_versions, push, resolve
from zeroserve.coldstart.cache import EntryInfo, Lease, ModelCache
from zeroserve.coldstart.errors import (
    ArtifactNotFound,
    CacheFull,
    CacheNotWritable,
    ColdStartError,
    DependencyError,
    DiskFull,
    ImmutableVersion,
    IntegrityError,
    StoreAccessError,
    UnsafeManifest,
)
from zeroserve.coldstart.manifest import ArtifactManifest, FileEntry, manifest_of_folder
from zeroserve.coldstart.preload import exit_code_for, preload
from zeroserve.coldstart.timeline import StartupTimeline, active_timeline

__all__ = [
    "ArtifactManifest",
    "ArtifactNotFound",
    "CacheFull",
    "CacheNotWritable",
    "ColdStartError",
    "DependencyError",
    "DiskFull",
    "EntryInfo",
    "FileEntry",
    "ImmutableVersion",
    "IntegrityError",
    "Lease",
    "ModelCache",
    "ModelRef",
    "ResolvedArtifact",
    "StartupTimeline",
    "active_timeline",
    "StoreAccessError",
    "UnsafeManifest",
    "exit_code_for",
    "list_versions",
    "manifest_of_folder",
    "preload",
    "push",
    "resolve",
]
