"""`zeroserve rollout --local --analyze` on a real activator: a candidate with 5% errors and one
10x slower are rolled back within one interval, a good one is promoted, each decision recorded."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    FIXTURES,
    InBackground,
    RunningServer,
    run_zeroserve,
    start_server,
    wait_ready,
)

pytestmark = pytest.mark.timeout(300)
# A verdict needs 20 candidate answers, so the flaky version (one failure in every 20 calls) has
# failed in any interval that is judged; 4 s gives a loaded machine time to send them at 10%.
INTERVAL_S = "4"
MIN_REQUESTS = "20"
SPLITS = ("good=echo-v1:100,echo-same:0", "flaky=echo-v1:100,echo-flaky:0",
          "slow=echo-v1:100,echo-slow:0")  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    flags = [part for split in SPLITS for part in ("--split", split)]
    log = tmp_path_factory.mktemp("log") / "rollout.log"
    running = start_server(FIXTURES / "versions" / "echo.py", log, *flags)
    for model in ("echo-v1", "echo-same", "echo-flaky", "echo-slow"):
        wait_ready(running, model)
    yield running
    running.stop()


class Load(InBackground):
    """One client sending requests for ``name`` back to back (no side queues: the latencies
    compared are the versions' own) until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stopped.is_set():
                client.post(self.url, json={"instances": [1.0]})


def rollout(server: RunningServer, name: str, history: Path) -> tuple[int, str, list[dict]]:
    """Roll ``name``'s candidate out under load; exit code, output, the local records."""
    env = {**os.environ, "ZEROSERVE_HISTORY": str(history)}
    with Load(f"{server.url}/v1/models/{name}:predict"):
        result = run_zeroserve(
            "rollout", name, "--local", "--url", server.url, "--analyze", "--steps", "10,50",
            "--interval", INTERVAL_S, "--min-requests", MIN_REQUESTS, env=env, timeout=240,
        )  # fmt: skip
    records = [json.loads(line) for line in history.read_text().splitlines()]
    return result.returncode, result.stdout + result.stderr, records


def weights(server: RunningServer, name: str) -> dict[str, int]:
    found = httpx.get(f"{server.url}/zeroserve/splits/{name}", timeout=10).json()
    return {label: version["weight"] for label, version in found["versions"].items()}


@pytest.mark.parametrize(
    ("name", "reason", "judged"),
    [  # 5% errors: the success rate; 10x slower: the Mann-Whitney U test and the effect size
        ("flaky", "success rate", {"success_rate": (0, 0.99)}),
        ("slow", "slower than the baseline", {"mann_whitney_p": (0, 0.05),
                                              "median_latency_ratio": (1.5, 100)}),
    ],
)  # fmt: skip
def test_a_bad_candidate_is_rolled_back_at_its_first_interval(
    server: RunningServer,
    tmp_path: Path,
    name: str,
    reason: str,
    judged: dict[str, tuple[float, float]],
) -> None:
    code, output, records = rollout(server, name, tmp_path / "history.jsonl")
    assert code == 8, output
    assert f"rolled back to echo-v1 at 10%: {reason}" in output
    assert output.count("at 10%: fail") == 1  # judged once: rolled back within one interval
    assert weights(server, name) == {"echo-v1": 100, f"echo-{name}": 0}
    assert [r["action"] for r in records] == ["rollout", "rollback"]
    figures = records[-1]["analysis"][0]
    for figure, (low, high) in judged.items():
        assert low < figures[figure] < high, figures
    assert reason in records[-1]["reasons"][0]


def test_a_good_candidate_is_promoted_step_by_step(server: RunningServer, tmp_path: Path) -> None:
    code, output, records = rollout(server, "good", tmp_path / "history.jsonl")
    assert code == 0, output
    assert "echo-same promoted" in output
    assert weights(server, "good") == {"echo-v1": 0, "echo-same": 100}
    assert [(r["action"], r["canary"]) for r in records] == [
        ("rollout", 10),
        ("rollout", 50),
        ("promote", 100),
    ]
    passed = records[-1]["analysis"]
    assert [judged["verdict"] for judged in passed] == ["pass", "pass"]
    shown = run_zeroserve("history", "good", "--local", env={
        **os.environ, "ZEROSERVE_HISTORY": str(tmp_path / "history.jsonl")
    })  # fmt: skip
    assert shown.returncode == 0
    assert "promote" in shown.stdout


def test_no_server_and_bad_steps_are_one_line_each(tmp_path: Path) -> None:
    nothing = run_zeroserve(
        "rollout", "iris", "--local", "--url", "http://127.0.0.1:9", "--analyze"
    )
    assert nothing.returncode == 2
    assert "cannot reach `zeroserve serve` at http://127.0.0.1:9" in nothing.stderr
    steps = run_zeroserve("rollout", "iris", "--local", "--analyze", "--steps", "50,10")
    assert steps.returncode == 2
    assert "rising percents" in steps.stderr
    cluster = run_zeroserve("rollout", "iris", "--analyze")
    assert cluster.returncode == 2
    assert "give --prometheus URL" in cluster.stderr
    for result in (nothing, steps, cluster):
        assert "Traceback" not in result.stderr


def test_a_local_split_is_moved_by_hand(server: RunningServer, tmp_path: Path) -> None:
    env = {**os.environ, "ZEROSERVE_HISTORY": str(tmp_path / "history.jsonl")}
    moved = run_zeroserve("rollout", "flaky", "--local", "--url", server.url, "--canary", "30",
                          "--candidate", "echo-flaky", env=env)  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert "flaky: echo-flaky gets 30% of traffic, echo-v1 the rest" in moved.stdout
    assert weights(server, "flaky") == {"echo-v1": 70, "echo-flaky": 30}
    (entry,) = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert (entry["action"], entry["canary"], entry["candidate"]) == ("rollout", 30, "echo-flaky")
    elsewhere = run_zeroserve("rollout", "flaky", "--canary", "30", "--candidate", "echo-flaky")
    assert elsewhere.returncode == 2
    assert "add --local" in elsewhere.stderr
