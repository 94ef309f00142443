"""The activator's HTTP pieces: forwarded request bytes, its own answers, exit descriptions."""

from __future__ import annotations

import asyncio
import itertools

import httptools
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroserve.local.upstream import Replica, ReplicaState, UpstreamConnection, describe_exit
from zeroserve.local.wire import Request
from zeroserve.serving.http_answers import json_response


def test_a_chunked_request_is_forwarded_with_a_content_length() -> None:
    request = Request(
        method=b"POST",
        url=b"/v1/models/iris:predict?x=1",
        headers=[(b"Host", b"a"), (b"Transfer-Encoding", b"chunked"), (b"traceparent", b"00-1")],
        body=bytearray(b'{"instances": []}'),
    )
    encoded = request.encode()
    assert encoded.startswith(b"POST /v1/models/iris:predict?x=1 HTTP/1.1\r\n")
    assert b"Transfer-Encoding" not in encoded
    assert b"traceparent: 00-1\r\n" in encoded
    assert encoded.endswith(b'content-length: 17\r\n\r\n{"instances": []}')
    assert request.path == "/v1/models/iris:predict"


def test_json_response_is_valid_http() -> None:
    raw = json_response(503, {"error": "x"}, {"retry-after": "2"}, keep_alive=False)
    seen: dict[str, object] = {}

    class Sink:
        def on_header(self, name: bytes, value: bytes) -> None:
            seen[name.decode().lower()] = value.decode()

        def on_body(self, body: bytes) -> None:
            seen["body"] = body

    parser = httptools.HttpResponseParser(Sink())
    parser.feed_data(raw)
    assert parser.get_status_code() == 503
    assert seen["retry-after"] == "2"
    assert seen["connection"] == "close"
    assert seen["body"] == b'{"error":"x"}'


def test_exit_descriptions_name_the_likely_cause() -> None:
    assert describe_exit(3) == "exit code 3 (load() or warmup() raised)"
    assert describe_exit(9) == "exit code 9"
    assert "out of memory" in describe_exit(-9)
    assert "SIGSEGV" in describe_exit(-11)
    assert "unknown" in describe_exit(None)


class _Client:
    def __init__(self) -> None:
        self.sent = b""
        self.finished = 0

    def write(self, data: bytes) -> None:
        self.sent += data


class _Exchange:
    def __init__(self, method: bytes, version: str) -> None:
        self.request = Request(method=method, version=version)
        self.client = _Client()
        self.status = 0
        self.ended = 0
        self.connection_used: UpstreamConnection | None = None

    def completed(self) -> None:
        self.ended += 1


INTERIM = (
    b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
)
FINAL = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\nhello"


def _answer_in_pieces(
    data: bytes,
    cuts: list[int],
    method: bytes,
    version: str,
    connection: UpstreamConnection | None = None,
) -> _Exchange:
    replica = Replica("m-1", "m", state=ReplicaState.READY)
    connection = connection or UpstreamConnection(replica)
    replica = connection.replica
    replica.idle.clear()
    exchange = _Exchange(method, version)
    connection.exchange = exchange  # type: ignore[assignment]
    bounds = [0, *sorted(set(cuts)), len(data)]
    for start, end in itertools.pairwise(bounds):
        connection.data_received(data[start:end])
    assert replica.idle == [connection]  # kept for the next exchange
    exchange.connection_used = connection
    return exchange


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, len(INTERIM + FINAL) - 1), max_size=6))
def test_interim_answers_pass_to_http11_clients_and_never_end_the_exchange(
    cuts: list[int],
) -> None:
    async def run() -> None:
        exchange = _answer_in_pieces(INTERIM + FINAL, cuts, b"POST", "1.1")
        assert (exchange.client.sent, exchange.status, exchange.ended) == (INTERIM + FINAL, 200, 1)
        exchange = _answer_in_pieces(INTERIM + FINAL, cuts, b"POST", "1.0")
        assert (exchange.client.sent, exchange.status, exchange.ended) == (FINAL, 200, 1)

    asyncio.run(run())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, len(FINAL) - 6), max_size=4))
def test_a_head_answer_ends_with_its_headers(cuts: list[int]) -> None:
    head_only = FINAL[: -len(b"hello")]

    async def run() -> None:
        exchange = _answer_in_pieces(
            head_only, [c for c in cuts if c < len(head_only)], b"HEAD", "1.1"
        )
        assert (exchange.client.sent, exchange.ended) == (head_only, 1)
        connection = exchange.connection_used
        after = _answer_in_pieces(FINAL, [], b"GET", "1.1", connection)
        assert (after.client.sent, after.ended) == (FINAL, 1)  # the parser started afresh

    asyncio.run(run())
