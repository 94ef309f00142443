"""The audit trail's records, and the local one: an append-only JSON-lines file.

A record is one change to a model: who (user@host), when (UTC), what (``action``) and the
digests and figures that say exactly what was changed. On the cluster the records are kept on
the InferenceService (``targets/kserve/audit.py``); on this machine ``zeroserve validate``
appends its verdicts to ``$ZEROSERVE_HISTORY`` (default ``~/.zeroserve/history.jsonl``), one line
per record, written with one ``write`` of a file opened for appending, so concurrent writers
never interleave within a line.
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
import socket
from pathlib import Path
from typing import Any

DEFAULT_FILE = Path("~/.zeroserve/history.jsonl")


def record(action: str, model: str, **details: Any) -> dict[str, Any]:
    """One change: ``action`` on ``model`` now, by this user, with ``details`` (None left out)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    found = {"time": now, "action": action, "model": model, "who": who}
    return found | {key: value for key, value in details.items() if value is not None}


def history_file() -> Path:
    return Path(os.environ.get("ZEROSERVE_HISTORY", str(DEFAULT_FILE))).expanduser()


def append(entry: dict[str, Any], path: Path | None = None) -> Path:
    """Add ``entry`` as one line at the end of the local history; the file's path."""
    path = path or history_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, separators=(",", ":"), sort_keys=True) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)
    return path


def local_history(model: str, path: Path | None = None) -> list[dict[str, Any]]:
    """The local records of ``model``, oldest first (a line that is not a record is skipped)."""
    path = path or history_file()
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("model") == model:
            found.append(entry)
    return found
