"""HTTP/1.1 on the activator's side of the wire: client connections and the answers it writes.

The activator parses requests with ``httptools`` (llhttp, the parser uvicorn uses) and forwards
them as bytes, so the warm path costs one parse and two socket writes. What RFC 9110/9112 ask of
a server is handled here, once, for every route:

- Requests on one connection are answered in order (pipelining is allowed, never reordered).
- ``Expect: 100-continue`` is answered by the activator itself, once the request is the one being
  answered (or 413 at once if its Content-Length is over the limit); other expectations get 417.
  The header is not forwarded: the activator sends a worker whole requests.
- ``HEAD`` answers carry no body.
- A client that half-closes after its request still gets its answer; a client that closed
  outright is found by the interim ``100 Continue`` answers written to it while it waits (a
  closed socket refuses the second one), so a hang-up still cancels the request.
- Limits with settings of their own (``ServerSettings``): the request line and headers
  (431), the body (413), the time a request's head may take (408), the longest pause in a body
  (408), and how long an idle keep-alive connection is kept.
A request the activator refuses is answered after the requests before it, then the connection is
closed: its byte stream cannot be trusted further.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import httptools
import orjson

from zeroserve.errors import (
    ExpectationFailed,
    HeadersTooLarge,
    MalformedRequest,
    PayloadTooLarge,
    RequestCutShort,
    RequestError,
    RequestTimeout,
    ZeroserveError,
    http_status_for,
)
from zeroserve.serving.http_answers import (
    CLIENT_PROBES_S,
    CONTINUE,
    error_response,
    http_response,
)
from zeroserve.settings import ServerSettings

SKIPPED_REQUEST_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"expect"})
SWEEP_EVERY_S = 1.0


@dataclass
class Request:
    """One parsed client request."""

    method: bytes = b""
    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    keep_alive: bool = True
    version: str = "1.1"

    @property
    def path(self) -> str:
        return self.url.partition(b"?")[0].decode("latin-1")

    def encode(self) -> bytes:
        """The request as sent to a worker: same line and headers, body with a Content-Length."""
        lines = [b"%s %s HTTP/%s" % (self.method, self.url, self.version.encode())]
        lines += [
            name + b": " + value
            for name, value in self.headers
            if name.lower() not in SKIPPED_REQUEST_HEADERS
        ]
        lines.append(b"content-length: %d" % len(self.body))
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class Handler(Protocol):
    def __call__(self, request: Request, client: ClientConnection) -> None: ...


class Reading(enum.Enum):
    """Where the parser is in the client's byte stream."""

    BETWEEN = "between requests"
    HEAD = "request line and headers"
    BODY = "body"


class _Refuse(Exception):
    """Raised inside a parser callback to stop parsing and refuse the request."""

    def __init__(self, error: RequestError) -> None:
        super().__init__(error.message)
        self.error = error


class ClientConnection(asyncio.Protocol):
    """One client's keep-alive connection to the activator."""

    def __init__(
        self,
        handle: Handler,
        limits: ServerSettings,
        registry: set[ClientConnection] | None = None,
    ) -> None:
        self.handle = handle
        self.limits = limits
        self.registry = registry if registry is not None else set()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[Request] = deque()
        self.current: Request | None = None
        self.request = Request()
        self.closed = False
        self.on_lost: Callable[[], object] | None = None  # set while a request is forwarded
        self.reading = Reading.BETWEEN
        self.served = 0  # requests answered so far
        self.phase_since = self.last_read = time.monotonic()
        self.head_bytes = 0
        self.continue_owed = False  # a 100 Continue to send once this request is current
        self.answering = False  # bytes of the current request's answer went out
        self.peer_eof = False
        self.refusal: RequestError | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.registry.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed or self.refusal is not None:
            return
        self.last_read = time.monotonic()
        if self.reading is not Reading.BODY:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            message = "protocol upgrades (Upgrade, CONNECT) are not supported by the activator"
            self.refuse(MalformedRequest(message))
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refuse):
                self.refuse(cause.error)
            else:
                self.refuse(MalformedRequest(f"malformed HTTP request: {exc}"))
        else:
            if self.reading is Reading.HEAD and self.head_bytes > self.limits.max_header_size:
                self.refuse(HeadersTooLarge(limit_bytes=self.limits.max_header_size))

    def eof_received(self) -> bool:
        """The client is done sending: answer what it asked (half-close), then close. A request
        it cut short can never complete: it is refused (400) after the ones before it."""
        self.peer_eof = True
        if self.reading is not Reading.BETWEEN:
            self.refuse(RequestCutShort(reading=f"reading a {self.reading.value}"))
        if self.current is None and not self.pending:
            return False  # nothing to answer: the transport closes itself
        self._probe_client(0)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.registry.discard(self)
        self.pending.clear()
        if self.on_lost is not None:
            on_lost, self.on_lost = self.on_lost, None
            on_lost()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.request = Request()
        self.reading = Reading.HEAD
        self.phase_since = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self.request.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.request.headers.append((name, value))

    def on_headers_complete(self) -> None:
        request, limits = self.request, self.limits
        size = len(request.url) + sum(len(k) + len(v) + 4 for k, v in request.headers)
        if size > limits.max_header_size:
            raise _Refuse(HeadersTooLarge(limit_bytes=limits.max_header_size))
        self.reading = Reading.BODY
        self.head_bytes = 0
        declared = request.header(b"content-length") or b""
        if declared.isdigit() and int(declared) > limits.max_body_size:
            limit, received = limits.max_body_size, int(declared)
            raise _Refuse(PayloadTooLarge(limit_bytes=limit, received_bytes=received))
        expect = request.header(b"expect")
        if expect is not None and self.parser.get_http_version() != "1.0":  # 1.0: ignored
            if expect.strip().lower() != b"100-continue":
                raise _Refuse(ExpectationFailed(expectation=expect.decode("latin-1")))
            if self.current is None and not self.pending:
                self._write(CONTINUE)
            else:
                self.continue_owed = True

    def on_body(self, body: bytes) -> None:
        self.request.body += body
        if len(self.request.body) > self.limits.max_body_size:
            received = len(self.request.body)
            self.request.body.clear()
            limit = self.limits.max_body_size
            raise _Refuse(PayloadTooLarge(limit_bytes=limit, received_bytes=received))

    def on_message_complete(self) -> None:
        request = self.request
        request.method = self.parser.get_method()
        request.version = self.parser.get_http_version()
        request.keep_alive = self.parser.should_keep_alive()
        self.reading = Reading.BETWEEN
        self.head_bytes = 0
        self.continue_owed = False
        self.pending.append(request)
        if self.current is None:
            self._next()

    # used by whoever answers the current request
    def write(self, data: bytes) -> None:
        self.answering = True
        self._write(data)

    def respond(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Answer the current request with JSON and go on with the next one."""
        self.respond_bytes(status, orjson.dumps(body), "application/json", headers)

    def respond_bytes(
        self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the current request with ``payload`` and go on with the next one."""
        current = self.current
        keep_alive = current.keep_alive if current is not None else False
        head = current is not None and current.method == b"HEAD"
        self.write(http_response(status, payload, content_type, headers, keep_alive, head))
        self.finish(keep_alive)

    def respond_error(self, error: ZeroserveError, headers: dict[str, str] | None = None) -> None:
        """Answer the current request with ``error``: its status from the table, its body."""
        self.respond(http_status_for(error), error.to_body(), headers)

    def finish(self, keep_alive: bool) -> None:
        """The current request has been answered in full."""
        self.current = None
        self.on_lost = None
        self.answering = False
        self.served += 1
        if not keep_alive:
            self.close()
        elif self.pending:
            self._next()
        elif self.refusal is not None:
            self._write(error_response(self.refusal))
            self.close()
        elif self.peer_eof:
            self.close()
        else:
            self.phase_since = time.monotonic()
            if self.continue_owed:  # the request being read now asked to be told to go on
                self.continue_owed = False
                self._write(CONTINUE)

    def refuse(self, error: RequestError) -> None:
        """Refuse what the client is sending: answer after the requests before it, close."""
        if self.closed or self.refusal is not None:
            return
        self.refusal = error
        if self.transport is not None:
            self.transport.pause_reading()
        if self.current is None and not self.pending:
            self._write(error_response(error))
            self.close()

    def check_timeouts(self, now: float) -> None:
        """Refuse a request whose head or body stalled; close a keep-alive gone idle."""
        limits = self.limits
        if self.closed or self.refusal is not None:
            return
        if self.reading is Reading.HEAD and now - self.phase_since > limits.header_timeout:
            self.refuse(RequestTimeout(phase="headers", limit_s=limits.header_timeout))
        elif self.reading is Reading.BODY and now - self.last_read > limits.body_timeout:
            self.refuse(RequestTimeout(phase="body", limit_s=limits.body_timeout))
        elif self.reading is Reading.BETWEEN and self.current is None and not self.pending:
            idle_limit = limits.keep_alive_timeout if self.served else limits.header_timeout
            if now - self.phase_since > idle_limit:
                self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _next(self) -> None:
        if self.closed:
            return
        self.current = self.pending.popleft()
        self.handle(self.current, self)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def _probe_client(self, step: int) -> None:
        """After the client's EOF, while its answer is not under way: an interim answer (HTTP/1.1
        clients skip any number of them), which a socket closed outright refuses by the second."""
        current = self.current
        if self.closed or current is None or self.answering or current.version == "1.0":
            return
        self._write(CONTINUE)
        if step + 1 < len(CLIENT_PROBES_S):
            delay = CLIENT_PROBES_S[step + 1]
            asyncio.get_running_loop().call_later(delay, self._probe_client, step + 1)


async def sweep_timeouts(connections: set[ClientConnection]) -> None:
    """Every second, let each open connection refuse or close what has stalled."""
    while True:
        await asyncio.sleep(SWEEP_EVERY_S)
        now = time.monotonic()
        for connection in list(connections):
            connection.check_timeouts(now)
