"""Two versions of one model name in `zeroserve serve`: a weighted split, a shadow, live weights,
per-version metrics, declared on the predictor or given as flags; on a real activator."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FIXTURES, RunningServer, run_zeroserve, start_server, wait_ready

pytestmark = pytest.mark.timeout(240)
ECHO = FIXTURES / "versions" / "echo.py"
DECLARED = FIXTURES / "versions" / "declared.py"
REQUESTS = 400
PREDICT = {"instances": [1.0]}


@pytest.fixture(scope="module")
def split_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("log") / "split.log"
    server = start_server(ECHO, log, "--split", "echo=v1:80,v2:20", "--shadow", "echo=broken")
    wait_ready(server, "echo-v1")
    wait_ready(server, "echo-v2")
    yield server
    server.stop()


def answers_of(server: RunningServer, count: int, **headers: str) -> Counter[str]:
    """Which version answered each of ``count`` requests for ``echo`` (each must be 200)."""
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(count):
            response = client.post("/v1/models/echo:predict", json=PREDICT, headers=headers)
            assert response.status_code == 200, response.text
            seen[response.json()["predictions"][0]] += 1
    return seen


def figures(server: RunningServer, since: int = 0) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/zeroserve/splits/echo?since={since}", timeout=10)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def shadow_answers(server: RunningServer, at_least: int) -> dict[str, Any]:
    """The split's figures once the shadow has answered ``at_least`` copies (it may lag)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = figures(server)
        if sum(found["shadow"]["answers"].values()) >= at_least:
            return found
        time.sleep(0.05)
    raise AssertionError(f"the shadow answered fewer than {at_least} copies: {found}")


def test_a_weighted_split_counts_within_bounds_and_a_failing_shadow_never_reaches_clients(
    split_server: RunningServer,
) -> None:
    before = figures(split_server)["numbered"]
    seen = answers_of(split_server, REQUESTS)  # every answer was 200: the shadow fails all
    assert set(seen) == {"v1", "v2"}
    # v2's count is Binomial(400, 0.2): mean 80, standard deviation 8; five deviations each way
    assert 40 <= seen["v2"] <= 120, seen
    found = shadow_answers(split_server, REQUESTS)
    versions = found["versions"]
    assert versions["v1"]["answers"].get("200", 0) >= seen["v1"]
    assert versions["v2"]["answers"].get("200", 0) >= seen["v2"]
    assert versions["v2"]["outputs"]["v2"] >= seen["v2"]  # each 200's predictions, tallied
    assert set(versions["v1"]["outputs"]) == {"v1"}
    assert found["shadow"]["model"] == "echo-broken"
    assert found["shadow"]["answers"] == {"500": REQUESTS}  # every copy, each recorded
    failure = found["shadow_failures"][-1]
    assert failure["status"] == 500
    assert "the broken version fails every request" in failure["body"]
    since = figures(split_server, before)["versions"]
    assert len(since["v1"]["recent"]["seconds"]) + len(since["v2"]["recent"]["seconds"]) == REQUESTS
    # the shadow at zero was started by its first copy, like any model on a request
    status = httpx.get(f"{split_server.url}/zeroserve/status", timeout=10).json()
    assert status["models"]["echo-broken"]["cold_starts"][0]["trigger"] == "request"
    assert status["splits"]["echo"]["shadow"]["model"] == "echo-broken"


def test_each_version_has_its_own_metrics(split_server: RunningServer) -> None:
    answers_of(split_server, 10)
    text = httpx.get(f"{split_server.url}/metrics", timeout=10).text
    for labels in (
        'code="200",model="echo",role="split",version="v1"',
        'code="500",model="echo",role="shadow",version="broken"',
    ):
        assert f"zeroserve_version_answers_total{{{labels}}}" in text
    latency = 'zeroserve_version_request_duration_seconds_count{model="echo",role="split",'
    assert latency + 'version="v2"}' in text


def test_a_client_pins_a_version_and_an_unknown_one_is_a_404(split_server: RunningServer) -> None:
    assert answers_of(split_server, 20, **{"zeroserve-version": "v2"}) == {"v2": 20}
    response = httpx.post(
        f"{split_server.url}/v1/models/echo:predict",
        json=PREDICT,
        headers={"zeroserve-version": "v9"},
        timeout=10,
    )
    assert response.status_code == 404
    assert response.json()["type"] == "UnknownModel"
    assert "v1, v2, broken" in response.json()["error"]
    ready = httpx.get(f"{split_server.url}/v2/models/echo/ready", timeout=10).json()
    assert ready["ready"] is True
    assert set(ready["versions"]) == {"v1", "v2"}
    v2 = httpx.post(f"{split_server.url}/v2/models/echo/infer", timeout=10, json={
        "inputs": [{"name": "input-0", "shape": [1], "datatype": "FP32", "data": [1.0]}]
    }, headers={"zeroserve-version": "v2"})  # fmt: skip
    assert v2.status_code == 200, v2.text
    assert v2.json()["model_name"] == "echo-v2"


def test_weights_change_live_and_a_bad_change_is_refused(split_server: RunningServer) -> None:
    url = f"{split_server.url}/zeroserve/splits/echo"
    for body, fragment in (
        ({"weights": {"v1": 50}}, "add up to 70"),
        ({"weights": {"v3": 100}}, "no version ['v3']"),
        ({"weights": {"v1": 101, "v2": -1}}, "not a whole percent"),
        ([1, 2], 'send {"weights"'),
    ):
        refused = httpx.put(url, json=body, timeout=10)
        assert refused.status_code == 400, refused.text
        assert fragment in refused.json()["error"]
    assert figures(split_server)["versions"]["v2"]["weight"] == 20  # unchanged by the refusals
    changed = httpx.put(url, json={"weights": {"v1": 0, "v2": 100}}, timeout=10)
    assert changed.status_code == 200, changed.text
    try:
        assert answers_of(split_server, 30) == {"v2": 30}
    finally:
        httpx.put(url, json={"weights": {"v1": 80, "v2": 20}}, timeout=10)
    assert httpx.delete(url, timeout=10).status_code == 405
    assert httpx.get(f"{split_server.url}/zeroserve/splits/nope", timeout=10).status_code == 404


def test_versions_declared_on_the_predictor(tmp_path: Path) -> None:
    server = start_server(DECLARED, tmp_path / "declared.log")
    try:
        wait_ready(server, "shop")
        seen: Counter[str] = Counter()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(200):
                response = client.post("/v1/models/shop:predict", json=PREDICT)
                assert response.status_code == 200, response.text
                seen[response.json()["predictions"][0]] += 1
        # shop-v2's count is Binomial(200, 0.25): mean 50, standard deviation 6.1
        assert set(seen) == {"shop", "v2"}
        assert 20 <= seen["v2"] <= 80, seen
        split = httpx.get(f"{server.url}/zeroserve/status", timeout=10).json()["splits"]["shop"]
        assert split["versions"] == {
            "shop": {"model": "shop", "weight": 75},
            "v2": {"model": "shop-v2", "weight": 25},
        }
        assert split["shadow"] == {"label": "shadow", "model": "shop-shadow"}
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--split", "echo=v1:70,v2:20"), "the weights add up to 90; make them add to 100"),
        (("--split", "echo=v1:50,v9:50"), "version 'v9' of 'echo' is not a served model"),
        (("--split", "echo=v1"), "is not VERSION:WEIGHT"),
        (("--shadow", "nope=v2"), "no model is named 'nope'"),
        (("--split", "echo=v1:50,v2:50", "--shadow", "echo=v2"), "both a weighted version"),
        (("--split", "echo=v1:50,v2:50", "--direct"), "--split and --shadow are the local"),
    ],
)
def test_a_bad_split_exits_2_with_one_line(flags: tuple[str, ...], message: str) -> None:
    result = run_zeroserve("serve", str(ECHO), "--port", "0", *flags, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_status_shows_a_split_and_its_versions(split_server: RunningServer) -> None:
    shown = run_zeroserve("status", "echo", "--local", "--url", split_server.url)
    assert shown.returncode == 0, shown.stderr
    assert (
        "split echo: v1 (echo-v1) 80%, v2 (echo-v2) 20%; shadow broken (echo-broken)"
        in shown.stdout
    )
    assert "echo-v1" in shown.stdout
    assert "echo-flaky" not in shown.stdout  # only the split's versions


def test_a_shadow_that_falls_behind_skips_copies_and_never_slows_clients(tmp_path: Path) -> None:
    server = start_server(ECHO, tmp_path / "stuck.log", "--shadow", "echo-v1=echo-stuck")
    try:
        wait_ready(server, "echo-v1")
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(20):  # back to back
                response = client.post("/v1/models/echo-v1:predict", json=PREDICT)
                assert response.status_code == 200, response.text
        found = httpx.get(f"{server.url}/zeroserve/splits/echo-v1", timeout=10).json()
        # every client was answered while the shadow (one copy at a time, a second each) had
        # answered almost none of its copies: no client waited for it
        assert sum(found["shadow"]["answers"].values()) < 5, found
        # it holds two copies at most (twice its concurrency of 1); the rest were skipped
        assert found["shadow_skipped"] >= 15, found
        assert found["versions"]["echo-v1"]["answers"] == {"200": 20}
    finally:
        server.stop()
