"""Structured log lines: one JSON object per cold start and per error, with the trace id."""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

logger = logging.getLogger("zeroserve")
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def trace_id_of(traceparent: str | bytes | None) -> str | None:
    """The trace id of a W3C ``traceparent`` header, or None when absent or malformed."""
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("latin-1")
    match = TRACEPARENT.match(traceparent.strip().lower()) if traceparent else None
    return match.group(1) if match else None


def log_event(level: int, event: str, **fields: Any) -> None:
    """Log ``{"event": event, ...fields}`` as one JSON line."""
    if logger.isEnabledFor(level):
        logger.log(level, "%s", orjson.dumps({"event": event, **fields}).decode())
