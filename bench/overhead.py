"""What zeroserve's layer costs: iris v1 predict under 32 concurrent clients.

Three servers run the same scikit-learn model on the real kserve.ModelServer with KServe's default
logging: (1) the iris sample under `zeroserve serve --direct`; (2) a plain hand-written
kserve.Model; (3) (1) with tracing configured: the OpenTelemetry SDK sampling 10% of traces (head
sampling, parentbased_traceidratio; BENCH_TRACE_SAMPLE_RATIO=1 for all) and exporting their spans
over OTLP/HTTP to a collector in this process, switched on and off at run time by signals
(bench._toggled_tracing), so that tracing's cost is measured within the same processes.
zeroserve's metrics are on in (1) and (3) alike, as they always are. Each server runs as two
processes, started in mirrored order (where a process lands moves its speed by ~5% here, more
than what is measured), and is measured in short back-to-back rounds, each arm going first in
turn. The machine is shared and its speed drifts by 2x within a minute, so each ratio is the
median over rounds of throughputs measured seconds apart, not a ratio of totals.
The server's own CPU time per request (from /proc) is printed beside the throughput.
Goals: zeroserve / plain KServe >= 0.95 and tracing on / off >= 0.95 in requests per second.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench._load import LoadResult, run_load
from bench._process import free_port, running

ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.95
CLIENTS = 32
ROUNDS = 12
TRACING_GOAL = 0.95
SAMPLE_RATIO = "0.1"
ROUND_SECONDS = 1.0
WARMUP_SECONDS = 2.0
BODY = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()


def prepare_model(folder: Path) -> None:
    shutil.copy(ROOT / "samples" / "iris" / "model.py", folder / "model.py")
    train = [
        sys.executable,
        str(ROOT / "samples" / "iris" / "train.py"),
        str(folder / "model.joblib"),
    ]
    subprocess.run(train, check=True, stdout=subprocess.DEVNULL)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(port: int, seconds: float) -> LoadResult:
    path = "/v1/models/iris:predict"
    return run_load("127.0.0.1", port, path, BODY, clients=CLIENTS, seconds=seconds)


def orders(names: list[str]) -> list[list[str]]:
    """Each round measures every server once, each going first as often as the others."""
    return [names[i % len(names) :] + names[: i % len(names)] for i in range(ROUNDS)]


class _Sink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that accepts every export and keeps nothing."""

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


def commands(folder: Path, port: int) -> dict[str, list[str]]:
    serve = [str(folder / "model.py"), "--direct", "--port", str(port)]
    # --direct: the layer over KServe; the activator's cost is bench.scale_from_zero's
    return {
        "zeroserve": [sys.executable, "-m", "zeroserve", "serve", *serve],
        "traced": [sys.executable, "-m", "bench._toggled_tracing", "serve", *serve],
        "kserve": [sys.executable, "-m", "bench._plain_kserve", str(folder), str(port)],
    }


def tracing_env(collector_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector_port}",
        "OTEL_SERVICE_NAME": "bench-overhead",
        # head sampling, as tracing runs in production; BENCH_TRACE_SAMPLE_RATIO=1 traces all
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": os.environ.get("BENCH_TRACE_SAMPLE_RATIO", SAMPLE_RATIO),
    }


# the arms measured each round, and the server process each runs on
ARMS = {
    "zeroserve": "zeroserve",
    "kserve": "kserve",
    "tracing_on": "traced",
    "tracing_off": "traced",
}
SWITCH = {"tracing_on": signal.SIGUSR1, "tracing_off": signal.SIGUSR2}


def start_servers(
    stack: contextlib.ExitStack, folder: Path, collector_port: int
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """Two processes per server, started in mirrored order; their ports and pids."""
    ready = "http://127.0.0.1:{}/v2/models/iris/ready"
    ports: dict[tuple[str, int], int] = {}
    pids: dict[tuple[str, int], int] = {}
    servers = ["zeroserve", "kserve", "traced"]
    for copy in (0, 1):
        for name in servers if copy == 0 else servers[::-1]:
            port = free_port()
            env = tracing_env(collector_port) if name == "traced" else None
            log = folder / f"{name}-{copy}.log"
            command = commands(folder, port)[name]
            process = stack.enter_context(running(command, ready.format(port), log, env=env))
            ports[(name, copy)], pids[(name, copy)] = port, process.pid
    return ports, pids


def main() -> dict[str, object]:
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    arms = list(ARMS)
    results = {arm: LoadResult() for arm in arms}
    cpu = {arm: 0.0 for arm in arms}
    ratios: dict[str, list[float]] = {"zeroserve": [], "tracing": []}
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        folder = Path(scratch)
        prepare_model(folder)
        ports, pids = start_servers(stack, folder, sink.server_address[1])
        for key in ports:
            measure(ports[key], WARMUP_SECONDS)
        for index, order in enumerate(orders(arms)):
            rates = {}
            for arm in order:
                copies = (0, 1) if index % 2 == 0 else (1, 0)
                keys = [(ARMS[arm], copy) for copy in copies]
                if arm in SWITCH:
                    for key in keys:
                        os.kill(pids[key], SWITCH[arm])
                measured_rates = []
                for key in keys:
                    before = cpu_seconds(pids[key])
                    measured = measure(ports[key], ROUND_SECONDS)
                    cpu[arm] += cpu_seconds(pids[key]) - before
                    results[arm].merge(measured)
                    measured_rates.append(measured.requests_per_second)
                rates[arm] = statistics.fmean(measured_rates)
            ratios["zeroserve"].append(rates["zeroserve"] / rates["kserve"])
            ratios["tracing"].append(rates["tracing_on"] / rates["tracing_off"])
        offloaded = offloaded_processes(folder)
    sink.shutdown()
    return {**report(results, cpu, ratios), "predict_offloaded_processes": offloaded}


def offloaded_processes(folder: Path) -> int:
    """zeroserve processes whose predict() moved to a thread (a slower path) during the run."""
    logs = [folder / f"{name}-{copy}.log" for name in ("zeroserve", "traced") for copy in (0, 1)]
    return sum("later calls run in a thread" in log.read_text() for log in logs)


def spread(values: list[float]) -> list[float]:
    return [round(min(values), 3), round(max(values), 3)]


def report(
    results: dict[str, LoadResult], cpu: dict[str, float], ratios: dict[str, list[float]]
) -> dict[str, object]:
    ratio = statistics.median(ratios["zeroserve"])
    tracing_ratio = statistics.median(ratios["tracing"])
    figures = {name: result.summary() for name, result in results.items()}
    for name, summary in figures.items():
        summary["server_cpu_ms_per_request"] = round(1000 * cpu[name] / summary["requests"], 3)
        print(
            f"{name:12s} {summary['rps']:8.1f} req/s  p50 {summary['p50_ms']:6.2f} ms  "
            f"p99 {summary['p99_ms']:6.2f} ms  server CPU "
            f"{summary['server_cpu_ms_per_request']:.3f} ms/req  errors {summary['errors']}"
        )
    return {
        "bench": "overhead",
        "ratio": round(ratio, 3),
        "goal": GOAL,
        "met": ratio >= GOAL and tracing_ratio >= TRACING_GOAL,
        "clients": CLIENTS,
        "pair_ratio_range": spread(ratios["zeroserve"]),
        "tracing_ratio": round(tracing_ratio, 3),
        "tracing_ratio_range": spread(ratios["tracing"]),
        "tracing_goal": TRACING_GOAL,
        "trace_sample_ratio": float(os.environ.get("BENCH_TRACE_SAMPLE_RATIO", SAMPLE_RATIO)),
        **figures,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
