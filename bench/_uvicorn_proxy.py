"""The alternative to the activator's hand-written HTTP, for ``bench.proxy_choice``: uvicorn's
server (httptools parser, h11 semantics) forwarding every request through httpx's pooled async
client, streamed back as it arrives.

``python -m bench._uvicorn_proxy PORT UPSTREAM_URL``
"""

from __future__ import annotations

import sys
from typing import Any

import httpx
import uvicorn

REQUEST_SKIPPED = {b"host", b"content-length", b"expect", b"connection", b"transfer-encoding"}
ANSWER_SKIPPED = {b"connection", b"transfer-encoding", b"date", b"server"}  # uvicorn adds its own


def proxy(upstream: str) -> Any:
    client = httpx.AsyncClient(
        base_url=upstream,
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
        timeout=None,
    )

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        url = scope["path"] + (
            ("?" + scope["query_string"].decode()) if scope["query_string"] else ""
        )
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in REQUEST_SKIPPED]
        request = client.build_request(scope["method"], url, headers=headers, content=body)
        answer = await client.send(request, stream=True)
        try:
            raw = [(k, v) for k, v in answer.headers.raw if k.lower() not in ANSWER_SKIPPED]
            await send(
                {"type": "http.response.start", "status": answer.status_code, "headers": raw}
            )
            async for chunk in answer.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await answer.aclose()

    return app


if __name__ == "__main__":
    port, upstream = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(
        proxy(upstream),
        host="127.0.0.1",
        port=port,
        http="httptools",
        loop="uvloop",
        access_log=False,
        log_level="warning",
        lifespan="on",
    )
