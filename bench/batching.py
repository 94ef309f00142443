"""Batching: the same model served batched and unbatched, over HTTP, in one run.

The model (bench/models/forest.py) costs about 10 ms per predict() call plus 0.02 ms per
instance. At 64 concurrent clients the batched model should answer >= 4x the requests per second
of the unbatched one; with a single client its median latency should grow by at most
max_latency_ms + 2 ms. Throughput is the median over back-to-back pairs of rounds, since this
shared machine's speed drifts.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench._load import LoadResult, run_load
from bench._process import free_port, running
from bench.models import forest

GOAL_THROUGHPUT = 4.0
LATENCY_ALLOWANCE_MS = forest.MAX_LATENCY_MS + 2
PAIRS = 4
ROUND_SECONDS = 3.0
MODELS = ("forest", "forest-batched")
BODY = json.dumps({"instances": [[6.1, 2.8, 4.7, 1.2]]}).encode()


def measure(port: int, model: str, clients: int, seconds: float) -> LoadResult:
    path = f"/v1/models/{model}:predict"
    return run_load("127.0.0.1", port, path, BODY, clients=clients, seconds=seconds)


def batch_totals(url: str) -> tuple[float, float]:
    """(instances, batches) dispatched so far for forest-batched, from /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    totals = {"sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name != "zeroserve_batch_size":
            continue
        for sample in family.samples:
            kind = sample.name.rsplit("_", 1)[-1]
            if sample.labels.get("model") == "forest-batched" and kind in totals:
                totals[kind] = sample.value
    return totals["sum"], totals["count"]


def compare(port: int, clients: int) -> tuple[dict[str, LoadResult], float]:
    """Alternate the two models in pairs of rounds; return totals and the median pair ratio."""
    results = {model: LoadResult() for model in MODELS}
    ratios = []
    for index in range(PAIRS):
        order = MODELS if index % 2 == 0 else MODELS[::-1]
        rates = {}
        for model in order:
            measured = measure(port, model, clients, ROUND_SECONDS)
            results[model].merge(measured)
            rates[model] = measured.requests_per_second
        ratios.append(rates["forest-batched"] / rates["forest"])
    return results, statistics.median(ratios)


def main() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        shutil.copy(Path(forest.__file__), folder / "forest.py")
        forest.train(folder)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [
            sys.executable,
            "-m",
            "zeroserve",
            "serve",
            str(folder / "forest.py"),
            "--direct",  # batching itself, in one process: no activator, no scale-out
            "--port",
            str(port),
            "--no-access-log",
        ]
        with running(command, f"{url}/v2/models/forest-batched/ready", folder / "serve.log"):
            for model in MODELS:
                measure(port, model, 8, 1.0)  # warm up
            before = batch_totals(url)
            loaded, throughput_ratio = compare(port, clients=64)
            after = batch_totals(url)
            single, _ = compare(port, clients=1)
    mean_batch = (after[0] - before[0]) / max(after[1] - before[1], 1)
    p50 = {model: single[model].percentile_ms(0.5) for model in MODELS}
    latency_added_ms = p50["forest-batched"] - p50["forest"]
    figures = {f"{model}_64_clients": loaded[model].summary() for model in MODELS} | {
        f"{model}_1_client": single[model].summary() for model in MODELS
    }
    for name, summary in figures.items():
        print(
            f"{name:28s} {summary['rps']:8.1f} req/s  p50 {summary['p50_ms']:7.2f} ms  "
            f"p99 {summary['p99_ms']:7.2f} ms  errors {summary['errors']}"
        )
    print(
        f"mean batch size at 64 clients: {mean_batch:.1f}; single-client p50 added by "
        f"batching: {latency_added_ms:.2f} ms (allowed {LATENCY_ALLOWANCE_MS} ms)"
    )
    met = throughput_ratio >= GOAL_THROUGHPUT and latency_added_ms <= LATENCY_ALLOWANCE_MS
    return {
        "bench": "batching",
        "ratio": round(throughput_ratio, 2),
        "goal": GOAL_THROUGHPUT,
        "met": met,
        "mean_batch_size": round(mean_batch, 1),
        "single_client_p50_added_ms": round(latency_added_ms, 2),
        "latency_allowance_ms": LATENCY_ALLOWANCE_MS,
        **figures,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
