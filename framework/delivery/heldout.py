"""Held-out data for ``zeroserve validate``: rows of instances with their true labels.

CSV: a header row; the label column (``--label``, default ``label``) is the truth and every
other column, in order, is one feature of the instance (numbers where they parse as numbers).
JSON lines: one object per line with the label field, and either an ``instance`` field (any
JSON the model takes) or the remaining fields as the instance (an object).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeroserve.errors import UsageError

JSON_LINES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class HeldOut:
    """The rows, and the file's digest (the report names the data it judged on)."""

    path: Path
    instances: list[Any]
    labels: list[Any]
    digest: str


def read_held_out(path: Path, label: str) -> HeldOut:
    """The rows of ``path``; UsageError naming what is wrong with the file."""
    if not path.is_file():
        raise UsageError(
            f"held-out data {path} does not exist; pass --data with a CSV or JSONL file"
        )
    raw = path.read_bytes()
    if path.suffix.lower() == ".csv":
        instances, labels = _csv_rows(path, raw, label)
    elif path.suffix.lower() in JSON_LINES:
        instances, labels = _json_rows(path, raw, label)
    else:
        raise UsageError(f"held-out data {path}: use a .csv or .jsonl file")
    if not instances:
        raise UsageError(f"held-out data {path} has no rows")
    return HeldOut(path, instances, labels, "sha256:" + hashlib.sha256(raw).hexdigest())


def _csv_rows(path: Path, raw: bytes, label: str) -> tuple[list[Any], list[Any]]:
    reader = csv.reader(raw.decode("utf-8-sig").splitlines())
    header = next(reader, None)
    if header is None:
        return [], []
    if label not in header:
        raise UsageError(
            f"held-out data {path} has no '{label}' column (columns: {', '.join(header)}); "
            "pass --label with the column of true labels"
        )
    at = header.index(label)
    instances, labels = [], []
    for number, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise UsageError(
                f"held-out data {path} line {number} has {len(row)} values; the header has "
                f"{len(header)}"
            )
        values = [_number(value) for value in row]
        labels.append(values[at])
        instances.append(values[:at] + values[at + 1 :])
    return instances, labels


def _json_rows(path: Path, raw: bytes, label: str) -> tuple[list[Any], list[Any]]:
    instances, labels = [], []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"held-out data {path} line {number} is not JSON: {exc}") from None
        if not isinstance(row, dict) or label not in row:
            raise UsageError(
                f"held-out data {path} line {number} is not an object with a '{label}' field; "
                "pass --label with the field of true labels"
            )
        labels.append(row.pop(label))
        instances.append(row["instance"] if set(row) == {"instance"} else row)
    return instances, labels


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text
