"""The activator's HTTP as RFC 9110/9112 ask, against a real activator and real workers:
interim answers, Expect, HEAD, half-close, pipelining, limits and timeouts."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURES, RunningServer, start_server, wait_ready
from tests.integration.test_activator import model_status, poll
from tests.raw_http import (
    closed_by_peer,
    connect,
    predict_bytes,
    read_answers,
    request_bytes,
)

HTTP = FIXTURES / "http"


def _start(folder: Path, **settings: str) -> RunningServer:
    env = {**os.environ, **{f"ZEROSERVE_SERVER__{k.upper()}": v for k, v in settings.items()}}
    server = start_server(HTTP, folder / "activator.log", env=env)
    assert server.process.poll() is None, server.log()
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = _start(tmp_path_factory.mktemp("http"), max_header_size="8KiB")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """An activator with one-second timeouts."""
    running = _start(
        tmp_path_factory.mktemp("impatient"),
        header_timeout="1",
        body_timeout="1",
        keep_alive_timeout="1",
    )
    yield running
    running.stop()


def test_expect_100_continue_is_answered_once_and_every_answer_reaches_its_own_client(
    server: RunningServer,
) -> None:
    with connect(server.url) as sock:
        whole = predict_bytes("echo", ["first"], {"expect": "100-continue"})
        head, body = whole.split(b"\r\n\r\n", 1)
        sock.sendall(head + b"\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # sent before the body
        sock.sendall(body)
        sock.sendall(predict_bytes("echo", ["second"]))
        reader = read_answers(sock, 2)
    assert [a.json()["predictions"] for a in reader.answers] == [["first"], ["second"]]
    assert reader.interim == []  # the worker's own 100 Continue never reaches the client


def test_curl_posting_large_bodies_over_one_connection_gets_each_its_own_answer(
    server: RunningServer, tmp_path: Path
) -> None:
    command = ["curl", "-sS", "--fail-with-body"]
    for index in range(4):  # curl sends Expect: 100-continue itself for bodies over 1 KiB
        payload = tmp_path / f"{index}.json"
        payload.write_text(json.dumps({"instances": [str(index) * 4000]}))
        url = f"{server.url}/v1/models/echo:predict"
        command += [*(["--next"] if index else []), url, "-H", "content-type: application/json"]
        command += ["--data-binary", f"@{payload}", "-w", "\n"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    answers = [json.loads(line)["predictions"][0] for line in done.stdout.splitlines()]
    assert answers == [str(index) * 4000 for index in range(4)]


def test_an_expectation_other_than_100_continue_gets_417(server: RunningServer) -> None:
    with connect(server.url) as sock:
        sock.sendall(predict_bytes("echo", [1], {"expect": "something-else"}))
        answer = read_answers(sock, 1).answers[0]
    assert answer.status == 417
    assert "100-continue" in answer.json()["error"]


def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(
    server: RunningServer,
) -> None:
    with connect(server.url) as sock:
        head = request_bytes(
            "POST",
            "/v1/models/echo:predict",
            headers={"content-length": str(1 << 40), "expect": "100-continue"},
        )
        sock.sendall(head)
        answer = read_answers(sock, 1).answers[0]
    assert answer.status == 413
    assert answer.json()["type"] == "PayloadTooLarge"


def test_head_answers_have_no_body_and_the_connection_goes_on(server: RunningServer) -> None:
    connection = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=30)
    try:
        for path in ("/v2/models/echo", "/v2/health/live", "/v1/models/echo"):
            connection.request("HEAD", path)
            answer = connection.getresponse()
            assert answer.read() == b""
            assert answer.status < 500, path
            connection.request("GET", "/v1/models")
            listing = connection.getresponse()
            assert "echo" in json.loads(listing.read())["models"], path
    finally:
        connection.close()
    poll(lambda: model_status(server, "echo")["in_flight"] == 0, "HEAD is done", server)


@pytest.mark.parametrize(
    "path", ["/zeroserve/status", "/zeroserve/", "/metrics", "/v2/health/live"]
)
def test_a_write_to_a_route_that_only_reads_gets_405_naming_the_methods(
    server: RunningServer, path: str
) -> None:
    answer = httpx.post(f"{server.url}{path}", json={}, timeout=10)
    assert answer.status_code == 405, answer.text
    assert answer.headers["allow"] == "GET, HEAD"
    assert answer.json()["type"] == "MethodNotAllowed"
    assert httpx.head(f"{server.url}{path}", timeout=10).status_code == 200


@pytest.mark.parametrize("method", ["HEAD", "GET", "PUT", "DELETE"])
def test_a_method_other_than_post_on_an_openai_route_gets_405(
    server: RunningServer, method: str
) -> None:
    answer = httpx.request(method, f"{server.url}/openai/v1/completions", timeout=10)
    assert answer.status_code == 405, answer.text
    assert answer.headers["allow"] == "POST"
    if method != "HEAD":
        assert answer.json()["error"]["type"] == "MethodNotAllowed", answer.text


def test_a_client_that_half_closes_still_gets_its_answer(
    server: RunningServer, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    with connect(server.url) as sock:
        sock.sendall(predict_bytes("held", [str(gate)]))
        sock.shutdown(socket.SHUT_WR)
        poll(lambda: model_status(server, "held")["in_flight"] == 1, "predict runs", server)
        gate.touch()
        reader = read_answers(sock, 1)
        assert closed_by_peer(sock)
    assert reader.answers[0].json() == {"predictions": [str(gate)]}


def test_a_client_that_closes_outright_has_its_request_cancelled(
    server: RunningServer, tmp_path: Path
) -> None:
    gate = tmp_path / "never-opened"
    sock = connect(server.url)
    sock.sendall(predict_bytes("held", [str(gate)]))
    poll(lambda: model_status(server, "held")["in_flight"] == 1, "predict runs", server)
    sock.close()
    poll(lambda: model_status(server, "held")["in_flight"] == 0, "request cancelled", server)
    assert not gate.exists()


def test_pipelined_requests_are_answered_in_order(server: RunningServer) -> None:
    with connect(server.url) as sock:
        sock.sendall(b"".join(predict_bytes("echo", [n]) for n in range(20)))
        reader = read_answers(sock, 20)
    assert [a.json()["predictions"] for a in reader.answers] == [[n] for n in range(20)]


def test_garbage_after_a_good_request_is_refused_after_its_answer(server: RunningServer) -> None:
    with connect(server.url) as sock:
        sock.sendall(predict_bytes("echo", ["good"]) + b"NOT HTTP AT ALL\r\n\r\n")
        reader = read_answers(sock, 2)
        assert closed_by_peer(sock)
    assert reader.answers[0].json() == {"predictions": ["good"]}
    assert reader.answers[1].status == 400
    assert reader.answers[1].json()["type"] == "MalformedRequest"


@pytest.mark.parametrize(
    "head",
    [
        b"GET /v1/models HTTP/1.1\r\nhost: x\r\nbig: " + b"a" * 20_000 + b"\r\n\r\n",
        b"GET /v1/models?" + b"q" * 20_000 + b" HTTP/1.1\r\nhost: x\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\n" + b"".join(b"h%d: v\r\n" % n for n in range(3000)),
    ],
    ids=["one-large-header", "long-request-line", "many-headers-never-ending"],
)
def test_request_heads_over_the_limit_get_431(server: RunningServer, head: bytes) -> None:
    with connect(server.url) as sock:
        sock.sendall(head)
        answer = read_answers(sock, 1).answers[0]
    assert answer.status == 431
    assert "--max-header-size" in answer.json()["error"]


def test_a_40_mib_header_is_refused_without_being_read(server: RunningServer) -> None:
    with connect(server.url) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nbig: ")
        try:
            for _ in range(40 * 16):
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed while we were still sending
        reader = read_answers(sock, 1)
    assert [a.status for a in reader.answers] in ([431], [])  # a reset may eat the answer
    assert httpx.get(f"{server.url}/v1/models").status_code == 200


def test_slow_headers_and_stalled_bodies_get_408(impatient: RunningServer) -> None:
    with connect(impatient.url) as sock:
        sock.sendall(b"POST /v1/models/echo:predict HTTP/1.1\r\nhost: x\r\n")
        answer = read_answers(sock, 1).answers[0]
    assert answer.status == 408
    assert "HEADER_TIMEOUT" in answer.json()["error"]
    with connect(impatient.url) as sock:
        stalled = {"content-length": "40", "content-type": "application/json"}
        sock.sendall(request_bytes("POST", "/v1/models/echo:predict", b'{"inst', stalled))
        answer = read_answers(sock, 1).answers[0]
    assert answer.status == 408


def test_idle_connections_are_closed_after_the_keep_alive_timeout(
    impatient: RunningServer,
) -> None:
    with connect(impatient.url) as sock:
        sock.sendall(request_bytes("GET", "/v1/models"))
        assert read_answers(sock, 1).answers[0].status == 200
        assert closed_by_peer(sock, timeout=30)
    with connect(impatient.url) as sock:  # connected and never said anything
        assert closed_by_peer(sock, timeout=30)


@pytest.fixture(scope="module")
def impatient_direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """``serve --direct`` (what a pod runs) with one-second timeouts and an 8 KiB head limit."""
    folder = tmp_path_factory.mktemp("impatient-direct")
    env = {
        **os.environ,
        "ZEROSERVE_SERVER__HEADER_TIMEOUT": "1",
        "ZEROSERVE_SERVER__BODY_TIMEOUT": "1",
        "ZEROSERVE_SERVER__KEEP_ALIVE_TIMEOUT": "1",
        "ZEROSERVE_SERVER__MAX_HEADER_SIZE": "8KiB",
    }
    running = start_server(HTTP / "echo.py", folder / "direct.log", "--direct", env=env)
    wait_ready(running, "echo")
    yield running
    running.stop()


def test_direct_serving_has_the_same_limits(impatient_direct: RunningServer) -> None:
    url = impatient_direct.url
    with connect(url) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nbig: " + b"a" * 20_000 + b"\r\n\r\n")
        answer = read_answers(sock, 1).answers[0]
    assert answer.status == 431
    assert answer.json()["type"] == "HeadersTooLarge"
    with connect(url) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nbig: ")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(4):  # refused (and closed) once over the limit: a send may fail
                sock.sendall(b"a" * 4096)
        assert read_answers(sock, 1).answers[0].status == 431
    with connect(url) as sock:
        sock.sendall(b"POST /v1/models/echo:predict HTTP/1.1\r\nhost: x\r\n")
        answer = read_answers(sock, 1).answers[0]
    assert answer.status == 408
    with connect(url) as sock:
        stalled = {"content-length": "40", "content-type": "application/json"}
        sock.sendall(request_bytes("POST", "/v1/models/echo:predict", b'{"inst', stalled))
        assert read_answers(sock, 1).answers[0].status == 408
    with connect(url) as sock:  # connected and never said anything
        assert closed_by_peer(sock, timeout=30)
    with connect(url) as sock:
        sock.sendall(predict_bytes("echo", ["still serving"]))
        assert read_answers(sock, 1).answers[0].json() == {"predictions": ["still serving"]}
        assert closed_by_peer(sock, timeout=30)  # idle keep-alive closed


def test_direct_serving_answers_odd_http_once_and_in_order(impatient_direct: RunningServer) -> None:
    """What a pod's server gets from odd clients: pipelined requests split anywhere, a
    half-close after a whole request, HTTP/1.0, Expect: 100-continue, a chunked body; every
    answer reaches its client once, in order."""
    url = impatient_direct.url
    with connect(url) as sock:  # pipelined, in one write and in pieces
        stream = b"".join(predict_bytes("echo", [n]) for n in range(20))
        sock.sendall(stream[:1000])
        sock.sendall(stream[1000:])
        assert [a.json() for a in read_answers(sock, 20).answers] == [
            {"predictions": [n]} for n in range(20)
        ]
    for attempt in range(30):  # half-closed after a whole request: the EOF may come before,
        with connect(url) as sock:  # while or after the answer is written: never lost
            sock.sendall(predict_bytes("echo", [attempt]))
            sock.shutdown(socket.SHUT_WR)
            assert read_answers(sock, 1).answers[0].json() == {"predictions": [attempt]}
            assert closed_by_peer(sock)
    with connect(url) as sock:  # HTTP/1.0: answered, then closed
        body = b'{"instances": ["old"]}'
        sock.sendall(
            b"POST /v1/models/echo:predict HTTP/1.0\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        answer = read_answers(sock, 1).answers[0]
        assert answer.json() == {"predictions": ["old"]}
        assert answer.headers["connection"] == "close"
        assert closed_by_peer(sock)
    with connect(url) as sock:  # Expect: 100-continue, then a chunked body
        sock.sendall(predict_bytes("echo", ["asked"], {"expect": "100-continue"}))
        body = b'{"instances": ["chunked"]}'
        sock.sendall(
            b"POST /v1/models/echo:predict HTTP/1.1\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        )
        reader = read_answers(sock, 2)
        assert [a.json() for a in reader.answers] == [
            {"predictions": ["asked"]},
            {"predictions": ["chunked"]},
        ]


@pytest.mark.parametrize(
    ("sent", "phase"),
    [
        (request_bytes("POST", "/v1/models/echo:predict", b'{"inst', {"content-length": "40"}),
         "reading a body"),
        (b"POST /v1/models/echo:predict HTTP/1.1\r\nhost: x\r\nconte", "reading a request line"),
    ],
    ids=["body", "head"],
)  # fmt: skip
@pytest.mark.parametrize("which", ["activator", "direct"])
def test_a_request_cut_short_by_a_half_close_is_answered_400(
    request: pytest.FixtureRequest, which: str, sent: bytes, phase: str
) -> None:
    """The client closed its sending side mid-request: it can still read why (both servers)."""
    served: RunningServer = request.getfixturevalue("server" if which == "activator" else
                                                    "impatient_direct")  # fmt: skip
    with connect(served.url) as sock:
        sock.sendall(sent)
        sock.shutdown(socket.SHUT_WR)
        answer = read_answers(sock, 1).answers[0]
        assert closed_by_peer(sock)
    assert answer.status == 400
    assert answer.json()["type"] == "RequestCutShort"
    assert f"while the server was {phase}" in answer.json()["error"]
    assert "ClientDisconnect" not in served.log()  # the model's route was never asked
