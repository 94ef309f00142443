"""Train the iris sample: a scikit-learn classifier written to model.joblib beside this file.

Run: python samples/iris/train.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

MODEL_FILE = Path(__file__).with_name("model.joblib")


def train(destination: Path = MODEL_FILE) -> Path:
    """Fit a logistic regression on the iris data set and save it; return the file written."""
    features, labels = load_iris(return_X_y=True)
    classifier = LogisticRegression(max_iter=1000).fit(features, labels)
    partial = destination.with_suffix(".joblib.partial")
    joblib.dump(classifier, partial)
    partial.replace(destination)  # never leave a half-written model behind
    return destination


if __name__ == "__main__":
    written = train(Path(sys.argv[1]) if len(sys.argv) > 1 else MODEL_FILE)
    print(f"wrote {written}")
