"""Whole HTTP/1.1 answers written straight to a socket, where no framework writes them: the
activator's own answers and the refusals of a request that never reached an application."""

from __future__ import annotations

import http
from typing import Any

import orjson

from zeroserve.errors import RequestError, http_status_for

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# After a client's EOF, interim answers at these delays find one that closed outright rather
# than half-closed: a closed socket refuses the second write (HTTP/1.1 clients skip any number).
CLIENT_PROBES_S = (0.0, 0.05, 0.5)


def json_response(
    status: int,
    body: Any,
    headers: dict[str, str] | None = None,
    keep_alive: bool = True,
    head: bool = False,
) -> bytes:
    """A complete HTTP/1.1 response with a JSON body (its headers alone for ``head``)."""
    return http_response(status, orjson.dumps(body), "application/json", headers, keep_alive, head)


def http_response(
    status: int,
    payload: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
    keep_alive: bool = True,
    head: bool = False,
) -> bytes:
    """A complete HTTP/1.1 response with ``payload`` as its body (headers alone for ``head``)."""
    lines = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        f"content-type: {content_type}",
        f"content-length: {len(payload)}",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if not keep_alive:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else payload)


def error_response(error: RequestError) -> bytes:
    """The answer for a request the activator refuses, from the error table; closes."""
    return json_response(http_status_for(error), error.to_body(), keep_alive=False)
