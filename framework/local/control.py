"""The control channel between the activator, a model host (fork server) and its workers.

One ``SOCK_SEQPACKET`` socket pair per serve target: the activator holds one end; the host and
every worker share the other, so each message (one JSON object) arrives whole, whoever sent it.
The host reads commands; the activator reads events.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
from typing import Any

import orjson

PR_SET_PDEATHSIG = 1
MESSAGE_LIMIT = 1 << 20


def send_message(control: socket.socket, **fields: Any) -> None:
    """Send one message; a closed channel (the activator is gone) is not an error here."""
    with contextlib.suppress(OSError):
        control.send(orjson.dumps(fields))


def decode(data: bytes) -> dict[str, Any]:
    message = orjson.loads(data)
    assert isinstance(message, dict)
    return message


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent ends, so no worker outlives zeroserve."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent's shutdown still stops workers
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def configure_logging() -> None:
    """zeroserve's log lines on stderr, one per event, for every zeroserve process."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("zeroserve")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
