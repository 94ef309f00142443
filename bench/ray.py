"""zeroserve on Ray Serve against a hand-written Ray Serve deployment of the same iris model.

One Ray cluster (``ray start --head`` on this machine, 2 CPUs) runs both: the hand-written
deployment behind Ray Serve's HTTP proxy, and ``zeroserve serve --engine ray`` (its own front,
Ray Serve replicas behind). In alternating rounds:
(a) throughput at 32 clients, one replica each (pair ratios, median): goal zeroserve >= 0.95 x
    hand-written;
(b) a request to the model at zero, timed to its answer (median of TRIALS; both scale 0..1 with
    the same idle window): goal <= 0.5 x.
The hand-written deployment is measured twice for (a): with Ray's defaults (max_ongoing_requests
5, 1 CPU per replica) and tuned (max_ongoing_requests 32, no CPU reservation); the goal is
against the tuned one.
Run it where Ray is installed: ``tox -e ray --notest`` builds that env, then
``.tox/ray/bin/python -m bench ray``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import httpx

from bench._load import run_load
from bench._process import free_port, running
from bench.overhead import BODY, ROOT, prepare_model

THROUGHPUT_GOAL = 0.95
ZERO_GOAL = 0.5
CLIENTS = 32
PAIRS = 6
ROUND_SECONDS = 4.0
TRIALS = 5
IDLE_S = 2.0
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def ray_command() -> str:
    beside = Path(sys.executable).parent / "ray"  # this environment's
    return str(beside) if beside.exists() else shutil.which("ray") or "ray"


def ray_cluster(port: int, temp: Path) -> None:
    command = [ray_command(), "start", "--head", f"--port={port}"]
    command += ["--num-cpus=2", "--node-ip-address=127.0.0.1", "--include-dashboard=false"]
    command += [f"--temp-dir={temp}", "--disable-usage-stats"]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, **ENV})


def declare_for_ray(folder: Path, declaration: str) -> None:
    """The sample's iris with ``declaration`` for its scaling."""
    model = folder / "model.py"
    text = (ROOT / "samples" / "iris" / "model.py").read_text()
    old = '@predictor(name="iris", max_replicas=2, '
    assert old in text, "samples/iris/model.py changed: update bench/ray.py"
    model.write_text(text.replace(old, f'@predictor(name="iris", {declaration}, '))


def at_zero(application: str, timeout: float = 120) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = serve.status().applications.get(application)
        states = [d.replica_states for d in found.deployments.values()] if found else [{}]
        if all(not state for state in states):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{application} did not scale to zero in {timeout}s")


def first_answer(url: str, application: str) -> float:
    at_zero(application)
    began = time.monotonic()
    answer = httpx.post(
        url, content=BODY, headers={"content-type": "application/json"}, timeout=120
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [0]}, answer.text
    return time.monotonic() - began


def zero_rounds(urls: dict[str, str], status_url: str) -> tuple[dict[str, list[float]], Any]:
    """The first-answer times of each, and zeroserve's last cold start (read at once, before
    its replica scales in again)."""
    times: dict[str, list[float]] = {name: [] for name in urls}
    last = None
    for trial in range(TRIALS):
        order = list(urls) if trial % 2 == 0 else list(reversed(urls))
        for name in order:
            times[name].append(first_answer(urls[name], "iris" if name == "zeroserve" else name))
            if name == "zeroserve":
                models = httpx.get(status_url, timeout=10).json()["models"]
                last = models["iris"]["last_cold_start"]
    return times, last


def throughput(ports: dict[str, int], paths: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """Pairs of rounds, alternating; the paths differ, so each port gets its own request."""
    ratios: list[float] = []
    results: dict[str, list[float]] = {name: [] for name in ports}
    for name in ports:  # warm-up: both scaled out
        run_load("127.0.0.1", ports[name], paths[name], BODY, clients=CLIENTS, seconds=3.0)
    for index in range(PAIRS):
        order = list(ports) if index % 2 == 0 else list(reversed(ports))
        rates = {}
        for name in order:
            measured = run_load(
                "127.0.0.1", ports[name], paths[name], BODY, clients=CLIENTS, seconds=ROUND_SECONDS
            )
            assert not measured.errors, f"{name}: {measured.errors} errors"
            rates[name] = measured.requests_per_second
            results[name].append(rates[name])
        first, second = ports
        ratios.append(rates[first] / rates[second])
    return statistics.median(ratios), {
        n: round(statistics.median(r), 1) for n, r in results.items()
    }


def front(folder: Path, ray_port: int, port: int) -> list[str]:
    command = [sys.executable, "-m", "zeroserve", "serve", str(folder / "model.py:Iris")]
    command += ["--engine", "ray", "--address", f"127.0.0.1:{ray_port}", "--port", str(port)]
    return [*command, "--no-access-log"]


def measure(folder: Path, ray_port: int) -> dict[str, Any]:
    """(b) from zero, both scaling 0..1 with the same idle window; then (a) at one replica each
    (a replica always up, so a round never meets a scale-in of the last)."""
    import ray

    from bench import _ray_handwritten

    os.environ.update(ENV)
    ray.init(address=f"127.0.0.1:{ray_port}", logging_level="ERROR", log_to_driver=False)
    from ray import serve

    proxy_port, port = free_port(), free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": proxy_port})
    env = {**os.environ, **ENV, "ZEROSERVE_CACHE__ROOT": str(folder.parent / "cache")}
    ready = f"http://127.0.0.1:{port}/v2/models/iris/ready"
    log = folder.parent / "front.log"
    ports = {"zeroserve": port, "handwritten": proxy_port}
    paths = {"zeroserve": "/v1/models/iris:predict", "handwritten": "/handwritten"}
    urls = {name: f"http://127.0.0.1:{ports[name]}{paths[name]}" for name in ports}
    declare_for_ray(folder, f"max_replicas=1, scale_to_zero_after={IDLE_S}")
    _ray_handwritten.deploy(folder, IDLE_S)  # Ray's defaults but the scaling
    with running(front(folder, ray_port, port), ready, log, timeout=180, env=env):
        zero, last = zero_rounds(urls, f"http://127.0.0.1:{port}/zeroserve/status")
    phases = {
        phase["name"]: round(phase["end_s"] - phase["start_s"], 3)
        for phase in last["worker_timeline"]["phases"]
    }
    # seconds from the replica process's start, as the replica's timeline counts them
    phases["replica_process_to_imports_s"] = last["worker_timeline"]["phases"][0]["start_s"]
    declare_for_ray(folder, "min_replicas=1, max_replicas=1")
    _ray_handwritten.deploy(folder, None)
    with running(front(folder, ray_port, port), ready, log, timeout=180, env=env):
        defaults_ratio, defaults_rps = throughput(ports, paths)
        tuned = {"max_ongoing_requests": 32, "ray_actor_options": {"num_cpus": 0}}
        _ray_handwritten.deploy(folder, None, **tuned)
        ratio, rps = throughput(ports, paths)
    serve.delete("handwritten")
    zero_median = {name: round(statistics.median(t), 3) for name, t in zero.items()}
    return {
        "ratio": round(ratio, 3),
        "rps": rps,
        "rps_vs_ray_defaults": defaults_rps,
        "ratio_vs_ray_defaults": round(defaults_ratio, 3),
        "zero_to_answer_s": zero_median,
        "zero_to_answer_all_s": {n: [round(x, 3) for x in t] for n, t in zero.items()},
        "zero_ratio": round(zero_median["zeroserve"] / zero_median["handwritten"], 3),
        "zeroserve_last_cold_start": {"ready_s": last["ready_s"], "phases_s": phases},
    }


def main() -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="zs-bench-ray-", dir="/tmp"))
    ray_port = free_port()
    try:
        model = scratch / "iris"  # shipped to the replicas: nothing else in it
        model.mkdir()
        prepare_model(model)
        ray_cluster(ray_port, scratch / "ray")
        figures = measure(model, ray_port)
    except BaseException:
        traceback.print_exc()  # before `ray stop`, which ends a connected driver at once
        front_log = scratch / "front.log"
        if front_log.exists():
            print(front_log.read_text()[-4000:], file=sys.stderr)
        raise
    finally:
        import ray

        ray.shutdown()
        subprocess.run([ray_command(), "stop", "--force"], capture_output=True, timeout=60)
        shutil.rmtree(scratch, ignore_errors=True)
    met = figures["ratio"] >= THROUGHPUT_GOAL and figures["zero_ratio"] <= ZERO_GOAL
    return {
        "bench": "ray",
        "ratio": figures["ratio"],
        "goal": THROUGHPUT_GOAL,
        "met": met,
        "zero_goal": ZERO_GOAL,
        "clients": CLIENTS,
        **figures,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
