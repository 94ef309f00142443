"""``--optimize onnx``: a saved model converted to ONNX once, checked, kept in the cache.

The conversion runs before any worker starts; its result is a derived cache entry keyed by the
source file's hash and the converters' versions, so the next start finds it and converts nothing.
A conversion that disagrees with the original is refused (``zeroserve.predictors.onnx_convert``
says how agreement is judged), and nothing is cached.
"""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from typing import Any

from rich.console import Console

from zeroserve.cli.saved_models import SavedModel, with_uri
from zeroserve.errors import UsageError

CONVERTED_FILE = "model.onnx"


def optimized(model: SavedModel, cache: Any, leases: contextlib.ExitStack) -> SavedModel:
    """``model`` served from its checked ONNX conversion (a lease held until ``leases`` close)."""
    from zeroserve.coldstart.derived import derived_entry, derived_key
    from zeroserve.coldstart.manifest import hash_file
    from zeroserve.predictors.formats import FORMATS
    from zeroserve.predictors.onnx_convert import CONVERTIBLE, converter_versions

    if model.format == "onnx":
        return model
    if model.format not in CONVERTIBLE:
        raise UsageError(
            f"--optimize onnx converts {', '.join(CONVERTIBLE)} models; {model.name} is "
            f"{model.format}: serve it without --optimize"
        )
    source = _source_file(model, cache, leases)
    key = derived_key("onnx", model.format, hash_file(source), converter_versions())

    def convert(folder: Path) -> None:
        with Console(stderr=True).status(f"converting {model.name} ({source.name}) to ONNX…"):
            _convert_checked(model, source, folder / CONVERTED_FILE)

    lease = derived_entry(cache, key, convert, name=f"{model.name} as ONNX")
    leases.callback(lease.release)
    served = FORMATS["torch-onnx" if model.format == "torch" else "onnx"]
    return with_uri(model, str(lease.path), CONVERTED_FILE, served.name)


def _source_file(model: SavedModel, cache: Any, leases: contextlib.ExitStack) -> Path:
    from zeroserve.coldstart.artifacts import local_folder
    from zeroserve.coldstart.preload import lease_reference

    folder = local_folder(model.uri)
    if folder is None:
        lease = lease_reference(model.uri, cache)
        leases.callback(lease.release)
        folder = lease.path
    return folder / model.file


def _convert_checked(model: SavedModel, source: Path, destination: Path) -> None:
    from zeroserve.predictors.formats import FORMATS
    from zeroserve.predictors.onnx_convert import disagreement, write_onnx

    module_name, class_name = FORMATS[model.format].predictor.split(":")
    module = importlib.import_module(f"zeroserve.predictors.{module_name}")
    original = getattr(module, class_name)()
    try:
        original.read(source)
        write_onnx(original, model.format, destination)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(
            f"--optimize onnx: {source.name} of model '{model.name}' could not be converted "
            f"({type(exc).__name__}: {exc}); serve it without --optimize"
        ) from None
    why = disagreement(original, destination)
    if why:
        raise UsageError(
            f"--optimize onnx: the ONNX conversion of model '{model.name}' ({source.name}) "
            f"disagrees with the original: {why}; not serving it (serve it without --optimize)"
        )
