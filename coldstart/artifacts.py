"""Model artifacts with identity: push a folder as an immutable version, list and resolve them.

Layout in a repository URI: ``REPO/NAME/VERSION/manifest.json`` beside the version's files. The
manifest is written last, so a version is visible only once all its files are there.

A reference resolves to an immutable digest before anything is cached:
``REPO/NAME`` (the newest version), ``REPO/NAME@v1``, ``REPO/NAME@sha256:…``, or any folder
without a manifest (a path, ``file://``, an ``s3://`` prefix written by other tools), whose
manifest is computed from the listing (sizes and ETags) and pinned to that digest.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from zeroserve.coldstart.errors import ArtifactNotFound, ImmutableVersion, ReferenceError_
from zeroserve.coldstart.manifest import (
    MANIFEST_NAME,
    ArtifactManifest,
    FileEntry,
    manifest_of_folder,
)
from zeroserve.coldstart.stores import ObjectStore, open_store

VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
UPLOAD_WORKERS = 8


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: where the model lives, and an optional version or digest pin."""

    location: str
    version: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Split ``LOCATION[@VERSION|@sha256:HEX]``; refuse anything else with the accepted form."""
        text = text.strip()
        location, at, pin = text.rpartition("@")
        if not at or "/" in pin:  # no pin (an "@" before a "/" belongs to the location)
            location, pin = text, ""
        location = location.rstrip("/")
        if not location:
            raise ReferenceError_(
                f"model reference {text!r} has no location; e.g. s3://b/m/iris@v1"
            )
        if not pin:
            return cls(location)
        if pin.startswith("sha256:"):
            if not DIGEST.match(pin):
                raise ReferenceError_(f"{text!r}: a digest pin is sha256: and 64 hex digits")
            return cls(location, digest=pin)
        if not VERSION.match(pin):
            raise ReferenceError_(
                f"{text!r}: version {pin!r} must be letters, digits, '.', '_' or '-' (e.g. v1)"
            )
        return cls(location, version=pin)

    def __str__(self) -> str:
        pin = self.version or self.digest
        return f"{self.location}@{pin}" if pin else self.location


@dataclass(frozen=True)
class ResolvedArtifact:
    """A reference pinned to a manifest, with the store its files are read from."""

    ref: ModelRef
    store: ObjectStore
    manifest: ArtifactManifest

    @property
    def digest(self) -> str:
        return self.manifest.digest


def resolve(reference: str | ModelRef) -> ResolvedArtifact:
    """Pin a reference to an immutable manifest (see the module docstring for the forms)."""
    ref = reference if isinstance(reference, ModelRef) else ModelRef.parse(reference)
    if ref.version:
        resolved = _versioned(ref, f"{ref.location}/{ref.version}")
    else:
        resolved = _unversioned(ref)
    if ref.digest and resolved.digest != ref.digest:
        raise ArtifactNotFound(f"{ref}: the artifact there has digest {resolved.digest}")
    return resolved


def _versioned(ref: ModelRef, folder: str) -> ResolvedArtifact:
    store = open_store(folder)
    try:
        manifest = ArtifactManifest.from_json(store.read_bytes(MANIFEST_NAME))
    except ArtifactNotFound:
        raise ArtifactNotFound(
            f"{ref}: no version {ref.version} ({folder}/{MANIFEST_NAME})"
        ) from None
    return ResolvedArtifact(ref, store, manifest)


def _unversioned(ref: ModelRef) -> ResolvedArtifact:
    store = open_store(ref.location)
    listing = store.list()
    if any(item.key == MANIFEST_NAME for item in listing):
        return ResolvedArtifact(
            ref, store, ArtifactManifest.from_json(store.read_bytes(MANIFEST_NAME))
        )
    versions = _version_manifests(store, [item.key for item in listing])
    if versions:
        if ref.digest:
            matching = [m for m in versions if m.digest == ref.digest]
            if not matching:
                raise ArtifactNotFound(f"{ref}: no version of {ref.location} has this digest")
            chosen = matching[0]
        else:
            chosen = max(versions, key=lambda manifest: (manifest.created, manifest.version))
        return ResolvedArtifact(ref, open_store(f"{ref.location}/{chosen.version}"), chosen)
    if not listing:
        raise ArtifactNotFound(f"{ref.location}: nothing there; check the URI")
    files = tuple(FileEntry(item.key, item.size, f"etag:{item.etag}") for item in listing)
    return ResolvedArtifact(ref, store, ArtifactManifest(files=files))


def _version_manifests(store: ObjectStore, keys: list[str]) -> list[ArtifactManifest]:
    manifest_keys = [
        key for key in keys if key.count("/") == 1 and key.endswith(f"/{MANIFEST_NAME}")
    ]
    return [ArtifactManifest.from_json(store.read_bytes(key)) for key in manifest_keys]


def local_folder(uri: str, *, base: Path | None = None) -> Path | None:
    """The folder a URI names on this machine (a path, ``file://``, ``pvc://NAME/PATH``), else None.

    ``pvc://NAME/PATH`` is a volume already mounted at ``$ZEROSERVE_PVC_ROOT/NAME`` (default
    ``/mnt/pvc/NAME``): it is used in place, with no copy. Relative paths resolve against ``base``.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "pvc":
        root = Path(os.environ.get("ZEROSERVE_PVC_ROOT", "/mnt/pvc"))
        return root / parsed.netloc / parsed.path.lstrip("/")
    if parsed.scheme not in ("", "file"):
        return None
    path = Path(parsed.path if parsed.scheme else uri).expanduser()
    return path if path.is_absolute() or base is None else base / path


def list_versions(location: str) -> list[ArtifactManifest]:
    """Every pushed version under ``REPO/NAME``, oldest first."""
    store = open_store(location)
    versions = _version_manifests(store, [item.key for item in store.list()])
    return sorted(versions, key=lambda manifest: (manifest.created, manifest.version))


def push(
    folder: Path,
    repository: str,
    *,
    name: str,
    version: str,
    labels: dict[str, str] | None = None,
    framework: dict[str, str] | None = None,
) -> tuple[ArtifactManifest, bool]:
    """Upload ``folder`` as ``REPOSITORY/NAME/VERSION``; return (manifest, whether it uploaded).

    Pushing the same content again is a no-op; other content under an existing version raises
    ImmutableVersion.
    """
    if not folder.is_dir():
        raise ReferenceError_(f"{folder} is not a folder; push takes the model's folder")
    ModelRef.parse(f"{repository}/{name}@{version}")  # validates the version's form
    manifest = manifest_of_folder(
        folder, name=name, version=version, labels=labels, framework=framework
    )
    target = open_store(f"{repository.rstrip('/')}/{name}/{version}")
    if target.exists(MANIFEST_NAME):
        existing = ArtifactManifest.from_json(target.read_bytes(MANIFEST_NAME))
        if existing.digest == manifest.digest:
            return existing, False
        raise ImmutableVersion(
            f"{repository}/{name}@{version} exists with other content ({existing.digest}); "
            "versions are immutable: push under a new --version"
        )
    with ThreadPoolExecutor(UPLOAD_WORKERS) as pool:
        uploads = [
            pool.submit(target.write_file, entry.path, folder / entry.path)
            for entry in manifest.files
        ]
        for upload in uploads:
            upload.result()
    target.write_bytes(MANIFEST_NAME, manifest.to_json().encode())
    return manifest, True
