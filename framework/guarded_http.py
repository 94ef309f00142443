"""uvicorn's HTTP/1.1 protocol with the limits it leaves out, for the servers KServe runs.

uvicorn (httptools) bounds neither the size of a request's line and headers nor the time they
or a body may take, and it never closes a connection that says nothing. This subclass adds,
from ``ServerSettings``: the request line and headers at most ``max_header_size`` (431), the head
within ``header_timeout`` of its first byte (408), no pause in a body over ``body_timeout``
(408), and a connection that sends nothing within ``header_timeout`` closed. Idle keep-alive
connections are closed by uvicorn's own ``timeout_keep_alive``. The answers are the activator's,
from the error table.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from zeroserve.errors import HeadersTooLarge, RequestError, RequestTimeout
from zeroserve.http_answers import error_response
from zeroserve.settings import ServerSettings


class _Refused(Exception):
    """Raised in a parser callback after a refusal, to stop parsing the rest."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with head-size, head-time and body-pause limits."""

    limits = ServerSettings()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_head = True  # no request yet: what arrives is a head
        self.head_bytes = 0
        self.guard: asyncio.TimerHandle | None = None
        self.refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout, None)  # a client that never says anything

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.in_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.in_head and self.head_bytes > self.limits.max_header_size:
            self._refuse(HeadersTooLarge(limit_bytes=self.limits.max_header_size))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        timeout = self.limits.header_timeout
        self._arm(timeout, RequestTimeout(phase="headers", limit_s=timeout))

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers)
        self.in_head = False
        self.head_bytes = 0
        if size > self.limits.max_header_size:
            self._refuse(HeadersTooLarge(limit_bytes=self.limits.max_header_size))
            raise _Refused  # stops the parser; uvicorn's own 400 is skipped below
        self._arm_body()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._arm_body()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self.in_head = True
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        if not self.refused:  # uvicorn answering a parser error (or our stop of the parser)
            super().send_400_response(msg)

    def _arm_body(self) -> None:
        timeout = self.limits.body_timeout
        self._arm(timeout, RequestTimeout(phase="body", limit_s=timeout))

    def _arm(self, seconds: float, error: RequestError | None) -> None:
        self._disarm()
        self.guard = self.loop.call_later(seconds, self._refuse, error)

    def _disarm(self) -> None:
        if self.guard is not None:
            self.guard.cancel()
            self.guard = None

    def _refuse(self, error: RequestError | None) -> None:
        """Answer ``error`` (none for a silent client) unless an answer is under way; close."""
        self._disarm()
        if self.refused or self.transport.is_closing():
            return
        self.refused = True
        answering = self.cycle is not None and not self.cycle.response_complete
        if error is not None and not (answering and self.cycle.response_started):
            self.transport.write(error_response(error))
        if self.cycle is not None:
            self.cycle.disconnected = True
        self.transport.close()


def guarded_protocol(limits: ServerSettings) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for a server with ``limits``."""
    return type("GuardedHttpTools", (GuardedHttpToolsProtocol,), {"limits": limits})
