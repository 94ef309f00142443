"""scikit-learn models saved with joblib or pickle, or with skops (for users who cannot trust a
pickle: only the types skops trusts, and those listed in ``trusted_types``, are loaded).

A pickle runs code when it loads: serve only pickles you made. Before any worker starts,
``zeroserve serve`` reads the pickle's opcodes (without running them) and refuses one that names
a module not installed here.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from zeroserve.predictors.tabular import TabularPredictor, two_columns


class SklearnPredictor(TabularPredictor):
    """An estimator's ``predict`` and ``predict_proba`` on rows of its ``n_features_in_``."""

    trusted_types: tuple[str, ...] = ()  # skops: types to load beyond those it trusts itself
    preimport_modules = ("sklearn.ensemble", "sklearn.linear_model", "sklearn.pipeline")

    def read(self, path: Path) -> None:
        self.model = (
            _read_skops(path, self.trusted_types) if path.suffix == ".skops" else _read_pickle(path)
        )
        model = self.model
        if not hasattr(model, "predict"):
            raise TypeError(f"{path.name} holds a {type(model).__name__}, which has no predict()")
        self.n_features = getattr(model, "n_features_in_", None)
        names = getattr(model, "feature_names_in_", None)
        self.feature_names = [str(name) for name in names] if names is not None else None
        classes = getattr(model, "classes_", None)
        has_proba = hasattr(model, "predict_proba")
        self.classes = (
            [_plain(label) for label in classes] if classes is not None and has_proba else None
        )

    def labels(self, rows: np.ndarray) -> Any:
        with warnings.catch_warnings():  # fitted on a DataFrame, asked with an array: fine
            warnings.simplefilter("ignore", UserWarning)
            return self.model.predict(rows)

    def probabilities(self, rows: np.ndarray) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return two_columns(np.asarray(self.model.predict_proba(rows)))


def _read_pickle(path: Path) -> Any:
    import joblib

    try:
        return joblib.load(path)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise TypeError(
            f"{path.name} refers to a class that cannot be imported here ({exc}); install the "
            "package that defines it, or save the model with skops"
        ) from None


def _read_skops(path: Path, trusted: tuple[str, ...]) -> Any:
    import skops.io

    untrusted = [name for name in skops.io.get_untrusted_types(file=path) if name not in trusted]
    if untrusted:
        raise TypeError(
            f"{path.name} holds types skops does not trust: {', '.join(untrusted)}; if you trust "
            "them, list them in trusted_types on a subclass of SklearnPredictor"
        )
    return skops.io.load(path, trusted=list(trusted) or None)


def _plain(label: Any) -> Any:
    return label.item() if isinstance(label, np.generic) else label
