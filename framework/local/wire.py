"""HTTP/1.1 on the activator's side of the wire: client connections and the answers it writes.

The activator parses requests with ``httptools`` (the parser uvicorn uses) and forwards them as
bytes, so the warm path costs one parse and two socket writes. Requests on one connection are
answered in order (pipelining is allowed, never reordered).
"""

from __future__ import annotations

import asyncio
import http
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import httptools
import orjson

from zeroserve.errors import PayloadTooLarge

SKIPPED_REQUEST_HEADERS = frozenset({b"content-length", b"transfer-encoding"})


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


def json_response(
    status: int,
    body: Any,
    headers: dict[str, str] | None = None,
    keep_alive: bool = True,
) -> bytes:
    """A complete HTTP/1.1 response with a JSON body."""
    payload = orjson.dumps(body)
    lines = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(payload)}",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if not keep_alive:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def bad_request(message: str) -> dict[str, Any]:
    return {"error": message, "type": "BadRequest"}


class Handler(Protocol):
    def __call__(self, request: Request, client: ClientConnection) -> None: ...


class ClientConnection(asyncio.Protocol):
    """One client's keep-alive connection to the activator."""

    def __init__(self, handle: Handler, max_body_size: int) -> None:
        self.handle = handle
        self.max_body_size = max_body_size
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[Request] = deque()
        self.current: Request | None = None
        self.request = Request()
        self.closed = False
        self.on_lost: Callable[[], object] | None = None  # set while a request is forwarded

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, bad_request("protocol upgrades are not supported by the activator"))
        except httptools.HttpParserError as exc:
            if not self.closed:
                self._reject(400, bad_request(f"malformed HTTP request: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pending.clear()
        if self.on_lost is not None:
            on_lost, self.on_lost = self.on_lost, None
            on_lost()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.request = Request()

    def on_url(self, url: bytes) -> None:
        self.request.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.request.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.request.body += body
        if len(self.request.body) > self.max_body_size and not self.closed:
            received = len(self.request.body)
            self.request.body.clear()
            error = PayloadTooLarge(limit_bytes=self.max_body_size, received_bytes=received)
            self._reject(413, error.to_body())

    def on_message_complete(self) -> None:
        request = self.request
        request.method = self.parser.get_method()
        request.version = self.parser.get_http_version()
        request.keep_alive = self.parser.should_keep_alive()
        self.pending.append(request)
        if self.current is None:
            self._next()

    # used by whoever answers the current request
    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def respond(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Answer the current request with JSON and go on with the next one."""
        keep_alive = self.current.keep_alive if self.current is not None else False
        self.write(json_response(status, body, headers, keep_alive))
        self.finish(keep_alive)

    def finish(self, keep_alive: bool) -> None:
        """The current request has been answered in full."""
        self.current = None
        self.on_lost = None
        if not keep_alive:
            if self.transport is not None:
                self.transport.close()
            self.closed = True
            return
        if self.pending:
            self._next()

    def _next(self) -> None:
        if self.closed:
            return
        self.current = self.pending.popleft()
        self.handle(self.current, self)

    def _reject(self, status: int, body: dict[str, Any]) -> None:
        """Answer at once and close: the connection's byte stream cannot be trusted further."""
        if self.transport is not None:
            self.transport.write(json_response(status, body, keep_alive=False))
            self.transport.close()
        self.closed = True
