"""The activator's side of each worker: replicas, their pooled connections, forwarded exchanges.

A response is passed to the client byte for byte as it arrives (so streamed answers stream); the
parser only watches for its end. A worker that dies mid-answer gets its requests answered with
502 naming the exit code and the likely cause.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import httptools

from zeroserve.errors import WorkerDied
from zeroserve.local.wire import ClientConnection, Request
from zeroserve.telemetry.logs import log_event, trace_id_of

EXIT_WAIT_S = 2.0  # how long a 502 waits to learn the worker's exit code
WORKER_EXIT_CAUSES = {  # the exit codes of zeroserve.local.child.worker
    2: " (the model could not be found or imported)",
    3: " (load() or warmup() raised)",
    4: " (predict() ran out of memory)",
    5: " (the model's healthy() said no: replaced)",
}


class ReplicaState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


def describe_exit(code: int | None) -> str:
    """``exit code 3`` / ``killed by SIGKILL (likely out of memory…)`` for a worker's end."""
    if code is None:
        return "the connection to the worker broke (worker state unknown)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        cause = {
            "SIGKILL": " (likely out of memory: check the memory limit and dmesg)",
            "SIGSEGV": " (a crash in native code)",
            "SIGABRT": " (aborted by native code)",
        }.get(name, "")
        return f"killed by {name}{cause}"
    return f"exit code {code}" + WORKER_EXIT_CAUSES.get(code, "")


@dataclass(eq=False)
class Replica:
    """One worker process serving one model on a private 127.0.0.1 port."""

    id: str
    model: str
    state: ReplicaState = ReplicaState.STARTING
    pid: int | None = None
    port: int | None = None
    in_flight: int = 0
    idle: list[UpstreamConnection] = field(default_factory=list)
    exit_code: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    timeline: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    error: str | None = None  # why a start failed, as the worker reported it

    @property
    def alive(self) -> bool:
        return not self.exit_code.done()

    async def connect(self) -> UpstreamConnection:
        """A pooled keep-alive connection, or a new one."""
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed:
                return connection
        assert self.port is not None
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            lambda: UpstreamConnection(self), "127.0.0.1", self.port
        )
        return protocol

    def close_idle(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection from the activator to a worker, one exchange at a time.

    Interim (1xx) answers before the final one are passed on to HTTP/1.1 clients and never taken
    for the end of the exchange; a ``HEAD`` answer ends with its headers.
    """

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.closed = False
        self.used = False
        self.received = 0
        self.final = False  # the final (non-1xx) status line of this exchange has arrived
        self.interim = b""  # the start of an answer whose status line is not complete yet
        self.head_answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, exchange: Exchange) -> None:
        assert self.transport is not None
        self.exchange = exchange
        self.received = 0
        self.final = False
        self.interim = b""
        self.transport.write(exchange.payload)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # bytes nobody asked for: this connection can't be trusted
            self.close()
            return
        self.received += len(data)
        forward = data if self.final else self._past_interim(data, exchange.request.version)
        if forward:
            exchange.client.write(forward)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()
            return
        if self.head_answered:  # no body follows: start the next answer with a fresh parser
            keep_alive = self.parser.should_keep_alive()
            self.parser = httptools.HttpResponseParser(self)
            self.head_answered = False
            self._message_done(keep_alive)

    def _past_interim(self, data: bytes, client_version: str) -> bytes:
        """What of ``data`` goes to the client while the final status line is still to come:
        whole interim answers (none for an HTTP/1.0 client), then everything from the final one."""
        buffer, out = self.interim + data, b""
        while len(buffer) >= 12:  # "HTTP/1.1 200"
            if buffer[9:10] != b"1" or buffer[9:12] == b"101":
                self.final, self.interim = True, b""
                return out + buffer
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            if client_version != "1.0":
                out += buffer[: end + 4]
            buffer = buffer[end + 4 :]
        self.interim = buffer
        return out

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if self.exchange is not None and status >= 200:
            self.exchange.status = status
            self.head_answered = self.exchange.request.method == b"HEAD"

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() < 200:
            return  # an interim answer: the final one is still to come
        self._message_done(self.parser.should_keep_alive())

    def _message_done(self, keep_alive: bool) -> None:
        exchange, self.exchange = self.exchange, None
        self.used = True
        if not keep_alive:
            self.close()
        elif self.replica.state is not ReplicaState.DRAINING:
            self.replica.idle.append(self)
        else:
            self.close()
        if exchange is not None:
            exchange.completed()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.broken(retry=self.used and self.received == 0)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Exchange:
    """One client request forwarded to one replica; calls ``done(exchange)`` once at the end."""

    def __init__(
        self,
        request: Request,
        client: ClientConnection,
        replica: Replica,
        done: Callable[[Exchange], None],
    ) -> None:
        self.request = request
        self.client = client
        self.replica = replica
        self.done = done
        self.payload = request.encode()
        self.status = 0
        self.connection: UpstreamConnection | None = None
        self.finished = False
        replica.in_flight += 1

    def start(self, connection: UpstreamConnection) -> None:
        self.connection = connection
        self.client.on_lost = self.client_gone
        connection.send(self)

    def completed(self) -> None:
        self._end()
        self.client.finish(self.request.keep_alive)

    def client_gone(self) -> None:
        """The client hung up: close the worker connection so the worker sees it too."""
        if self.connection is not None and not self.finished:
            self.connection.exchange = None
            self.connection.close()
        self._end()

    def broken(self, retry: bool) -> None:
        """The worker connection ended before the answer did."""
        if self.finished:
            return
        if retry and self.replica.alive:  # a pooled connection the worker had just closed
            asyncio.get_running_loop().create_task(self._retry())
            return
        self.status = 502
        asyncio.get_running_loop().create_task(self._answer_broken())

    async def _retry(self) -> None:
        try:
            connection = await self.replica.connect()
        except OSError:
            self.broken(retry=False)
            return
        self.connection = connection
        connection.send(self)

    async def _answer_broken(self) -> None:
        try:
            code: int | None = await asyncio.wait_for(
                asyncio.shield(self.replica.exit_code), EXIT_WAIT_S
            )
        except TimeoutError:
            code = None
        self._end()
        log_event(
            logging.WARNING,
            "error",
            status=502,
            type="WorkerDied",
            model=self.replica.model,
            path=self.request.path,
            message=describe_exit(code),
            trace_id=trace_id_of(self.request.header(b"traceparent")),
        )
        if self.connection is not None and self.connection.received:
            self.client.finish(keep_alive=False)  # half an answer went out: only closing is honest
            return
        replica = self.replica
        died = WorkerDied(model=replica.model, pid=replica.pid, code=code, how=describe_exit(code))
        self.client.respond_error(died)

    def _end(self) -> None:
        if not self.finished:
            self.finished = True
            self.replica.in_flight -= 1
            self.done(self)
