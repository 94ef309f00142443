"""Prediction monitoring: input drift against a reference profile, and the outputs' distribution.

``zeroserve push --reference SAMPLE.json`` profiles a sample of instances the user provides and
saves it with the model as ``zeroserve-reference.json``: per numeric feature, decile edges and the
share of the sample between them; per categorical feature, each category's share. While serving,
the last ``window`` instances are binned the same way and compared with the population stability
index, PSI = sum((actual - expected) * ln(actual / expected)), over bins or categories (for
categories this is the category shift; unseen categories count as ``__other__``). PSI above 0.2 is
the usual sign of a real shift; a feature is flagged once the window holds ``min_instances``.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import Counter, deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zeroserve.errors import UsageError

PROFILE_NAME = "zeroserve-reference.json"
OTHER = "__other__"
QUANTILES = [q / 10 for q in range(1, 10)]
EPSILON = 1e-4
THRESHOLD = 0.2
WINDOW = 1000
MIN_INSTANCES = 100
MAX_CATEGORIES = 50


def _columns(instances: list[Any]) -> dict[str, list[Any]]:
    """Feature name -> values: list instances by position, dict instances by key, else 'value'."""
    columns: dict[str, list[Any]] = {}
    for instance in instances:
        if isinstance(instance, dict):
            items = [(str(key), value) for key, value in instance.items()]
        elif isinstance(instance, list | tuple):
            items = [(str(index), value) for index, value in enumerate(instance)]
        else:
            items = [("value", instance)]
        for name, value in items:
            columns.setdefault(name, []).append(value)
    return columns


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values by linear interpolation (numpy's default)."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def build_profile(instances: Any) -> dict[str, Any]:
    """The reference profile of a sample of instances (as a request's ``instances``)."""
    if not isinstance(instances, list) or len(instances) < 10:
        raise UsageError("a reference sample needs a JSON list of at least 10 instances")
    features = []
    for name, values in _columns(instances).items():
        if all(_is_number(value) for value in values):
            ordered = sorted(float(value) for value in values)
            edges = sorted({quantile(ordered, q) for q in QUANTILES})
            feature: dict[str, Any] = {"name": name, "kind": "numeric", "edges": edges}
            feature["expected"] = _shares(
                [bisect.bisect_right(edges, v) for v in ordered], len(edges) + 1
            )
        else:
            counts = Counter(str(value) for value in values)
            kept = dict(counts.most_common(MAX_CATEGORIES))
            kept[OTHER] = len(values) - sum(kept.values())
            feature = {
                "name": name,
                "kind": "categorical",
                "expected": {key: count / len(values) for key, count in kept.items()},
            }
        features.append(feature)
    return {"version": 1, "instances": len(instances), "features": features}


def _shares(bins: list[int], size: int) -> list[float]:
    counts = Counter(bins)
    return [counts.get(index, 0) / len(bins) for index in range(size)]


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index of two distributions over the same bins."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, EPSILON), max(a, EPSILON)
        total += (a - e) * math.log(a / e)
    return total


def write_profile(sample: Path, folder: Path) -> Path:
    """Profile the JSON sample file into FOLDER/zeroserve-reference.json."""
    try:
        data = json.loads(sample.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--reference {sample}: cannot read a JSON sample ({exc})") from None
    instances = data.get("instances") if isinstance(data, dict) else data
    profile = build_profile(instances)
    target = folder / PROFILE_NAME
    target.write_text(json.dumps(profile, indent=1) + "\n")
    return target


class DriftMonitor:
    """Bins every served instance against the profile over a sliding window."""

    def __init__(self, profile: dict[str, Any], window: int = WINDOW) -> None:
        self.features = profile["features"]
        self.recent: deque[tuple[Any, ...]] = deque(maxlen=window)
        self.counts = [Counter[Any]() for _ in self.features]
        self.outputs: Counter[str] = Counter()

    @classmethod
    def for_folder(cls, folder: Path | None) -> DriftMonitor:
        """With the folder's reference profile, if it has one (else outputs only)."""
        path = folder / PROFILE_NAME if folder is not None else None
        if path is None or not path.is_file():
            return cls({"features": []})
        return cls(json.loads(path.read_text()))

    @property
    def watches_inputs(self) -> bool:
        return bool(self.features)

    def _key(self, feature: dict[str, Any], value: Any) -> Any:
        if feature["kind"] == "numeric":
            return (
                bisect.bisect_right(feature["edges"], float(value)) if _is_number(value) else None
            )
        key = str(value)
        return key if key in feature["expected"] else OTHER

    def observe(self, instances: list[Any]) -> None:
        columns = _columns(instances)
        rows = zip(
            *(columns.get(f["name"], [None] * len(instances)) for f in self.features), strict=False
        )
        for row in rows:
            keys = tuple(self._key(f, v) for f, v in zip(self.features, row, strict=True))
            if len(self.recent) == self.recent.maxlen:
                for counter, old in zip(self.counts, self.recent[0], strict=True):
                    counter[old] -= 1
            self.recent.append(keys)
            for counter, key in zip(self.counts, keys, strict=True):
                counter[key] += 1

    def observe_outputs(self, outputs: Any) -> None:
        """Count discrete outputs (classes, labels); at most MAX_CATEGORIES distinct values."""
        if not isinstance(outputs, list):
            return
        for value in outputs:
            if isinstance(value, int | str | bool):
                key = str(value)
                if key in self.outputs or len(self.outputs) < MAX_CATEGORIES:
                    self.outputs[key] += 1
                else:
                    self.outputs[OTHER] += 1

    def report(self, threshold: float = THRESHOLD) -> dict[str, Any]:
        seen = len(self.recent)
        features = []
        for feature, counter in zip(self.features, self.counts, strict=True):
            if feature["kind"] == "numeric":
                expected = feature["expected"]
                actual = [
                    counter.get(index, 0) / seen if seen else 0.0 for index in range(len(expected))
                ]
            else:
                names = list(feature["expected"])
                expected = [feature["expected"][name] for name in names]
                actual = [counter.get(name, 0) / seen if seen else 0.0 for name in names]
            score = psi(expected, actual) if seen else 0.0
            features.append(
                {
                    "name": feature["name"],
                    "kind": feature["kind"],
                    "psi": round(score, 4),
                    "drifted": seen >= MIN_INSTANCES and score > threshold,
                }
            )
        return {
            "window_instances": seen,
            "threshold": threshold,
            "min_instances": MIN_INSTANCES,
            "features": features,
            "outputs": dict(self.outputs),
        }
