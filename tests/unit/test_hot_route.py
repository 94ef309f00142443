"""The hot route: uvicorn's protocol, as the servers run it, answers the fast path's requests
itself, and hands everything else (and what the fast path gives back) to the ASGI app with the
body already read; answers stay in order, once each, closing where the connection ends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from tests.unit.test_one_write_per_step import RecordingTransport, a_step, in_a_loop
from zeroserve import predictor
from zeroserve.errors import InvalidPayload
from zeroserve.serving.fast_path import FastPath
from zeroserve.serving.guarded_http import guarded_protocol
from zeroserve.serving.hot_route import HotRoute
from zeroserve.serving.kserve_model import PredictorModel
from zeroserve.serving.runner import PredictorRunner
from zeroserve.settings import ServerSettings
from zeroserve.spec.decorator import declaration_of

pytestmark = pytest.mark.timeout(10)
LIMIT = 1000


@predictor(name="twice")
class Twice:
    def predict(self, instances: list[int]) -> list[int]:
        if 13 in instances:
            raise InvalidPayload("13 is refused; send other numbers")
        return [2 * n for n in instances]


class FlowTransport(RecordingTransport):
    """A recording transport that uvicorn's flow control can pause and resume."""

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Served:
    """One connection of a server with the hot route, its transport and what its app saw."""

    def __init__(self, **settings: Any) -> None:
        declaration = declaration_of(Twice)
        assert declaration is not None
        model = PredictorModel(PredictorRunner(Twice, declaration, None))
        model.ready = True
        self.app_saw: list[tuple[str, bytes]] = []
        fast = FastPath(self.app, models={"twice": model}, error_answer=self.error_answer)
        config = uvicorn.Config(self.app, interface="asgi3", lifespan="off", log_config=None)
        config.load()
        limits = ServerSettings(**settings)
        protocol_class = guarded_protocol(limits, HotRoute(fast, LIMIT))
        state = ServerState()
        state.default_headers = [(b"server", b"uvicorn"), (b"date", b"Fri, 04 Dec 2026")]
        self.protocol = protocol_class(config=config, server_state=state, app_state={})
        self.transport = FlowTransport()
        self.protocol.connection_made(self.transport)  # type: ignore[arg-type]

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        self.app_saw.append((scope["path"], message["body"]))
        await send(
            {"type": "http.response.start", "status": 409, "headers": [(b"content-length", b"3")]}
        )
        await send({"type": "http.response.body", "body": b"app"})

    async def error_answer(self, scope: Any, model: str, exc: Any, receive: Any, send: Any) -> None:
        body = f"{model}: {exc}".encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def send(self, data: bytes, steps: int = 5) -> bytes:
        self.protocol.data_received(data)
        for _ in range(steps):
            await a_step()
        return b"".join(self.transport.writes)

    def close(self) -> None:
        self.protocol.connection_lost(None)


def predict(body: bytes, path: str = "/v1/models/twice:predict", extra: bytes = b"") -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n%s"
        b"content-length: %d\r\n\r\n%s" % (path.encode(), extra, len(body), body)
    )


def answers(written: bytes) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """(status line, headers, body) of each answer written, in order."""
    found = []
    while written:
        head, _, rest = written.partition(b"\r\n\r\n")
        line, *fields = head.split(b"\r\n")
        headers = dict(field.split(b": ", 1) for field in fields)
        size = int(headers.get(b"content-length", b"0"))
        found.append((line, headers, rest[:size]))
        written = rest[size:].removeprefix(b"<close>")
    return found


@in_a_loop
async def test_a_taken_request_is_answered_without_the_app() -> None:
    served = Served()
    written = await served.send(predict(b'{"instances": [1, 2]}'))
    served.close()
    [(line, headers, body)] = answers(written)
    assert line == b"HTTP/1.1 200 OK"
    assert list(headers) == [b"server", b"date", b"content-length", b"content-type"]
    assert headers[b"content-type"] == b"application/json"
    assert body == b'{"predictions":[2,4]}'
    assert served.app_saw == []
    assert served.transport.writes[0] == written.removesuffix(b"<close>")  # in one write


@in_a_loop
async def test_what_the_fast_path_gives_back_reaches_the_app_with_its_body() -> None:
    served = Served()
    not_json = b'{"instances": [1,'
    written = await served.send(predict(not_json) + predict(b'{"instances": [13]}'))
    served.close()
    assert served.app_saw == [("/v1/models/twice:predict", not_json)]
    assert [(line, body) for line, _, body in answers(written)] == [
        (b"HTTP/1.1 409 Conflict", b"app"),
        (b"HTTP/1.1 400 Bad Request", b"twice: 13 is refused; send other numbers"),
    ]


@in_a_loop
async def test_pipelined_requests_are_answered_once_each_in_order() -> None:
    served = Served()
    stream = b"".join(
        predict(b'{"instances": [%d]}' % n) if n % 3 else predict(b"[]", "/elsewhere")
        for n in range(9)
    )
    written = await served.send(stream[:100], steps=1)
    written = await served.send(stream[100:], steps=40)
    served.close()
    bodies = [body for _, _, body in answers(written)]
    expected = [b"app" if n % 3 == 0 else b'{"predictions":[%d]}' % (2 * n) for n in range(9)]
    assert bodies == expected


@pytest.mark.parametrize(
    ("request_bytes", "why"),
    [
        (predict(b'{"instances": [1]}', extra=b"expect: 100-continue\r\n"), "expect"),
        (
            b"POST /v1/models/twice:predict HTTP/1.1\r\ncontent-type: application/json\r\n"
            b'transfer-encoding: chunked\r\n\r\n10\r\n{"instances": [1\r\n2\r\n]}\r\n0\r\n\r\n',
            "chunked",
        ),
        (predict(b'{"instances": [%s]}' % b",".join([b"1"] * LIMIT)), "over the limit"),
        (predict(b'{"instances": [1]}', extra=b"ce-id: 1\r\n"), "a CloudEvent"),
    ],
    ids=["expect", "chunked", "over-limit", "cloudevent"],
)
def test_requests_the_hot_route_does_not_take_go_to_the_app(request_bytes: bytes, why: str) -> None:
    async def run() -> None:
        served = Served()
        written = await served.send(request_bytes, steps=10)
        served.close()
        assert served.app_saw, why
        assert answers(written.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n"))[0][2] == b"app"

    asyncio.run(run())


@in_a_loop
async def test_http_1_0_and_connection_close_are_answered_then_closed() -> None:
    for request_bytes in (
        predict(b'{"instances": [3]}').replace(b"HTTP/1.1", b"HTTP/1.0"),
        predict(b'{"instances": [3]}', extra=b"connection: close\r\n"),
    ):
        served = Served()
        written = await served.send(request_bytes)
        [(_, headers, body)] = answers(written.removesuffix(b"<close>"))
        assert body == b'{"predictions":[6]}'
        assert headers[b"connection"] == b"close"
        assert served.transport.writes[-1] == b"<close>"
        served.close()


@in_a_loop
async def test_a_client_gone_before_its_body_ends_gets_nothing() -> None:
    served = Served()
    whole = predict(b'{"instances": [5]}')
    served.protocol.data_received(whole[:-3])
    await a_step()
    served.close()
    for _ in range(5):
        await a_step()
    assert b"".join(served.transport.writes) in (b"", b"<close>")  # no answer
    assert served.app_saw == []


@in_a_loop
async def test_the_access_log_leaves_every_request_to_the_app() -> None:
    served = Served(access_log=True)
    served.protocol.access_log = True  # uvicorn's logger has handlers where KServe runs
    written = await served.send(predict(b'{"instances": [1]}'))
    served.close()
    assert served.app_saw == [("/v1/models/twice:predict", b'{"instances": [1]}')]
    assert answers(written)[0][2] == b"app"
