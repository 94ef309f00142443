"""The activator's HTTP (llhttp through httptools, forwarding bytes over pooled connections)
against uvicorn's server forwarding through httpx's pooled client, in front of the same worker.

Both proxies front one iris worker started by ``zeroserve serve``; rounds alternate which goes
first (median of pair ratios, as the machine's speed drifts). Goal: the activator is at least as
fast as the well-kept alternative (ratio >= 1.0); otherwise the alternative should replace it.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

from bench._load import alternating_rounds
from bench._process import free_port, running
from bench.overhead import BODY, prepare_model
from bench.scale_from_zero import CLIENTS, PREDICT, state

GOAL = 1.0
PAIRS = 8
ROUND_SECONDS = 1.5


def main() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        prepare_model(folder)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "zeroserve", "serve", str(folder / "model.py:Iris")]
        command += ["--port", str(port), "--no-access-log"]
        with running(command, f"{url}/v2/health/ready", folder / "activator.log"):
            httpx.post(url + PREDICT, content=BODY, timeout=120)
            worker = state(url)["replicas"][0]["port"]  # type: ignore[index]
            other = free_port()
            alternative = [sys.executable, "-m", "bench._uvicorn_proxy", str(other)]
            alternative.append(f"http://127.0.0.1:{worker}")
            with running(
                alternative, f"http://127.0.0.1:{other}/v2/health/ready", folder / "u.log"
            ):
                return measure({"activator": port, "uvicorn_httpx": other})


def measure(ports: dict[str, int]) -> dict[str, object]:
    ratios, results = alternating_rounds(
        ports, PREDICT, BODY, clients=CLIENTS, pairs=PAIRS, seconds=ROUND_SECONDS
    )
    ratio = statistics.median(ratios)
    for name, result in results.items():
        print(f"{name:14s} {result.requests_per_second:8.1f} req/s")
    return {
        "bench": "proxy_choice",
        "ratio": round(ratio, 3),
        "goal": GOAL,
        "met": ratio >= GOAL,
        "pair_ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "clients": CLIENTS,
        **{name: result.summary() for name, result in results.items()},
    }


if __name__ == "__main__":
    print(json.dumps(main()))
