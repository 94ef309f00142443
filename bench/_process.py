"""Start a server process for a benchmark and wait on its readiness route."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from zeroserve.delivery.probe import stop_process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(
    command: list[str],
    ready_url: str | Callable[[], bool],
    log: Path,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` until the block ends; enter the block once ``ready_url`` answers 200
    (or, given a function, once it returns True)."""
    with log.open("wb") as sink:
        # its own process group (to stop what it leaves), in this session: a new session is a new
        # scheduling autogroup on Linux, which gave the server half the CPU against its clients
        # and cut vLLM's tokens/s at 16 clients from about 3,500 to 500 here
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=env, process_group=0
        )
    try:
        wait_ready(process, ready_url, log, timeout)
        yield process
    finally:
        stop_process(process)
        with contextlib.suppress(ProcessLookupError):  # what it started and left behind
            os.killpg(process.pid, signal.SIGKILL)


def wait_ready(
    process: subprocess.Popen[bytes], url: str | Callable[[], bool], log: Path, timeout: float
) -> float:
    """Poll ``url`` until it answers 200 (or the function until True); return the seconds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if url() if callable(url) else httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started
        time.sleep(0.02)
    raise RuntimeError(f"{url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")
