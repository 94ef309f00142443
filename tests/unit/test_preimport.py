"""Reading the modules a pickle needs without unpickling it."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

from zeroserve.coldstart.preimport import modules_in_pickle, preimport_pickled_modules


class Marker:
    """Unpickling this would run code; reading its opcodes must not."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled!",))


def test_joblib_file_names_sklearn_and_numpy(tmp_path: Path) -> None:
    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    joblib.dump(model, tmp_path / "model.joblib")
    modules = modules_in_pickle(tmp_path / "model.joblib")
    assert "sklearn.linear_model._logistic" in modules
    assert "numpy" in modules


def test_pickle_is_read_not_executed(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "thing.pkl").write_bytes(pickle.dumps(Marker(), protocol=4))
    (tmp_path / "notes.pkl").write_bytes(b"not a pickle at all")
    assert modules_in_pickle(tmp_path / "thing.pkl") == {"builtins"}
    assert modules_in_pickle(tmp_path / "notes.pkl") == set()
    imported = preimport_pickled_modules(tmp_path)
    assert imported == ["builtins"]
    assert "unpickled!" not in capsys.readouterr().out


def test_missing_modules_are_skipped(tmp_path: Path) -> None:
    payload = b"\x80\x02cno_such_module_zs\nThing\nq\x00."
    (tmp_path / "gone.pkl").write_bytes(payload)
    assert modules_in_pickle(tmp_path / "gone.pkl") == {"no_such_module_zs"}
    assert preimport_pickled_modules(tmp_path) == []
    assert "no_such_module_zs" not in sys.modules
