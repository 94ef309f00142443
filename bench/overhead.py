"""What zeroserve's layer costs: iris v1 predict under 32 concurrent clients.

Both servers run the same scikit-learn model on the real kserve.ModelServer with KServe's default
logging: (1) the iris sample under `zeroserve serve`; (2) a plain hand-written kserve.Model. They
are measured in alternating rounds in one run (A B B A ...), so drift on a shared machine hits both
alike. The server's own CPU time per request (from /proc) is printed beside the throughput: it does
not depend on how much CPU the load generator takes from the same 2 cores.
Goal: zeroserve / plain KServe >= 0.95 in requests per second.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._load import LoadResult, run_load
from bench._process import free_port, running

ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.95
CLIENTS = 32
ROUNDS = 8
ROUND_SECONDS = 3.0
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


def rounds(names: list[str]) -> list[str]:
    """A B B A A B B A ...: each server goes first as often as the other."""
    order: list[str] = []
    for index in range(ROUNDS):
        order += names if index % 2 == 0 else names[::-1]
    return order


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
            for name in rounds(list(results)):
                before = cpu_seconds(pids[name])
                results[name].merge(measure(ports[name], ROUND_SECONDS))
                cpu[name] += cpu_seconds(pids[name]) - before
    ratio = results["zeroserve"].requests_per_second / results["kserve"].requests_per_second
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
        **figures,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
