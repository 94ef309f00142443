"""Load from ``wrk`` (one thread, C): it costs the 2-core machine far less CPU than any Python
client, so the servers, not the client, are measured. Falls back to ``bench._load`` where wrk is
not installed (``apt-get install wrk``), and says so in the figures."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench._load import run_load

REPORT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("{body}", "rb"):read()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK {{\\"requests\\": %d, \\"us\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, "
    .. "\\"errors\\": %d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass
class Measured:
    """One load run: throughput and latency percentiles."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def generator() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def measure(port: int, path: str, body: bytes, clients: int, seconds: float) -> Measured:
    """POST ``body`` to ``path`` from ``clients`` keep-alive connections for ``seconds``."""
    if generator() == "python":
        result = run_load("127.0.0.1", port, path, body, clients=clients, seconds=seconds)
        summary = result.summary()
        return Measured(summary["rps"], summary["p50_ms"], summary["p99_ms"], result.errors)
    with tempfile.TemporaryDirectory() as scratch:
        body_file, script = Path(scratch) / "body", Path(scratch) / "post.lua"
        body_file.write_bytes(body)
        script.write_text(REPORT.format(body=body_file))
        command = ["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "-s", str(script)]
        command.append(f"http://127.0.0.1:{port}{path}")
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("WRK "))
    figures = json.loads(line[4:])
    good = figures["requests"] - figures["errors"]
    return Measured(
        rps=good / (figures["us"] / 1e6),
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        errors=figures["errors"],
    )
