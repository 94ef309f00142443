"""Which built-in predictor serves a saved model: from the artifact's ``framework`` field, the
``--format`` a user gave, or the file itself (its name, then its first bytes).

Nothing here imports a model library: a format's package is looked up, not imported, so a missing
one is named before any worker starts, and a file is checked by its bytes, never unpickled.
"""

from __future__ import annotations

import importlib.util
import json
import pickletools
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from zeroserve import UsageError

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
# what a scikit-learn pickle may name besides scikit-learn itself: its numeric stack
PICKLE_SAFE_ROOTS = ("sklearn", "numpy", "scipy", "joblib", "collections", "copyreg", "builtins")


@dataclass(frozen=True)
class Format:
    """A model format and the built-in predictor that serves it."""

    name: str
    predictor: str  # "module:Class" under zeroserve.predictors
    module: str  # the library it imports
    package: str  # what `pip install` needs
    suffixes: tuple[str, ...]


FORMATS = {
    item.name: item
    for item in (
        Format("sklearn", "sklearn:SklearnPredictor", "sklearn", "scikit-learn", PICKLE_SUFFIXES),
        Format("skops", "sklearn:SklearnPredictor", "skops", "skops", (".skops",)),
        Format("xgboost", "xgboost:XGBoostPredictor", "xgboost", "xgboost", (".json", ".ubj")),
        Format("lightgbm", "lightgbm:LightGBMPredictor", "lightgbm", "lightgbm", (".txt",)),
        Format("onnx", "onnx:OnnxPredictor", "onnxruntime", "onnxruntime", (".onnx",)),
        Format("torch", "torch:TorchPredictor", "torch", "torch", (".pt2", ".pt", ".pth")),
        # a torch.export program after --optimize onnx (not a format a file is saved in)
        Format("torch-onnx", "torch:TorchOnnxPredictor", "onnxruntime", "onnxruntime", ()),
        Format(
            "transformers",
            "transformers:TransformersPredictor",
            "transformers",
            "transformers torch",
            (),
        ),
    )
}
ALL_SUFFIXES = tuple(suffix for item in FORMATS.values() for suffix in item.suffixes)
OWN_FILES_PREFIX = "zeroserve-"  # zeroserve's own files in a model folder (a drift reference)
ALIASES = {
    "scikit-learn": "sklearn",
    "pytorch": "torch",
    "huggingface": "transformers",
    "hf": "transformers",
    "onnxruntime": "onnx",
}


class FormatError(UsageError):
    """A saved model that no built-in predictor can serve as it is; the message says why."""


def format_named(text: str) -> Format:
    """``sklearn``, ``xgboost==2.1`` (a push's --framework), an alias: its Format."""
    name = text.split("==")[0].split(">=")[0].strip().lower()
    name = ALIASES.get(name, name)
    if name not in FORMATS:
        raise FormatError(
            f"unknown model format {text!r}; the built-in formats are {', '.join(FORMATS)}"
        )
    return FORMATS[name]


def model_files(folder: Path) -> list[Path]:
    """The files in ``folder`` that some format serves (a Hugging Face folder is one model)."""
    if (folder / "config.json").is_file():
        return [folder]
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file()
        and not path.name.startswith(OWN_FILES_PREFIX)
        and path.name.endswith(ALL_SUFFIXES)
    )


def detect(path: Path, declared: str | None = None) -> Format:
    """The format of a model file (or Hugging Face folder): ``declared`` if given, else from
    its name and bytes; FormatError naming the file when it is not what it claims."""
    fmt = format_named(declared) if declared else _by_name(path)
    check_file(path, fmt)
    return fmt


def _by_name(path: Path) -> Format:
    if path.is_dir():
        if (path / "config.json").is_file():
            return FORMATS["transformers"]
        raise FormatError(f"{path}: a folder without config.json is not a Hugging Face model")
    if path.suffix == ".json":
        return FORMATS["xgboost"]
    for fmt in FORMATS.values():
        if path.suffix in fmt.suffixes:
            return fmt
    raise FormatError(
        f"{path.name}: no built-in format has the suffix {path.suffix or '(none)'}; name the "
        f"file for its format or give --format ({', '.join(FORMATS)})"
    )


def check_file(path: Path, fmt: Format) -> None:
    """FormatError unless ``path`` looks like ``fmt`` and ``fmt``'s library is installed."""
    if importlib.util.find_spec(fmt.module) is None:
        raise FormatError(
            f"{path.name} is a {fmt.name} model but {fmt.module} is not installed; "
            f"pip install {fmt.package}"
        )
    why = _mismatch(path, fmt)
    if why:
        raise FormatError(f"{path.name} is not a {fmt.name} model file: {why}")


def _mismatch(path: Path, fmt: Format) -> str | None:
    if fmt.name == "transformers":
        return None if (path / "config.json").is_file() else "a folder with config.json is needed"
    head = path.read_bytes()[:4096] if path.is_file() else b""
    if not head:
        return "the file is empty" if path.is_file() else "it is not a file"
    if fmt.name == "sklearn":
        return _pickle_mismatch(path, head)
    if fmt.name in ("skops", "torch"):
        return None if zipfile.is_zipfile(path) else "it is not a zip archive"
    if fmt.name == "xgboost":
        return _xgboost_mismatch(path, head)
    if fmt.name == "lightgbm":
        return None if head.startswith(b"tree\n") else "it does not start with LightGBM's 'tree'"
    if fmt.name == "onnx":
        return None if head[0] == 0x08 else "it is not an ONNX protobuf (no ir_version first)"
    return None


def _xgboost_mismatch(path: Path, head: bytes) -> str | None:
    if path.suffix == ".ubj":
        return None if head.startswith(b"{") else "it is not UBJSON"
    try:
        learner = json.loads(path.read_bytes()).get("learner")
    except (ValueError, AttributeError):
        return "it is not JSON"
    return None if isinstance(learner, dict) else "the JSON has no 'learner' object"


def _pickle_mismatch(path: Path, head: bytes) -> str | None:
    """A pickle's classes, read from its opcodes without running it: one outside scikit-learn's
    stack that cannot be imported here is named (loading would fail, or run unknown code)."""
    if head[:1] != b"\x80" and not head.startswith(b"x"):  # protocol 2+, or joblib's zlib
        return "it is not a pickle (no protocol header)"
    if head.startswith(b"x"):
        return None  # compressed by joblib: its classes are checked when it loads
    for module in _pickled_modules(path):
        root = module.split(".")[0]
        if root not in PICKLE_SAFE_ROOTS and importlib.util.find_spec(root) is None:
            return (
                f"it refers to module {module!r}, which is not installed here; install the "
                "package that defines the model's classes, or save the model with skops"
            )
    return None


def _pickled_modules(path: Path) -> list[str]:
    """Module names a pickle's GLOBAL and STACK_GLOBAL opcodes name, up to its first joblib
    array (whose raw bytes follow inline, so the opcodes after it cannot be read)."""
    modules: list[str] = []
    pushed: list[str] = []  # strings pushed just now: STACK_GLOBAL takes the last two
    with path.open("rb") as stream:
        try:
            for opcode, argument, _ in pickletools.genops(stream):
                if opcode.name in _STRING_PUSHES and isinstance(argument, str):
                    pushed.append(argument)
                    continue
                if opcode.name in _MEMO_WRITES:
                    continue
                if opcode.name == "GLOBAL" and isinstance(argument, str):
                    modules.append(argument.split(" ")[0])
                elif opcode.name == "STACK_GLOBAL" and len(pushed) >= 2:
                    modules.append(pushed[-2])
                pushed = []
                if opcode.name == "STOP" or any(m.startswith("joblib") for m in modules):
                    break
        except ValueError:
            pass  # what was read before it is enough
    return [module for module in modules if _MODULE_NAME.match(module)]


_STRING_PUSHES = {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"}
_MEMO_WRITES = {"MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"}
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
