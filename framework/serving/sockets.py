"""Listening sockets, bound by zeroserve itself (so a busy port is a clear error up front), and
the event loop that serves them."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Coroutine
from typing import Any

from zeroserve.errors import UsageError


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or UsageError saying what to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says so, and without it Nagle's algorithm costs about 30% of throughput.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} on {host} is in use by another program; pass --port with a free port"
            ) from None
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}; check --host") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop (its sockets and callbacks cost about half of asyncio's own), or
    on asyncio's loop where uvloop is not installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio still works
        asyncio.run(main)
        return
    uvloop.run(main)
