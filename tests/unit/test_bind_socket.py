"""The listening socket zeroserve binds itself."""

from __future__ import annotations

import socket

import pytest

from zeroserve import UsageError
from zeroserve.serving.sockets import bind_socket


def test_socket_is_tcp_so_asyncio_sets_nodelay() -> None:
    sock = bind_socket("127.0.0.1", 0)
    try:
        # asyncio turns Nagle off on accepted connections only when proto is IPPROTO_TCP.
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()


def test_busy_port_is_a_usage_error() -> None:
    first = bind_socket("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(UsageError, match=f"port {port} on 127.0.0.1 is in use"):
            bind_socket("127.0.0.1", port)
    finally:
        first.close()


def test_unknown_host_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="cannot listen on 203.0.113.7:0"):
        bind_socket("203.0.113.7", 0)
