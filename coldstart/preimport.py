"""Import, ahead of ``load()``, the modules a model's pickles will need.

Unpickling a scikit-learn model imports ``sklearn.ensemble`` and friends: about 2 s here, paid
by every fresh worker. A fork server that imported them once pays it never again. The pickle
is not executed: its opcodes are read (``pickletools``) up to the first one that is not pickle
(joblib stores arrays raw after their wrapper), and the module of each global is imported.
"""

from __future__ import annotations

import importlib
import logging
import pickletools
from pathlib import Path

PICKLE_SUFFIXES = frozenset({".joblib", ".pkl", ".pickle"})
MAX_FILES = 20
MAX_OPCODES = 200_000
STRING_OPCODES = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"})
logger = logging.getLogger("zeroserve")


def modules_in_pickle(path: Path) -> set[str]:
    """Top modules named by the globals in a pickle (or joblib) file, without unpickling it."""
    modules: set[str] = set()
    strings: list[str] = []
    try:
        with path.open("rb") as stream:
            for count, (opcode, argument, _) in enumerate(pickletools.genops(stream)):
                if count > MAX_OPCODES:
                    break
                if opcode.name in STRING_OPCODES:
                    strings = [*strings[-1:], str(argument)]
                elif opcode.name == "STACK_GLOBAL" and len(strings) == 2:
                    modules.add(strings[0])
                elif opcode.name in ("GLOBAL", "INST"):
                    modules.add(str(argument).split(" ")[0])
    except (ValueError, EOFError, OSError, UnicodeDecodeError):
        pass  # the end of the pickle part (joblib's raw arrays), or not a pickle
    return {name for name in modules if name and not name.startswith("__")}


def preimport_pickled_modules(folder: Path) -> list[str]:
    """Import the modules the pickles in ``folder`` refer to; return those imported."""
    files = [path for path in sorted(folder.rglob("*")) if path.suffix in PICKLE_SUFFIXES]
    imported = []
    for name in sorted(
        {module for path in files[:MAX_FILES] for module in modules_in_pickle(path)}
    ):
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - load() will report it in its own words
            logger.debug("pre-import of %s failed: %s", name, exc)
            continue
        imported.append(name)
    return imported
