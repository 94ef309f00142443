"""Every client gets exactly its own answers, whatever mix of requests, methods, bodies and
hang-ups share the activator's pooled connections to a worker (real activator, real worker)."""

from __future__ import annotations

import itertools
import json
import random
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RunningServer
from tests.integration.test_activator_http import _start
from tests.raw_http import AnswerReader, connect, predict_bytes, request_bytes

TOKENS = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = _start(tmp_path_factory.mktemp("proxy"))
    yield running
    running.stop()


@dataclass
class Client:
    """One client connection and the answers it still waits for, in order."""

    url: str
    sock: socket.socket = field(init=False)
    owed: deque[object] = field(default_factory=deque)  # token expected, or "listing"
    reader: AnswerReader = field(default_factory=AnswerReader)
    checked: int = 0

    def __post_init__(self) -> None:
        self.sock = connect(self.url)

    def send(self, kind: str, *, expect: bool = False, chunked: bool = False) -> None:
        if kind == "listing":
            self.sock.sendall(request_bytes("GET", "/v1/models"))
            self.owed.append("listing")
            return
        token = f"t{next(TOKENS)}"
        headers = {"expect": "100-continue"} if expect else {}
        data = predict_bytes("echo", [token, "x" * (2000 if expect else 3)], headers)
        if chunked:
            head, body = data.split(b"\r\n\r\n", 1)
            head = head.replace(b"content-length: %d" % len(body), b"transfer-encoding: chunked")
            half = len(body) // 2
            pieces = [body[:half], body[half:]]
            data = head + b"\r\n\r\n" + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
            data += b"0\r\n\r\n"
        self.sock.sendall(data)
        self.owed.append(token)

    def head(self) -> None:
        """HEAD on a forwarded route, read at once (its answer has headers only)."""
        self.settle()
        self.sock.sendall(request_bytes("HEAD", "/v2/models/echo"))
        answer = b""
        while not answer.endswith(b"\r\n\r\n"):
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed during a HEAD answer"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 "), answer

    def settle(self) -> None:
        """Read every owed answer and check each is this client's own, in order."""
        while len(self.reader.answers) < len(self.owed) + self.checked:
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed with {len(self.owed)} answers owed"
            self.reader.feed(chunk)
        for answer in self.reader.answers[self.checked :]:
            expected = self.owed.popleft()
            assert answer.status == 200, (answer.status, answer.body)
            body = json.loads(answer.body)
            if expected == "listing":
                assert "echo" in body["models"]
            else:
                assert body["predictions"][0] == expected
            self.checked += 1

    def hang_up(self, half: bool) -> None:
        """Close without reading what is owed (half: shut the sending side, then read it)."""
        if half:
            self.sock.shutdown(socket.SHUT_WR)
            self.settle()
        self.sock.close()
        self.sock = connect(self.url)
        self.owed.clear()
        self.reader = AnswerReader()
        self.checked = 0


ACTIONS = st.sampled_from(
    ["predict", "expect", "chunked", "listing", "head", "read", "hang_up", "half_close"]
)


def run_script(server: RunningServer, script: list[tuple[int, str]], clients: int) -> int:
    """Play ``script`` (client index, action) and check every answer; return how many came."""
    pool = [Client(server.url) for _ in range(clients)]
    answered = 0
    try:
        for index, action in script:
            client = pool[index % clients]
            if action in ("predict", "expect", "chunked", "listing"):
                kind = "listing" if action == "listing" else "predict"
                client.send(kind, expect=action == "expect", chunked=action == "chunked")
            elif action == "head":
                client.head()
                answered += 1
            elif action == "read":
                answered += len(client.owed)
                client.settle()
            else:
                answered += len(client.owed) if action == "half_close" else 0
                client.hang_up(half=action == "half_close")
        for client in pool:
            answered += len(client.owed)
            client.settle()
    finally:
        for client in pool:
            client.sock.close()
    return answered


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    clients=st.integers(1, 4),
    script=st.lists(st.tuples(st.integers(0, 3), ACTIONS), min_size=1, max_size=40),
)
def test_each_client_gets_exactly_its_own_answers(
    server: RunningServer, clients: int, script: list[tuple[int, str]]
) -> None:
    run_script(server, script, clients)


@pytest.mark.timeout(300)
def test_ten_thousand_mixed_requests_over_pooled_connections(server: RunningServer) -> None:
    """Eight threads, 10 000 requests in all, each thread its own seeded mix of actions."""
    actions = ["predict"] * 6 + ["expect", "chunked", "listing", "head", "read", "read"]
    actions += ["hang_up", "half_close"]
    answered: list[int] = []
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        count = 0
        try:
            while count < 1250:
                script = [(0, rng.choice(actions)) for _ in range(rng.randint(1, 30))]
                count += run_script(server, script, 1)
            answered.append(count)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=280)
    assert not errors, errors[0]
    assert len(answered) == 8
    assert sum(answered) >= 10_000, answered
