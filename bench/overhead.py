"""What zeroserve's layer costs: iris v1 predict under 32 concurrent clients.

Both servers run the same scikit-learn model on the real kserve.ModelServer with KServe's default
logging: (1) the iris sample under `zeroserve serve`; (2) a plain hand-written kserve.Model. They
are measured in short back-to-back pairs of rounds (A B, B A, ...) in one run. The machine is shared
and its speed drifts by 2x within a minute, so the ratio is the median over pairs of the two
throughputs measured seconds apart, not a ratio of totals. The server's own CPU time per request
(from /proc) is printed beside the throughput.
Goal: zeroserve / plain KServe >= 0.95 in requests per second.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._load import LoadResult, run_load
from bench._process import free_port, running

ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.95
CLIENTS = 32
PAIRS = 16
ROUND_SECONDS = 1.5
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


def pairs(names: list[str]) -> list[list[str]]:
    """[A, B], [B, A], ...: each server goes first as often as the other."""
    return [names if index % 2 == 0 else names[::-1] for index in range(PAIRS)]


def main() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        prepare_model(folder)
        ours, plain = free_port(), free_port()
        zeroserve_cmd = [
            sys.executable,
            "-m",
            "zeroserve",
            "serve",
            str(folder / "model.py"),
            "--direct",  # the layer over KServe; the activator's cost is bench.scale_from_zero's
            "--port",
            str(ours),
        ]
        kserve_cmd = [sys.executable, "-m", "bench._plain_kserve", str(folder), str(plain)]
        results = {"zeroserve": LoadResult(), "kserve": LoadResult()}
        ports = {"zeroserve": ours, "kserve": plain}
        ready = "http://127.0.0.1:{}/v2/models/iris/ready"
        cpu = {name: 0.0 for name in results}
        with (
            running(zeroserve_cmd, ready.format(ours), folder / "zeroserve.log") as ours_process,
            running(kserve_cmd, ready.format(plain), folder / "kserve.log") as plain_process,
        ):
            pids = {"zeroserve": ours_process.pid, "kserve": plain_process.pid}
            for name in results:
                measure(ports[name], WARMUP_SECONDS)
            pair_ratios = []
            for pair in pairs(list(results)):
                rates = {}
                for name in pair:
                    before = cpu_seconds(pids[name])
                    measured = measure(ports[name], ROUND_SECONDS)
                    cpu[name] += cpu_seconds(pids[name]) - before
                    results[name].merge(measured)
                    rates[name] = measured.requests_per_second
                pair_ratios.append(rates["zeroserve"] / rates["kserve"])
    ratio = statistics.median(pair_ratios)
    figures = {name: result.summary() for name, result in results.items()}
    for name, summary in figures.items():
        summary["server_cpu_ms_per_request"] = round(1000 * cpu[name] / summary["requests"], 3)
        print(
            f"{name:10s} {summary['rps']:8.1f} req/s  p50 {summary['p50_ms']:6.2f} ms  "
            f"p99 {summary['p99_ms']:6.2f} ms  server CPU "
            f"{summary['server_cpu_ms_per_request']:.3f} ms/req  errors {summary['errors']}"
        )
    return {
        "bench": "overhead",
        "ratio": round(ratio, 3),
        "goal": GOAL,
        "met": ratio >= GOAL,
        "clients": CLIENTS,
        "pair_ratio_range": [round(min(pair_ratios), 3), round(max(pair_ratios), 3)],
        **figures,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
