"""Artifact manifests: every file's path, size and sha256, and the digest of the whole.

The digest is the sha256 of the canonical JSON of the sorted (path, size, sha256) triples, so the
same files give the same digest wherever they are stored. Paths are relative POSIX paths inside
the artifact; any that could escape it are refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from zeroserve.coldstart.errors import UnsafeManifest

MANIFEST_NAME = "manifest.json"
HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileEntry:
    """One file of an artifact. ``sha256`` may instead be an ``etag:`` pin for foreign folders."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ArtifactManifest:
    """The files of one immutable artifact version and their digest."""

    files: tuple[FileEntry, ...]
    name: str = ""
    version: str = ""
    created: float = 0.0
    framework: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for entry in self.files:
            check_safe_path(entry.path)
        paths = [entry.path for entry in self.files]
        if len(set(paths)) != len(paths):
            raise UnsafeManifest("manifest lists a path twice")

    @property
    def digest(self) -> str:
        return digest_of(self.files)

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files)

    @property
    def verifiable(self) -> bool:
        """True when every file carries a sha256 (not only an ETag pin)."""
        return all(not entry.sha256.startswith("etag:") for entry in self.files)

    def to_json(self) -> str:
        body = {
            "digest": self.digest,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "framework": self.framework,
            "labels": self.labels,
            "files": [entry.__dict__ for entry in sorted(self.files, key=lambda e: e.path)],
        }
        return json.dumps(body, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ArtifactManifest:
        data: dict[str, Any] = json.loads(text)
        files = tuple(FileEntry(f["path"], int(f["size"]), f["sha256"]) for f in data["files"])
        manifest = cls(
            files=files,
            name=data.get("name", ""),
            version=data.get("version", ""),
            created=float(data.get("created", 0.0)),
            framework=dict(data.get("framework", {})),
            labels=dict(data.get("labels", {})),
        )
        if data.get("digest") and data["digest"] != manifest.digest:
            raise UnsafeManifest(
                f"manifest digest {data['digest']} does not match its files ({manifest.digest})"
            )
        return manifest


def digest_of(files: Iterable[FileEntry]) -> str:
    canonical = sorted((entry.path, entry.size, entry.sha256) for entry in files)
    return "sha256:" + hashlib.sha256(json.dumps(canonical).encode()).hexdigest()


def check_safe_path(path: str) -> None:
    """Refuse a manifest path that is absolute, empty, or climbs out with ``..``."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or "\\" in path or ".." in pure.parts or path != str(pure):
        raise UnsafeManifest(
            f"manifest path {path!r} is not a plain relative path inside the artifact; refusing it"
        )


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_of_folder(
    folder: Path,
    *,
    name: str = "",
    version: str = "",
    labels: dict[str, str] | None = None,
    framework: dict[str, str] | None = None,
) -> ArtifactManifest:
    """Hash every regular file under ``folder``; symlinks that leave it are refused."""
    root = folder.resolve()
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            raise UnsafeManifest(f"{path} is a symlink out of {folder}; copy the file instead")
        if not path.is_file() or path.name == MANIFEST_NAME and path.parent == folder:
            continue
        relative = path.relative_to(folder).as_posix()
        entries.append(FileEntry(relative, path.stat().st_size, hash_file(path)))
    return ArtifactManifest(
        files=tuple(entries),
        name=name,
        version=version,
        created=time.time(),
        framework=framework or {},
        labels=labels or {},
    )


def safe_join(root: Path, relative: str) -> Path:
    """``root / relative`` after checking that it stays inside ``root`` (symlinks included)."""
    check_safe_path(relative)
    target = root / relative
    resolved_parent = target.parent.resolve()
    if not resolved_parent.is_relative_to(root.resolve()):
        raise UnsafeManifest(f"{relative!r} resolves outside {root} through a symlink")
    return target


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
