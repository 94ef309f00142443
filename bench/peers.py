"""zeroserve's warm path against its peers: the same iris model and request on every server.

Seven servers, each with one worker and no batching, answer one iris flower:

- ``zeroserve``: ``zeroserve serve model.py`` (the activator and one worker), v1 route;
- ``direct``: ``zeroserve serve model.py --direct`` (one process, KServe's ModelServer), v1;
- ``kserve``: a hand-written ``kserve.Model`` (``bench._plain_kserve``), v1;
- ``mlserver``: MLServer's scikit-learn runtime, tuned (no debug, no parallel workers), v2;
- ``litserve``: a LitAPI (``bench._peer_litserve``), its own JSON;
- ``bentoml``: a BentoML service (``bench._peer_bentoml``), its own JSON;
- ``rayserve``: a Ray Serve deployment behind Ray's proxy (``bench._peer_rayserve``).

The peers run from environments of their own (``hack/peer-envs.sh`` builds them on first use;
Ray Serve from the ray tox env, ``tox -e ray --notest``), so their pins never meet KServe's; a
missing one is named in the line, which then cannot say ``met``. In each round every server is
loaded once, the order rotating: wrk at 32 connections (req/s, p50, p99), then at 1 connection
(p50); the activator, ``--direct``, kserve and MLServer run as two copies each, their figures
the copies' mean.
Figures are medians over rounds; a ratio is the median of the rounds' own ratios, each
against the best peer of that round (this machine's speed drifts by 2x within minutes); the
single-connection ratio's rounds are in the line too (``single_connection_rounds``).
``zeroserve-v2`` asks the activator on v2, as MLServer is asked; ``zeroserve-logged`` is the
activator with ``--access-log`` (zeroserve logs no line per request by default; the peers run with
their own default logging, LitServe at log level warning).
Goals, against the fastest peer (kserve, mlserver, litserve, bentoml, rayserve) by throughput:
the activator >= 1.2x its req/s at a p99 no worse, ``--direct`` >= 1.5x, and the activator's p50
at one connection <= 0.8x the lowest peer p50 at one connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from bench._process import free_port, running
from bench._wrk import Measured, generator, measure
from bench.overhead import ROOT, prepare_model

ROUNDS = int(os.environ.get("BENCH_PEERS_ROUNDS", "6"))
SECONDS = 3
SINGLE_SECONDS = 2
CLIENTS = 32
GOAL = 1.2
DIRECT_GOAL = 1.5
SINGLE_GOAL = 0.8
FLOWER = [5.1, 3.5, 1.4, 0.2]
V1 = json.dumps({"instances": [FLOWER]}).encode()
V2 = json.dumps(
    {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": FLOWER}]}
).encode()
PEERS = ("kserve", "mlserver", "litserve", "bentoml", "rayserve")
TWICE = ("zeroserve", "direct", "kserve", "mlserver")  # the goals' arms: two copies each
ENVS = ROOT / ".bench-envs"
PEER_PYTHON = {
    "mlserver": ENVS / "mlserver" / "bin" / "python",
    "litserve": ENVS / "litserve" / "bin" / "python",
    "bentoml": ENVS / "bentoml" / "bin" / "python",
    "rayserve": ROOT / ".tox" / "ray" / "bin" / "python",
}
HOW_TO_BUILD = {
    "mlserver": "hack/peer-envs.sh",
    "litserve": "hack/peer-envs.sh",
    "bentoml": "hack/peer-envs.sh",
    "rayserve": "tox -e ray --notest",
}


def routes() -> dict[str, tuple[str, bytes]]:
    """Each arm's path and body: the same flower, in each server's own protocol."""
    v1 = ("/v1/models/iris:predict", V1)
    return {
        "zeroserve": v1,
        "zeroserve-logged": v1,
        "zeroserve-v2": ("/v2/models/iris/infer", V2),
        "direct": v1,
        "kserve": v1,
        "mlserver": ("/v2/models/iris/infer", V2),
        "litserve": ("/predict", V1),
        "bentoml": ("/predict", V1),
        "rayserve": ("/iris", V1),
    }


def mlserver_settings(folder: Path, port: int) -> Path:
    """MLServer's settings and the model's, tuned as its docs advise for speed."""
    served = folder / f"mlserver-{port}"
    (served / "iris").mkdir(parents=True)
    shutil.copy(folder / "model.joblib", served / "iris" / "model.joblib")
    settings = {"parallel_workers": 0, "debug": False, "http_port": port}
    settings |= {"grpc_port": free_port(), "metrics_port": free_port()}
    (served / "settings.json").write_text(json.dumps(settings))
    model = {"name": "iris", "implementation": "mlserver_sklearn.SKLearnModel"}
    model["parameters"] = {"uri": "./model.joblib"}  # type: ignore[assignment]
    (served / "iris" / "model-settings.json").write_text(json.dumps(model))
    return served


def command(arm: str, folder: Path, port: int) -> list[str]:
    zeroserve = [sys.executable, "-m", "zeroserve", "serve", str(folder / "model.py")]
    if arm == "zeroserve":
        return [*zeroserve, "--port", str(port)]
    if arm == "zeroserve-logged":
        return [*zeroserve, "--port", str(port), "--access-log"]
    if arm == "direct":
        return [*zeroserve, "--direct", "--port", str(port)]
    if arm == "kserve":
        return [sys.executable, "-m", "bench._plain_kserve", str(folder), str(port)]
    python = str(PEER_PYTHON[arm])
    if arm == "mlserver":
        mlserver = str(PEER_PYTHON[arm].parent / "mlserver")
        return [mlserver, "start", str(mlserver_settings(folder, port))]
    if arm == "bentoml":
        bentoml = str(PEER_PYTHON[arm].parent / "bentoml")
        target = ["bench._peer_bentoml:Iris", "--working-dir", str(ROOT)]
        return [bentoml, "serve", *target, "--host", "127.0.0.1", "--port", str(port)]
    return [python, "-m", f"bench._peer_{arm}", str(folder), str(port)]


class Answers:
    """Ready once the real request is answered 200 (the activator starts its worker on it)."""

    def __init__(self, port: int, path: str, body: bytes) -> None:
        self.url, self.body = f"http://127.0.0.1:{port}{path}", body

    def __call__(self) -> bool:
        headers = {"content-type": "application/json"}
        answer = httpx.post(self.url, content=self.body, headers=headers, timeout=60)
        return answer.status_code == 200

    def __repr__(self) -> str:
        return f"POST {self.url}"


def one_worker(model_file: Path) -> None:
    """The iris sample, held to one replica as every peer is held to one worker."""
    code = model_file.read_text()
    assert "max_replicas=2" in code, "the iris sample's scaling changed: update bench.peers"
    model_file.write_text(code.replace("max_replicas=2", "max_replicas=1"))


def missing_peers() -> dict[str, str]:
    return {
        arm: f"{PEER_PYTHON[arm]} is missing: run {HOW_TO_BUILD[arm]}"
        for arm in PEER_PYTHON
        if not PEER_PYTHON[arm].exists()
    }


def start(stack: contextlib.ExitStack, folder: Path, arms: list[str]) -> dict[str, list[int]]:
    """Every arm's server, and a second copy of each arm in a goal (zeroserve's, and the two
    peers that are the fastest or quickest here: kserve and MLServer) started last, in mirrored
    order: where a process lands on the two cores moves its single-connection latency by more
    than 10% from one start to the next, on both sides of a ratio, so each of those figures is
    the mean of two."""
    ports: dict[str, list[int]] = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IRIS_MODEL_DIR": str(folder)}
    env |= {"RAY_USAGE_STATS_ENABLED": "0", "BENTOML_DO_NOT_TRACK": "true"}
    twice = [(1, arm) for arm in reversed(TWICE) if arm in arms]
    for copy, arm in [(0, arm) for arm in arms] + twice:
        port = free_port()
        ports.setdefault(arm, []).append(port)
        path, body = routes()[arm]
        log = folder / f"{arm}-{copy}.log"
        stack.enter_context(
            running(command(arm, folder, port), Answers(port, path, body), log, 240, env)
        )
    ports["zeroserve-v2"] = ports["zeroserve"]
    return ports


def mean(runs: list[Measured]) -> Measured:
    return Measured(
        rps=statistics.fmean(run.rps for run in runs),
        p50_ms=statistics.fmean(run.p50_ms for run in runs),
        p99_ms=statistics.fmean(run.p99_ms for run in runs),
        errors=sum(run.errors for run in runs),
    )


def rounds(ports: dict[str, list[int]]) -> dict[str, list[tuple[Measured, Measured]]]:
    """Each arm once per round, the order rotating; a warm-up round first, not counted. A round
    loads every arm at 32 connections, then every arm at one, in the same order: the figures a
    ratio compares are then taken within seconds of each other (this machine's speed drifts
    within minutes), and no single-connection figure follows its own server's load at 32."""
    names = list(ports)

    def load(arm: str, clients: int, seconds: float) -> Measured:
        path, body = routes()[arm]
        return mean([measure(port, path, body, clients, seconds) for port in ports[arm]])

    for arm in names:
        load(arm, CLIENTS, SECONDS)
        load(arm, 1, SINGLE_SECONDS)
    measured: dict[str, list[tuple[Measured, Measured]]] = {arm: [] for arm in names}
    for index in range(ROUNDS):
        order = names[index % len(names) :] + names[: index % len(names)]
        many = {arm: load(arm, CLIENTS, SECONDS) for arm in order}
        for arm in order:
            measured[arm].append((many[arm], load(arm, 1, SINGLE_SECONDS)))
            print(f"round {index + 1} {arm:13s} {measured[arm][-1]}", flush=True)
    return measured


def figures(runs: list[tuple[Measured, Measured]]) -> dict[str, float]:
    return {
        "rps": round(statistics.median(many.rps for many, _ in runs), 1),
        "p50_ms": round(statistics.median(many.p50_ms for many, _ in runs), 2),
        "p99_ms": round(statistics.median(many.p99_ms for many, _ in runs), 2),
        "p50_1conn_ms": round(statistics.median(one.p50_ms for _, one in runs), 3),
        "errors": sum(many.errors + one.errors for many, one in runs),
    }


def analysis(measured: dict[str, list[tuple[Measured, Measured]]]) -> dict[str, object]:
    table = {arm: figures(runs) for arm, runs in measured.items()}
    peers = [arm for arm in PEERS if arm in table]
    fastest = max(peers, key=lambda arm: table[arm]["rps"])
    quickest = min(peers, key=lambda arm: table[arm]["p50_1conn_ms"])

    def ratio(arm: str) -> float:
        per_round = [
            ours[0].rps / max(measured[peer][index][0].rps for peer in peers)
            for index, ours in enumerate(measured[arm])
        ]
        return round(statistics.median(per_round), 3)

    def single_rounds(arm: str) -> list[float]:
        return [
            ours[1].p50_ms / min(measured[peer][index][1].p50_ms for peer in peers)
            for index, ours in enumerate(measured[arm])
        ]

    def single_ratio(arm: str) -> float:
        return round(statistics.median(single_rounds(arm)), 3)

    single = single_ratio("zeroserve")
    activator, direct = ratio("zeroserve"), ratio("direct")
    p99_ok = table["zeroserve"]["p99_ms"] <= table[fastest]["p99_ms"]
    for arm, row in table.items():
        print(
            f"{arm:13s} {row['rps']:8.1f} req/s  p50 {row['p50_ms']:7.2f} ms  "
            f"p99 {row['p99_ms']:7.2f} ms  p50 at 1 conn. {row['p50_1conn_ms']:6.3f} ms"
        )
    return {
        "bench": "peers",
        "ratio": activator,
        "goal": GOAL,
        "met": activator >= GOAL and p99_ok and direct >= DIRECT_GOAL and single <= SINGLE_GOAL,
        "fastest_peer": fastest,
        "p99_not_worse": p99_ok,
        "direct_ratio": direct,
        "direct_goal": DIRECT_GOAL,
        "single_connection_ratio": single,
        "single_connection_goal": SINGLE_GOAL,
        "single_connection_rounds": [round(each, 3) for each in single_rounds("zeroserve")],
        "direct_single_connection_ratio": single_ratio("direct"),
        "quickest_peer_at_1conn": quickest,
        "load_generator": generator(),
        "rounds": ROUNDS,
        **table,
    }


def main() -> dict[str, object]:
    subprocess.run(["bash", str(ROOT / "hack" / "peer-envs.sh")], check=True)  # quick once built
    missing = missing_peers()
    for reason in missing.values():
        print(f"skipped: {reason}", file=sys.stderr)
    arms = ["zeroserve", "direct", "zeroserve-logged"]
    arms += [arm for arm in PEERS if arm not in missing]
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        folder = Path(scratch)
        prepare_model(folder)
        one_worker(folder / "model.py")
        ports = start(stack, folder, arms)
        result = analysis(rounds(ports))
    if missing:
        result |= {"met": False, "missing_peers": sorted(missing)}
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
