"""First answer from zero for the iris sample, and what the activator costs on the warm path.

In one run, each measured ``TRIALS`` times (median reported):
(a) zeroserve with the fork server: a request to the model at zero, timed to its answer;
(b) zeroserve spawning a fresh worker (``--no-fork``), the same way;
(c) stock KServe: a fresh process starting ``kserve.ModelServer`` with the same model, timed from
    its launch to its first answered prediction;
(d) the floor: a fresh ``python -c`` that imports sklearn and loads the joblib file.
Then warm-path throughput through the activator and straight to its worker, in alternating
rounds (median of pair ratios, as the machine's speed drifts).
Goals: (a) <= 0.1 x (c); activator / direct >= 0.9.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench._load import LoadResult, alternating_rounds
from bench._process import free_port, running
from bench.overhead import BODY, prepare_model

GOAL = 0.1
WARM_GOAL = 0.9
TRIALS = 7
PAIRS = 10
ROUND_SECONDS = 1.5
CLIENTS = 32
PREDICT = "/v1/models/iris:predict"
IDLE_S = 0.5


def declare(folder: Path, declaration: str) -> None:
    """Rewrite the sample's iris declaration (the bench's copy) to ``declaration``."""
    model = folder / "model.py"
    old = '@predictor(name="iris", max_replicas=2, '
    text = model.read_text()
    assert old in text, "samples/iris/model.py changed: update bench/scale_from_zero.py"
    model.write_text(text.replace(old, f'@predictor(name="iris", {declaration}, '))


def state(url: str) -> dict[str, object]:
    return dict(httpx.get(f"{url}/zeroserve/status", timeout=10).json()["models"]["iris"])


def first_answers(folder: Path, *flags: str) -> list[float]:
    """Seconds from a request to the model at zero to its answer, TRIALS times."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "zeroserve", "serve", str(folder / "model.py:Iris")]
    command += ["--port", str(port), "--no-access-log", *flags]
    times = []
    with running(command, f"{url}/v2/health/ready", folder / f"serve{''.join(flags)}.log"):
        for _ in range(TRIALS):
            while state(url)["state"] != "zero":
                time.sleep(0.05)
            started = time.perf_counter()
            answer = httpx.post(url + PREDICT, content=BODY, timeout=120)
            times.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
    return times


def stock_kserve(folder: Path) -> list[float]:
    times = []
    for _ in range(TRIALS):
        port = free_port()
        started = time.perf_counter()
        command = [sys.executable, "-m", "bench._plain_kserve", str(folder), str(port)]
        with (folder / "kserve.log").open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                try:
                    answer = httpx.post(f"http://127.0.0.1:{port}{PREDICT}", content=BODY)
                    if answer.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None:
                    raise RuntimeError((folder / "kserve.log").read_text()[-3000:])
                time.sleep(0.01)
            times.append(time.perf_counter() - started)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return times


def floor(folder: Path) -> list[float]:
    code = f"import sklearn, joblib; joblib.load({str(folder / 'model.joblib')!r})"
    times = []
    for _ in range(TRIALS):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - started)
    return times


def warm_path(folder: Path) -> tuple[float, dict[str, LoadResult]]:
    """Throughput via the activator vs straight to the worker; median ratio of pairs."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "zeroserve", "serve", str(folder / "model.py:Iris")]
    command += ["--port", str(port), "--no-access-log"]
    with running(command, f"{url}/v2/health/ready", folder / "warm.log"):
        httpx.post(url + PREDICT, content=BODY, timeout=120)
        worker = state(url)["replicas"][0]["port"]  # type: ignore[index]
        ports = {"activator": port, "direct": worker}
        ratios, results = alternating_rounds(
            ports, PREDICT, BODY, clients=CLIENTS, pairs=PAIRS, seconds=ROUND_SECONDS
        )
    return statistics.median(ratios), results


def main() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        prepare_model(folder)
        kserve = stock_kserve(folder)
        floor_times = floor(folder)
        # one replica, so the activator and the direct path drive the same single worker
        declare(folder, "max_replicas=1")
        warm_ratio, warm = warm_path(folder)
        prepare_model(folder)
        declare(folder, f"max_replicas=1, scale_to_zero_after={IDLE_S}")
        forked = first_answers(folder)
        spawned = first_answers(folder, "--no-fork")
    medians = {
        "zeroserve_fork_s": statistics.median(forked),
        "zeroserve_spawn_s": statistics.median(spawned),
        "stock_kserve_s": statistics.median(kserve),
        "floor_s": statistics.median(floor_times),
    }
    for name, value in medians.items():
        print(f"{name:20s} {value:7.3f} s")
    for name, result in warm.items():
        print(f"warm via {name:10s} {result.requests_per_second:8.1f} req/s")
    ratio = medians["zeroserve_fork_s"] / medians["stock_kserve_s"]
    return {
        "bench": "scale_from_zero",
        "ratio": round(ratio, 3),
        "goal": GOAL,
        "met": ratio <= GOAL and warm_ratio >= WARM_GOAL,
        **{name: round(value, 3) for name, value in medians.items()},
        "spawn_over_kserve": round(medians["zeroserve_spawn_s"] / medians["stock_kserve_s"], 3),
        "warm_path_ratio": round(warm_ratio, 3),
        "warm_path_goal": WARM_GOAL,
        "warm": {name: result.summary() for name, result in warm.items()},
        "trials": TRIALS,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
