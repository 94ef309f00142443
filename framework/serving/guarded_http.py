"""uvicorn's HTTP/1.1 protocol with the limits it leaves out, for the servers KServe runs.

uvicorn (httptools) bounds neither the size of a request's line and headers nor the time they
or a body may take, and it never closes a connection that says nothing. This subclass adds,
from ``ServerSettings``: the request line and headers at most ``max_header_size`` (431), the head
within ``header_timeout`` of its first byte (408), no pause in a body over ``body_timeout``
(408), and a connection that sends nothing within ``header_timeout`` closed. Idle keep-alive
connections are closed by uvicorn's own ``timeout_keep_alive``. The answers are the activator's,
from the error table. The callbacks only note times; one sweep a second applies the limits, so
the warm path sets no timer per request.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from zeroserve.errors import HeadersTooLarge, RequestCutShort, RequestError, RequestTimeout
from zeroserve.serving.hot_route import HotRoute
from zeroserve.serving.http_answers import CLIENT_PROBES_S, CONTINUE, error_response
from zeroserve.settings import ServerSettings

SWEEP_EVERY_S = 1.0


class Phase(enum.Enum):
    SILENT = "connected, nothing sent yet"
    HEAD = "reading a request line and headers"
    BODY = "reading a body"
    ANSWERING = "the request is complete"


class _Refused(Exception):
    """Raised in a parser callback after a refusal, to stop parsing the rest."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with head-size, head-time and body-pause limits."""

    limits = ServerSettings()
    hot_route: HotRoute | None = None  # the fast path's requests, answered without ASGI

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn logs access lines wherever its logger has handlers (KServe gives it some)
        self.access_log = self.limits.access_log and self.access_log
        self.phase = Phase.SILENT
        self.since = self.last_read = time.monotonic()
        self.head_bytes = 0
        self.received = 0  # bytes so far on this connection
        self.head_window = 0  # ``received`` before the chunk in which the last head ended
        self.chunk_start = 0
        self.refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = OneWritePerStep(transport, self.loop)  # type: ignore[assignment]
        _watch(self)

    def connection_lost(self, exc: Exception | None) -> None:
        _WATCHED.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        self.last_read = time.monotonic()
        self.chunk_start = self.received
        self.received += len(data)
        if self.phase is not Phase.BODY:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.phase is Phase.HEAD and self.head_bytes > self.limits.max_header_size:
            self.refuse(HeadersTooLarge(limit_bytes=self.limits.max_header_size))

    def eof_received(self) -> bool:  # type: ignore[override]  # asyncio.Protocol: bool | None
        """The client closed its sending side. A request cut short in its head or body can never
        complete: it is answered 400 now (a half-closed client still reads) rather than
        dropped. A whole request is answered, then the connection closes (uvicorn closed it at
        once, dropping the answer); meanwhile interim answers find a client that closed
        outright, whose request then ends as a disconnect, as before."""
        if self.phase in (Phase.HEAD, Phase.BODY):
            self.refuse(RequestCutShort(reading=self.phase.value))
        super().eof_received()
        cycle = self.cycle
        if self.refused or cycle is None or cycle.response_complete:
            self.transport.flush()  # type: ignore[attr-defined]  # an answer held in this step
            return False  # nothing left to answer: the transport closes itself
        cycle.keep_alive = False  # the last request's answer closes the connection
        self._probe_client(0)
        return True

    def _probe_client(self, step: int) -> None:
        """``100 Continue`` while the answer has not begun (never amid pipelined answers)."""
        cycle = self.cycle
        if (
            cycle is None
            or cycle.response_started
            or self.pipeline
            or self.transport.is_closing()
            or cycle.scope["http_version"] == "1.0"
        ):
            return
        self.transport.write(CONTINUE)
        if step + 1 < len(CLIENT_PROBES_S):
            self.loop.call_later(CLIENT_PROBES_S[step + 1], self._probe_client, step + 1)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.phase = Phase.HEAD
        self.since = time.monotonic()

    def on_headers_complete(self) -> None:
        # This head lies within the bytes received since the chunk where the last one ended;
        # only when those are over the limit can the head be, so only then is it measured.
        limit = self.limits.max_header_size
        over = self.received - self.head_window > limit and _head_size(self) > limit
        self.head_bytes, self.head_window = 0, self.chunk_start
        if over:
            self.refuse(HeadersTooLarge(limit_bytes=self.limits.max_header_size))
            raise _Refused  # stops the parser; uvicorn's own 400 is skipped below
        self.phase = Phase.BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.phase = Phase.ANSWERING
        super().on_message_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        """Start a request: on the hot route where it takes it, else as ASGI (uvicorn's)."""
        hot = self.hot_route
        taken = hot.takes(cycle) if hot is not None and app is self.app else None
        if hot is None or taken is None:
            super()._start_asgi_task(cycle, app)
            return
        context = contextvars.Context() if self.config.reset_contextvars else None
        task = self.loop.create_task(hot.run(cycle, app, taken), context=context)
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def on_response_complete(self) -> None:
        """The answer's last byte is written: it goes out now, not at the end of the step,
        before the app's task unwinds and uvicorn's bookkeeping below runs."""
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        if not self.refused:  # uvicorn answering a parser error (or our stop of the parser)
            super().send_400_response(msg)

    def check(self, now: float) -> None:
        """Refuse a head or body that stalled; close a connection that never spoke."""
        limits = self.limits
        if self.phase is Phase.HEAD and now - self.since > limits.header_timeout:
            self.refuse(RequestTimeout(phase="headers", limit_s=limits.header_timeout))
        elif self.phase is Phase.BODY and now - self.last_read > limits.body_timeout:
            self.refuse(RequestTimeout(phase="body", limit_s=limits.body_timeout))
        elif self.phase is Phase.SILENT and now - self.since > limits.header_timeout:
            self.refuse(None)

    def refuse(self, error: RequestError | None) -> None:
        """Answer ``error`` (none for a silent client) unless an answer is under way; close."""
        if self.refused or self.transport.is_closing():
            return
        self.refused = True
        started = self.cycle is not None and self.cycle.response_started
        if error is not None and not started:
            self.transport.write(error_response(error))
        if self.cycle is not None:
            self.cycle.disconnected = True
        self.transport.close()


class OneWritePerStep:
    """The connection's transport, with what is written in one step of the event loop sent in
    one write: uvicorn writes a response's status line and headers, then its body, and each
    write is a segment of its own (TCP_NODELAY) that wakes the reader (the activator) once
    more. Held bytes go out at the end of the step, when an answer is complete, or before a
    close; nothing waits longer."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.held: list[bytes] = []
        self.due: asyncio.Handle | None = None  # the flush at the end of this step

    def write(self, data: bytes) -> None:
        if not self.held:
            self.due = self.loop.call_soon(self.flush)
        self.held.append(data)

    def flush(self) -> None:
        """Send what is held now; called early (a complete answer), the flush due at the end
        of the step is called off, so the loop takes no extra turn for it."""
        if self.due is not None:
            self.due.cancel()
            self.due = None
        held, self.held = self.held, []
        if held and not self.transport.is_closing():
            self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + sum(map(len, self.held))

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self.transport, name)


def _head_size(connection: GuardedHttpToolsProtocol) -> int:
    return len(connection.url) + sum(len(k) + len(v) + 4 for k, v in connection.headers)


_WATCHED: set[GuardedHttpToolsProtocol] = set()
_SWEEPING: list[asyncio.TimerHandle] = []


def _watch(connection: GuardedHttpToolsProtocol) -> None:
    _WATCHED.add(connection)
    if not _SWEEPING:
        _SWEEPING.append(connection.loop.call_later(SWEEP_EVERY_S, _sweep, connection.loop))


def _sweep(loop: asyncio.AbstractEventLoop) -> None:
    """Every second while connections are open: let each apply its limits."""
    _SWEEPING.clear()
    now = time.monotonic()
    for connection in list(_WATCHED):
        connection.check(now)
    if _WATCHED:
        _SWEEPING.append(loop.call_later(SWEEP_EVERY_S, _sweep, loop))


def guarded_protocol(
    limits: ServerSettings, hot_route: HotRoute | None = None
) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for a server with ``limits`` (and the fast path's ``hot_route``)."""
    attributes = {"limits": limits, "hot_route": hot_route}
    return type("GuardedHttpTools", (GuardedHttpToolsProtocol,), attributes)
