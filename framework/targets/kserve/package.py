"""Code artifacts: a predictor's folder, its serialized spec and a lock of its requirements.

The code ships next to the weights and runs in the shared runtime image, so a deploy needs no
image build and a cold start pulls no new image. The artifact is content-addressed: the same
code gives the same digest, wherever it is built.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import re
import shutil
from pathlib import Path

from zeroserve.coldstart import ArtifactManifest, manifest_of_folder, push
from zeroserve.coldstart.dependencies import LOCK_FILE
from zeroserve.errors import UsageError
from zeroserve.serving.loader import FoundPredictor

SPEC_FILE = "zeroserve-spec.json"
SKIPPED = {"__pycache__", ".git", ".venv", "venv", ".tox", ".mypy_cache", ".pytest_cache"}
# Credentials by convention: never shipped, whatever .zeroserveignore says.
SECRETS = (".env", ".env.*", ".netrc", ".pypirc", ".git-credentials", "*.pem", "id_rsa*")
IGNORE_FILE = ".zeroserveignore"
REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def code_name(found: FoundPredictor) -> str:
    return f"{found.name}-code"


def stage(found: list[FoundPredictor], destination: Path) -> Path:
    """Copy the predictors' folder into ``destination`` with the spec and the requirements lock."""
    sources = {item.source.parent for item in found}
    if len(sources) != 1:
        raise UsageError("package predictors from one folder at a time")
    (source,) = sources
    refuse_links_out(source)
    patterns = ignore_patterns(source)
    shutil.copytree(
        source,
        destination,
        ignore=lambda folder, names: [
            name for name in names if _left_out(Path(folder) / name, source, patterns)
        ],
    )
    specs = {
        item.name: {
            "class": item.cls.__name__,
            "file": item.source.name,
            "spec": item.declaration.spec.as_json(),
        }
        for item in found
    }
    (destination / SPEC_FILE).write_text(json.dumps(specs, indent=2, sort_keys=True) + "\n")
    requirements = source / "requirements.txt"
    if requirements.is_file():
        (destination / LOCK_FILE).write_text(lock_requirements(requirements))
    return destination


def refuse_links_out(source: Path) -> None:
    """UsageError for a symlink under ``source`` that points outside it (as ``push`` refuses):
    copying it would ship whatever it points to."""
    root = source.resolve()
    for path in source.rglob("*"):
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            raise UsageError(
                f"{path} is a symlink to {path.resolve()}, outside {source}; copy the file into "
                f"the folder, or list it in {IGNORE_FILE} to leave it out"
            )


def ignore_patterns(source: Path) -> list[str]:
    """The folder's ``.zeroserveignore`` lines (gitignore-like globs; # starts a comment)."""
    ignore_file = source / IGNORE_FILE
    if not ignore_file.is_file():
        return []
    lines = (line.split("#", 1)[0].strip() for line in ignore_file.read_text().splitlines())
    return [line for line in lines if line]


def _left_out(path: Path, source: Path, patterns: list[str]) -> bool:
    name = path.name
    if not path.is_dir() and not path.is_file():  # a socket, a pipe, a broken link
        return True
    if name in SKIPPED or name.endswith((".pyc", ".partial")) or name == IGNORE_FILE:
        return True
    if any(fnmatch.fnmatch(name, secret) for secret in SECRETS):
        return True
    relative = path.relative_to(source).as_posix()
    for pattern in patterns:
        if pattern.endswith("/") and not path.is_dir():
            continue
        glob = pattern.strip("/")
        anchored = "/" in pattern.rstrip("/")  # foo/bar or /foo: from the folder's top
        if fnmatch.fnmatch(relative if anchored else name, glob):
            return True
    return False


def lock_requirements(requirements: Path) -> str:
    """Pin each requirement to the version installed here, where the model was tested."""
    pinned = []
    for line in requirements.read_text().splitlines():
        match = REQUIREMENT_NAME.match(line.split("#", 1)[0])
        if not match:
            continue
        name = match.group(1)
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            raise UsageError(
                f"{requirements}: {name} is not installed here; install it and test the model "
                "before packaging, so the lock pins what was tested"
            ) from None
    return "\n".join(sorted(pinned)) + "\n"


def code_manifest(found: list[FoundPredictor], scratch: Path) -> ArtifactManifest:
    """The manifest (and so the digest) the code artifact will have."""
    return manifest_of_folder(stage(found, scratch / "code"))


def publish(found: list[FoundPredictor], repository: str, scratch: Path) -> tuple[str, bool]:
    """Push the code artifact; return its pinned reference and whether it uploaded."""
    folder = stage(found, scratch / "code")
    manifest = manifest_of_folder(folder)
    version = manifest.digest.removeprefix("sha256:")[:16]
    name = code_name(found[0])
    _, uploaded = push(
        folder, repository, name=name, version=version, labels={"zeroserve.dev/kind": "code"}
    )
    return f"{repository.rstrip('/')}/{name}@{manifest.digest}", uploaded


def pinned_model_uris(found: list[FoundPredictor]) -> dict[str, str]:
    """Each remote ``model_uri`` pinned to the digest it names now (``LOCATION@sha256:…``), by
    model: every pod of a revision loads the same weights, whatever is pushed later. A folder
    shipped with the code needs no pin (the code artifact is pinned)."""
    from zeroserve.coldstart import ColdStartError
    from zeroserve.coldstart.artifacts import local_folder, resolve

    pinned = {}
    for item in found:
        uri = item.declaration.spec.model_uri
        if uri is None or local_folder(uri, base=item.source.parent) is not None:
            continue
        try:
            resolved = resolve(uri)
        except ColdStartError as exc:
            raise UsageError(
                f"model '{item.name}': cannot pin model_uri {uri} to a digest ({exc}); render "
                "and deploy read the model store with the same settings (AWS_*) as push"
            ) from None
        pinned[item.name] = f"{resolved.ref.location}@{resolved.digest}"
    return pinned
