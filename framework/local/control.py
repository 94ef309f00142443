"""The control channel between the activator, a model host (fork server) and its workers.

One ``SOCK_SEQPACKET`` socket pair per serve target: the activator holds one end; the host and
every worker share the other, so each packet arrives whole, whoever sent it. The host reads
commands; the activator reads events.

A message is one JSON object in one packet, or, over ``FRAGMENT_BYTES`` (a socket's send buffer
caps a packet: the hello of 1000 models did not fit), in fragments tagged with the sender's pid,
which ``Reassembler`` puts back together whatever the other senders interleave.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import struct
from typing import Any

import orjson

PR_SET_PDEATHSIG = 1
FRAGMENT_BYTES = 32 * 1024
PACKET_LIMIT = FRAGMENT_BYTES + 16
WHOLE, MORE, LAST = b"=", b"+", b"."


def packets(fields: dict[str, Any], sender_pid: int | None = None) -> list[bytes]:
    """One message as the packets that carry it (fragments name the sender, this process)."""
    data = orjson.dumps(fields)
    if len(data) <= FRAGMENT_BYTES:
        return [WHOLE + data]
    sender = struct.pack("!I", sender_pid if sender_pid is not None else os.getpid())
    pieces = [data[i : i + FRAGMENT_BYTES] for i in range(0, len(data), FRAGMENT_BYTES)]
    return [(LAST if i == len(pieces) - 1 else MORE) + sender + p for i, p in enumerate(pieces)]


def send_message(control: socket.socket, **fields: Any) -> None:
    """Send one message; a closed channel (the activator is gone) is not an error here."""
    with contextlib.suppress(OSError):
        for packet in packets(fields):
            control.send(packet)


class Reassembler:
    """Messages from packets, the fragments of each sender joined in order."""

    def __init__(self) -> None:
        self.partial: dict[bytes, bytearray] = {}

    def feed(self, packet: bytes) -> dict[str, Any] | None:
        """The message this packet completes, or None while fragments are still to come."""
        kind = packet[:1]
        if kind == WHOLE:
            return _decode(packet[1:])
        sender, piece = packet[1:5], packet[5:]
        if kind == MORE:
            self.partial.setdefault(sender, bytearray()).extend(piece)
            return None
        return _decode(bytes(self.partial.pop(sender, b"")) + piece)


def _decode(data: bytes) -> dict[str, Any]:
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
