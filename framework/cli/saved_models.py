"""Saved models served with no code: a model file, a folder of them, or a model artifact's URI.

Each model becomes a subclass of its format's built-in predictor (``zeroserve.predictors``) in a
generated ``model.py``, which ``serve`` (every engine), ``render`` and ``deploy`` then handle as
any user's code: the same spec, schema, batching and manifests. Formats come from ``--format``,
the artifact's ``framework`` field (``push --framework``), or the files (names, then bytes).
In a folder of several model files, one that cannot be served is skipped with one line naming
the file, the format and what to install; the others are served.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from zeroserve.errors import UsageError

if TYPE_CHECKING:
    from zeroserve.predictors.formats import Format

REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://")
CODE_SPEC_FILE = "zeroserve-spec.json"  # what marks a code artifact (targets/kserve/package.py)
SOURCE_FILE = "model.py"
# rows of concurrent requests share one call; as many requests per replica as a batch holds
DEFAULT_BATCHING = "concurrency=32, batching=Batching(max_batch_size=32, max_latency_ms=2.0)"
RUNTIME_MODULES = {"sklearn"}  # in the shared runtime image (its default extra)
MODEL_FORMATS = ("sklearn", "skops", "xgboost", "lightgbm", "onnx", "torch", "transformers")
format_option = click.option(
    "--format",
    "model_format",
    type=click.Choice(MODEL_FORMATS),
    default=None,
    help="The format of a saved model [default: the artifact's framework, or the file's].",
)


@dataclass(frozen=True)
class SavedModel:
    """One saved model and how the generated predictor finds it."""

    name: str
    uri: str  # the declaration's model_uri: a local folder or an artifact URI
    file: str  # the model file in that folder; "" for a whole folder (Hugging Face)
    format: str


@contextlib.contextmanager
def code_for(
    target: str, declared_format: str | None, optimize: str | None, cache: object | None
) -> Iterator[str]:
    """``target`` itself where it is code; else the folder of a generated predictor file for
    its saved models, removed on exit (``optimize="onnx"`` converts them first, into ``cache``)."""
    models = saved_models(target, declared_format)
    if models is None:
        if declared_format or optimize:
            raise UsageError("--format and --optimize go with a saved model, not with Python code")
        yield target
        return
    with contextlib.ExitStack() as leases:
        if optimize:
            from zeroserve.cli.optimize import optimized

            models = [optimized(model, cache, leases) for model in models]
        folder = Path(tempfile.mkdtemp(prefix="zeroserve-saved-"))
        try:
            write_predictors(models, folder)
            yield str(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def saved_models(target: str, declared_format: str | None = None) -> list[SavedModel] | None:
    """The saved models ``target`` names, or None where it is Python code (or a code artifact)."""
    if REMOTE.match(target):
        from zeroserve.coldstart.artifacts import local_folder

        mounted = local_folder(target)  # file://, or pvc:// (a volume mounted here)
        if mounted is None:
            return _remote_models(target, declared_format)
        found = _local_models(mounted, declared_format)
        return [_mounted(model, target, mounted) for model in found] if found else None
    return _local_models(Path(target).expanduser(), declared_format)


def _local_models(path: Path, declared_format: str | None) -> list[SavedModel] | None:
    if not path.exists() or path.suffix == ".py":
        return None
    if path.is_dir() and any(path.glob("*.py")):
        return None
    from zeroserve.predictors.formats import model_files

    files = [path] if path.is_file() else model_files(path)
    if not files:
        return None  # find_predictors says what a folder needs
    return _servable([_local_model(file, declared_format) for file in files])


def _mounted(model: SavedModel, uri: str, mounted: Path) -> SavedModel:
    """``model`` found at ``mounted``, named by the URI that mounts it (``pvc://claim/iris``),
    so a pod reads it from its own mount of the same volume."""
    base = uri.rstrip("/") if mounted.is_dir() else uri.rsplit("/", 1)[0]
    relative = Path(model.uri).relative_to(mounted if mounted.is_dir() else mounted.parent)
    folder = base if str(relative) == "." else f"{base}/{relative.as_posix()}"
    return replace(model, uri=folder)


def _local_model(path: Path, declared_format: str | None) -> SavedModel | UsageError:
    from zeroserve.predictors.formats import detect

    try:
        fmt = detect(path, declared_format)
    except UsageError as exc:
        return exc
    resolved = path.resolve()
    if path.is_dir():
        return SavedModel(model_name(resolved.name), str(resolved), "", fmt.name)
    return SavedModel(model_name(path.stem), str(resolved.parent), path.name, fmt.name)


def _servable(found: list[SavedModel | UsageError]) -> list[SavedModel]:
    models = [item for item in found if isinstance(item, SavedModel)]
    problems = [item for item in found if isinstance(item, UsageError)]
    if not models:
        raise problems[0]
    for problem in problems:
        click.secho(f"warning: not serving it: {problem}", err=True, fg="yellow")
    names = [model.name for model in models]
    for name in set(names):
        if names.count(name) > 1:
            raise UsageError(f"two model files are both named '{name}'; rename one of them")
    return models


def _remote_models(uri: str, declared_format: str | None) -> list[SavedModel] | None:
    from zeroserve.coldstart.artifacts import ModelRef, resolve
    from zeroserve.predictors.formats import OWN_FILES_PREFIX, FormatError, format_named

    manifest = resolve(uri).manifest
    paths = [entry.path for entry in manifest.files]
    if CODE_SPEC_FILE in paths:
        return None
    named = declared_format or manifest.framework.get("framework")
    fmt = format_named(named) if named else _format_of_files(uri, paths)
    if importlib.util.find_spec(fmt.module) is None:
        raise FormatError(
            f"{uri} is a {fmt.name} model but {fmt.module} is not installed; pip install "
            f"{fmt.package}"
        )
    file = ""
    if fmt.name != "transformers":
        candidates = [
            p
            for p in paths
            if "/" not in p and p.endswith(fmt.suffixes) and not p.startswith(OWN_FILES_PREFIX)
        ]
        if len(candidates) != 1:
            raise FormatError(
                f"{uri} holds {len(candidates)} {fmt.name} model files at its top "
                f"({', '.join(candidates) or 'none'}); push one model per artifact"
            )
        file = candidates[0]
    location = ModelRef.parse(uri).location.rstrip("/")
    name = model_name(manifest.name or location.rsplit("/", 1)[-1])
    return [SavedModel(name, uri, file, fmt.name)]


def _format_of_files(uri: str, paths: list[str]) -> Format:
    from zeroserve.predictors.formats import FORMATS, FormatError

    if "config.json" in paths:
        return FORMATS["transformers"]
    for fmt in FORMATS.values():
        if any("/" not in p and p.endswith(fmt.suffixes) for p in paths):
            return fmt
    raise FormatError(
        f"{uri}: no file of a built-in format at its top ({', '.join(paths[:5])}); push it with "
        "--framework NAME or serve it with --format NAME"
    )


def model_name(stem: str) -> str:
    """A DNS label from a file or folder name: ``Iris_RF.v2`` -> ``iris-rf-v2``."""
    label = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-")
    return re.sub(r"-{2,}", "-", label)[:63].strip("-") or "model"


def write_predictors(models: list[SavedModel], folder: Path) -> Path:
    """Write ``model.py``: one built-in predictor subclass per model (its requirements too)."""
    from zeroserve.predictors.formats import FORMATS

    lines = ['"""Saved models, served by zeroserve\'s built-in predictors (generated)."""', ""]
    lines.append("from zeroserve import Batching, predictor")
    bases = sorted({FORMATS[model.format].predictor for model in models})
    lines += [f"from zeroserve.predictors.{base.replace(':', ' import ')}" for base in bases]
    for index, model in enumerate(models):
        fmt = FORMATS[model.format]
        base = fmt.predictor.split(":")[1]
        lines += ["", ""]  # every format predicts a batch in one call: batching is on
        declared = f"name={model.name!r}, model_uri={model.uri!r}, {DEFAULT_BATCHING}"
        lines.append(f"@predictor({declared})")
        lines.append(f"class SavedModel{index}({base}):")
        lines.append(f"    model_file = {model.file!r}")
    source = folder / SOURCE_FILE
    source.write_text("\n".join(lines) + "\n")
    needed = requirements_of(models)
    if needed:  # a pod installs them once into the cache's environments (as for any code)
        (folder / "requirements.txt").write_text("\n".join(needed) + "\n")
    return source


def requirements_of(models: list[SavedModel]) -> list[str]:
    """The distributions the models' libraries come from here, beyond the runtime image's own
    (scikit-learn): what a pod on the shared runtime must install to load them."""
    from importlib.metadata import packages_distributions

    from zeroserve.predictors.formats import FORMATS

    modules = {FORMATS[model.format].module for model in models}
    if any(model.format in ("transformers", "torch-onnx") for model in models):
        modules.add("torch")
    installed = packages_distributions()
    found = set()
    for module in modules - RUNTIME_MODULES:
        dists = installed.get(module, [])
        if dists:  # one of them (xgboost and xgboost-cpu both give the module xgboost)
            found.add(module if module in dists else dists[0])
    return sorted(found)


def with_uri(model: SavedModel, uri: str, file: str, fmt: str) -> SavedModel:
    return replace(model, uri=uri, file=file, format=fmt)
