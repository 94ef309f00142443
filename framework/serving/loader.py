"""Find the @predictor classes in a file or a folder given on the command line."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from zeroserve.errors import SpecError, UsageError
from zeroserve.spec.decorator import Declaration, declaration_of


@dataclass(frozen=True)
class FoundPredictor:
    """A decorated class, where it was defined, and its declaration."""

    cls: type
    declaration: Declaration
    source: Path

    @property
    def name(self) -> str:
        return self.declaration.spec.name


def find_predictors(target: str) -> list[FoundPredictor]:
    """Import ``PATH`` or ``PATH:CLASS`` and return its predictors (one, or all of them)."""
    path_text, _, class_name = target.partition(":")
    path = Path(path_text).expanduser()
    if not path.exists():
        raise UsageError(
            f"{path_text}: no such file or folder; give a .py file or a folder of them"
        )
    found = [item for file in python_files(path_text) for item in _predictors_in(file)]
    if class_name:
        found = [item for item in found if item.cls.__name__ == class_name]
        if not found:
            raise UsageError(f"{path_text} has no @predictor class named {class_name}")
    if not found:
        raise UsageError(
            f"no @predictor class found in {path_text}; decorate a class with "
            "`@predictor` (from zeroserve import predictor)"
        )
    _check_unique_names(found)
    return found


def python_files(target: str) -> list[Path]:
    """The .py files ``PATH[:CLASS]`` names: the file itself, or a folder's, sorted."""
    path = Path(target.partition(":")[0]).expanduser()
    return sorted(path.glob("*.py")) if path.is_dir() else [path]


def _predictors_in(file: Path) -> list[FoundPredictor]:
    if file.suffix != ".py":
        raise UsageError(f"{file} is not a Python file; give a .py file or a folder of them")
    module = _import_file(file.resolve())
    found = []
    for value in vars(module).values():
        if isinstance(value, type) and value.__module__ == module.__name__:
            declaration = declaration_of(value)
            if declaration is not None:
                found.append(FoundPredictor(value, declaration, file.resolve()))
    return found


def _import_file(file: Path) -> ModuleType:
    digest = hashlib.sha256(str(file).encode()).hexdigest()[:12]
    module_name = f"zeroserve_user_{file.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise UsageError(f"{file} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(file.parent))  # so the model file can import its neighbours
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SpecError:
        del sys.modules[module_name]
        raise
    except Exception as exc:
        del sys.modules[module_name]
        where = _user_frame(exc, file)
        raise UsageError(
            f"importing {file.name} failed{where}: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _user_frame(exc: BaseException, file: Path) -> str:
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" at line {exc.lineno}"
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == file:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" at line {line}" if line else ""


def _check_unique_names(found: list[FoundPredictor]) -> None:
    seen: dict[str, FoundPredictor] = {}
    for item in found:
        other = seen.setdefault(item.name, item)
        if other is not item:
            raise UsageError(
                f"two predictors are named '{item.name}' ({other.cls.__name__} in "
                f"{other.source.name} and {item.cls.__name__} in {item.source.name}); "
                "give one of them another name="
            )
