"""A client that writes HTTP/1.1 bytes as a test means them and reads answers one by one, for
what the ordinary clients never send (pipelining, half-close, stalls, odd headers)."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import httptools


def request_bytes(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    """A request with a Content-Length (unless the headers say otherwise)."""
    fields = {"host": "127.0.0.1", **(headers or {})}
    if body or method in ("POST", "PUT"):
        fields.setdefault("content-length", str(len(body)))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return head.encode("latin-1") + b"\r\n" + body


def predict_bytes(model: str, instances: list[Any], headers: dict[str, str] | None = None) -> bytes:
    body = json.dumps({"instances": instances}).encode()
    headers = {"content-type": "application/json", **(headers or {})}
    return request_bytes("POST", f"/v1/models/{model}:predict", body, headers)


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


class AnswerReader:
    """Parses a stream of answers; interim (1xx) answers are kept apart from final ones."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.answers: list[Answer] = []
        self.interim: list[int] = []
        self.current = Answer(0)

    def feed(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.current = Answer(0)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.current.body += body

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            self.interim.append(status)
        else:
            self.current.status = status
            self.answers.append(self.current)


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def read_answers(sock: socket.socket, count: int, timeout: float = 30.0) -> AnswerReader:
    """Read until ``count`` final answers arrived, the peer closed, or ``timeout`` passed."""
    reader = AnswerReader()
    deadline = time.monotonic() + timeout
    while len(reader.answers) < count and time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        if not data:
            break
        reader.feed(data)
    return reader


def closed_by_peer(sock: socket.socket, timeout: float = 30.0) -> bool:
    """Whether the peer closes the connection (reads EOF) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True
