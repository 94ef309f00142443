"""A response's head and body leave in one write (OneWritePerStep), and nothing is held past
the step that wrote it, a close, or a transport that is closing."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from zeroserve.serving.guarded_http import OneWritePerStep

pytestmark = pytest.mark.timeout(10)


class RecordingTransport:
    """A transport double that keeps what is written to it, in order."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False
        self.extra = {"peername": ("127.0.0.1", 1)}

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.writes.append(b"<close>")
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str) -> Any:
        return self.extra.get(name)

    def get_write_buffer_size(self) -> int:
        return 0  # every write is taken at once


async def a_step() -> None:
    await asyncio.sleep(0)


def in_a_loop(test: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """A test run in an event loop of its own."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())  # type: ignore[arg-type]

    return run


def wrapped() -> tuple[OneWritePerStep, RecordingTransport]:
    transport = RecordingTransport()
    return OneWritePerStep(transport, asyncio.get_running_loop()), transport  # type: ignore[arg-type]


@in_a_loop
async def test_writes_in_one_step_leave_as_one_at_its_end() -> None:
    coalesced, transport = wrapped()
    coalesced.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    coalesced.write(b"{}")
    assert transport.writes == []
    await a_step()
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    coalesced.write(b"next")  # a later step's write is its own
    await a_step()
    assert transport.writes[1:] == [b"next"]


@in_a_loop
async def test_a_close_sends_what_is_held_first() -> None:
    coalesced, transport = wrapped()
    coalesced.write(b"head")
    coalesced.write(b"body")
    coalesced.close()
    await a_step()  # the scheduled flush finds nothing more to send
    assert transport.writes == [b"headbody", b"<close>"]


@in_a_loop
async def test_nothing_is_written_to_a_transport_that_is_closing() -> None:
    coalesced, transport = wrapped()
    coalesced.write(b"answer")
    transport.closing = True  # the client went away within the step
    await a_step()
    assert transport.writes == []
    assert coalesced.is_closing() is True
    assert coalesced.get_extra_info("peername") == ("127.0.0.1", 1)


@in_a_loop
async def test_held_bytes_count_as_buffered_until_they_leave() -> None:
    coalesced, _ = wrapped()
    coalesced.write(b"held")
    coalesced.write(b"more")
    assert coalesced.get_write_buffer_size() == 8  # uvicorn's flow control asks the transport
    await a_step()
    assert coalesced.get_write_buffer_size() == 0


@in_a_loop
async def test_an_early_flush_sends_at_once_and_calls_off_the_one_due() -> None:
    coalesced, transport = wrapped()
    coalesced.write(b"head")
    coalesced.write(b"body")
    due = coalesced.due
    coalesced.flush()  # the answer is complete
    assert transport.writes == [b"headbody"]
    assert due is not None
    assert due.cancelled()  # the loop takes no extra turn for it
    coalesced.write(b"next")  # a write after it in the same step waits for the step's end
    assert transport.writes == [b"headbody"]
    await a_step()
    assert transport.writes == [b"headbody", b"next"]


@in_a_loop
async def test_a_complete_answer_leaves_before_the_app_returns() -> None:
    """uvicorn's protocol, as the servers run it: what the app does after its last send (the
    fast path's metrics) comes after the answer is written, not before."""
    import uvicorn
    from uvicorn.server import ServerState

    from zeroserve.serving.guarded_http import guarded_protocol
    from zeroserve.settings import ServerSettings

    seen_after_last_send: list[bytes] = []
    transport = RecordingTransport()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})
        seen_after_last_send.extend(transport.writes)

    config = uvicorn.Config(app, lifespan="off", log_config=None)
    config.load()
    limits = guarded_protocol(ServerSettings())
    protocol = limits(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
    for _ in range(5):
        await a_step()
    protocol.connection_lost(None)
    assert len(seen_after_last_send) == 1
    assert seen_after_last_send[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert seen_after_last_send[0].endswith(b"\r\n\r\n{}")
