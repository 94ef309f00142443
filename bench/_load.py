"""A small HTTP/1.1 keep-alive load generator on asyncio streams.

It costs far less CPU per request than a full HTTP client, so on a 2-core machine the server, not
the client, is what gets measured. Every response is checked for status 200.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    """Requests answered in a measured window, with their latencies in seconds."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def requests_per_second(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def merge(self, other: LoadResult) -> None:
        self.seconds += other.seconds
        self.latencies += other.latencies
        self.errors += other.errors

    def summary(self) -> dict[str, float]:
        return {
            "rps": round(self.requests_per_second, 1),
            "p50_ms": round(self.percentile_ms(0.50), 2),
            "p99_ms": round(self.percentile_ms(0.99), 2),
            "mean_ms": round(1000 * statistics.fmean(self.latencies), 2),
            "requests": len(self.latencies),
            "errors": self.errors,
        }


def post_request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _client(
    host: str, port: int, request: bytes, deadline: float, result: LoadResult
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = _content_length(head)
            if length is None:  # chunked (Ray Serve's proxy answers so)
                await _read_chunks(reader)
            else:
                await reader.readexactly(length)
            if head.startswith(b"HTTP/1.1 200"):
                result.latencies.append(time.perf_counter() - started)
            else:
                result.errors += 1
    finally:
        writer.close()


def _content_length(head: bytes) -> int | None:
    """The body's length, or None for a chunked body."""
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
        if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            return None
    raise RuntimeError(f"response without Content-Length: {head!r}")


async def _read_chunks(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)  # the chunk and its CRLF
        if size == 0:
            return


async def _run(host: str, port: int, request: bytes, clients: int, seconds: float) -> LoadResult:
    result = LoadResult()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_client(host, port, request, deadline, result) for _ in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


def run_load(
    host: str, port: int, path: str, body: bytes, *, clients: int, seconds: float
) -> LoadResult:
    """Keep ``clients`` connections busy for ``seconds``; return what they measured."""
    request = post_request(host, port, path, body)
    return asyncio.run(_run(host, port, request, clients, seconds))


def alternating_rounds(
    ports: dict[str, int], path: str, body: bytes, *, clients: int, pairs: int, seconds: float
) -> tuple[list[float], dict[str, LoadResult]]:
    """Load two servers in turn, each pair in the other order; return the pairs' ratios (first
    named over second) and everything each measured. A warm-up round for each comes first."""
    first, second = ports
    results = {name: LoadResult() for name in ports}
    for name in ports:
        run_load("127.0.0.1", ports[name], path, body, clients=clients, seconds=1.0)
    ratios = []
    for index in range(pairs):
        order = [first, second] if index % 2 == 0 else [second, first]
        rates = {}
        for name in order:
            measured = run_load(
                "127.0.0.1", ports[name], path, body, clients=clients, seconds=seconds
            )
            results[name].merge(measured)
            rates[name] = measured.requests_per_second
        ratios.append(rates[first] / rates[second])
    return ratios, results
