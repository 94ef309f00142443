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


def configure_logging() -> None:
    """zeroserve's log lines on stderr, one per event, for every zeroserve process."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    zeroserve_logger = logging.getLogger("zeroserve")
    zeroserve_logger.handlers[:] = [handler]
    zeroserve_logger.setLevel(logging.INFO)
    zeroserve_logger.propagate = False
