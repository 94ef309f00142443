"""The activator's HTTP pieces: forwarded request bytes, its own answers, exit descriptions."""

from __future__ import annotations

import httptools

from zeroserve.local.upstream import describe_exit
from zeroserve.local.wire import Request, json_response


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
    assert describe_exit(3) == "exit code 3"
    assert "out of memory" in describe_exit(-9)
    assert "SIGSEGV" in describe_exit(-11)
    assert "unknown" in describe_exit(None)
