"""The fast path's requests answered by the HTTP layer itself, without ASGI.

uvicorn hands every request to the app as ASGI: a task running the middleware (its proxy-header
rewrite, the body limit), the fast path, ``receive()`` for the body and two ``send()`` calls,
each checking and re-encoding headers. For a small model that plumbing costs more than a tenth
of the whole answer. ``GuardedHttpToolsProtocol`` asks ``HotRoute.takes`` about each request
it would start as ASGI; one taken runs ``HotRoute.run`` on the same uvicorn
``RequestResponseCycle`` instead, so keep-alive, pipelining, shutdown and disconnects work as
before. It reads the body as the cycle's ``receive()`` does, predicts through ``FastPath.answer``
and writes the answer as the cycle's ``send()`` would write the fast path's (status line,
uvicorn's default headers, ``content-length``, ``content-type``, and ``connection: close``
where the connection ends).

Taken: what the fast path takes (``FastPath.takes``), with a ``Content-Length`` within the body
limit, no ``Expect: 100-continue``, no batching (the disconnect watch of batched requests is ASGI
middleware) and no access log (uvicorn writes it in ``send()``). Anything else, and anything
``FastPath.answer`` gives back (NotFast, an error to answer), runs on the ASGI app as before,
with the body already read handed on.
"""

from __future__ import annotations

import logging

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

from zeroserve.errors import ZeroserveError
from zeroserve.serving.fast_path import (
    ASGIApp,
    ErrorAnswer,
    FastPath,
    NotFast,
    Receive,
    Scope,
    Send,
)
from zeroserve.serving.kserve_model import PredictorModel, record_predict

logger = logging.getLogger("uvicorn.error")  # where uvicorn's run_asgi logs an app's exception
Taken = tuple[PredictorModel, int, dict[str, str]]
OK_LINE = STATUS_LINE[200]


class HotRoute:
    """The fast path's requests, answered on uvicorn's cycle (see the module doc)."""

    def __init__(self, fast: FastPath, body_limit: int) -> None:
        self.fast = fast
        self.body_limit = body_limit

    def takes(self, cycle: RequestResponseCycle) -> Taken | None:
        """The model, protocol version and headers of a request answered here, or None."""
        if cycle.waiting_for_100_continue or cycle.access_log:
            return None
        taken = self.fast.takes(cycle.scope)  # type: ignore[arg-type]
        if taken is None or taken[0].batchers is not None:
            return None
        length = taken[2].get("content-length", "")
        if not length.isdigit() or int(length) > self.body_limit:
            return None  # streamed, or refused with 413 by the body limit
        return taken

    async def run(self, cycle: RequestResponseCycle, app: ASGIApp, taken: Taken) -> None:
        """Answer one taken request; an unexpected exception is answered and logged as
        uvicorn's ``run_asgi`` answers an app's (500, or a closed connection)."""
        try:
            await self._answer(cycle, app, taken)
        except BaseException as exc:
            logger.error("Exception in ASGI application\n", exc_info=exc)
            if not cycle.response_started:
                await cycle.send_500_response()
            else:
                cycle.transport.close()
        finally:
            cycle.on_response = lambda: None

    async def _answer(self, cycle: RequestResponseCycle, app: ASGIApp, taken: Taken) -> None:
        model, version, headers = taken
        body = await _whole_body(cycle)
        if body is None:
            return  # the client left: nothing to answer, as on the fast path
        try:
            payload, seconds = await self.fast.answer(model, version, body, headers)
        except NotFast:
            await _on_app(cycle, app, body)
            return
        except ZeroserveError as exc:
            await _on_app(cycle, _ErrorApp(self.fast.error_answer, model.name, exc), body)
            return
        if await _send_json(cycle, payload):
            record_predict(model, seconds, headers)


class _ErrorApp:
    """An ASGI app answering one model's error as the fast path does."""

    def __init__(self, answer: ErrorAnswer, model: str, error: ZeroserveError) -> None:
        self.answer, self.model, self.error = answer, model, error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.answer(scope, self.model, self.error, receive, send)


async def _whole_body(cycle: RequestResponseCycle) -> bytes | None:
    """The body, read as the cycle's ``receive()`` reads it; None if the client left."""
    chunks: list[bytes] = []
    while True:
        if not cycle.disconnected and not cycle.response_complete:
            cycle.flow.resume_reading()
            await cycle.message_event.wait()
            cycle.message_event.clear()
        if cycle.disconnected or cycle.response_complete:
            return None
        chunks.append(bytes(cycle.body))
        cycle.body = bytearray()
        if not cycle.more_body:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _on_app(cycle: RequestResponseCycle, app: ASGIApp, body: bytes) -> None:
    """Run ``app`` on the cycle as uvicorn would have, its ``receive()`` giving ``body``."""
    cycle.body = bytearray(body)
    cycle.message_event.set()
    await cycle.run_asgi(app)  # type: ignore[arg-type]


async def _send_json(cycle: RequestResponseCycle, payload: bytes) -> bool:
    """Write a 200 JSON answer as the cycle's ``send()`` writes the fast path's; whether it was
    written (not to a client that left)."""
    if cycle.flow.write_paused and not cycle.disconnected:
        await cycle.flow.drain()
    if cycle.disconnected:
        return False
    cycle.response_started = True
    head = [OK_LINE]
    for name, value in cycle.default_headers:
        head += (name, b": ", value, b"\r\n")
    head += (b"content-length: ", b"%d" % len(payload), b"\r\ncontent-type: application/json\r\n")
    if not cycle.keep_alive:
        head.append(b"connection: close\r\n")
    head += (b"\r\n", payload)
    cycle.transport.write(b"".join(head))
    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()
    return True
