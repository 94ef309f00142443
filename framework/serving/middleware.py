"""ASGI middleware of the local server: body size limit, cancellation on client disconnect."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.responses import JSONResponse

from zeroserve.errors import PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodySizeLimit:
    """ASGI middleware: a body over ``limit`` bytes answers 413 with a JSON error.

    A declared ``Content-Length`` over the limit is refused before the body is read (one within
    it is all the server reads: HTTP/1.1 framing); a streamed (chunked) body is counted as it
    arrives and refused once it passes the limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.limit:
                error = PayloadTooLarge(limit_bytes=self.limit, received_bytes=declared)
                await JSONResponse(error.to_body(), status_code=413)(scope, receive, send)
                return
            # the server reads no more than the declared length: nothing to count
            await self.app(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise PayloadTooLarge(limit_bytes=self.limit, received_bytes=received)
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class CancelOnDisconnect:
    """ASGI middleware: a client that hangs up cancels the handling of its request.

    Once the request body has been read, a watcher waits for ``http.disconnect``; if it comes
    before the response was sent, the handler's task is cancelled, so a batched request leaves
    its queue before dispatch instead of costing a place in a batch.
    """

    def __init__(self, app: ASGIApp, paths: frozenset[str]) -> None:
        self.app = app
        self.paths = paths  # only these routes pay for the watch (the batched models')

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(receive, send)
        handler = asyncio.ensure_future(self.app(scope, exchange.receive, exchange.send))
        watcher = asyncio.ensure_future(exchange.cancel_on_disconnect(handler))
        try:
            await handler
        except asyncio.CancelledError:
            if not watcher.done():  # cancelled from outside, not by a disconnect: pass it on
                raise
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


class _Exchange:
    """One request's receive and send, tracking whether the body was read and the answer sent."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._body_read = asyncio.Event()
        self._response_sent = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            self._body_read.set()
        return message

    async def send(self, message: Message) -> None:
        await self._send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self._response_sent = True

    async def cancel_on_disconnect(self, handler: asyncio.Future[None]) -> None:
        """After the body was read, wait for the client to go; cancel the handler if unanswered."""
        await self._body_read.wait()
        while (await self._receive())["type"] != "http.disconnect":
            pass
        if not self._response_sent:
            handler.cancel()
