"""/metrics after real traffic and real cold starts, read with prometheus_client's parser; the
structured log lines carry the client's trace id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FIXTURES, free_port, start_server, wait_ready

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TOLERANCE_S = 0.5  # readiness polling (50 ms), the HTTP round trip, process creation


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str):
    """The sample ``name`` whose labels include ``labels`` (exactly one must match)."""
    matches = [v for (n, have), v in found.items() if n == name and set(labels.items()) <= have]
    assert len(matches) == 1, f"{name}{labels}: {len(matches)} samples"
    return matches[0]


def test_cold_start_phases_add_up_to_the_measured_time_to_ready(tmp_path: Path) -> None:
    port = free_port()
    target = f"{FIXTURES / 'predictors' / 'tuned.py'}"
    command = [sys.executable, "-m", "zeroserve", "serve", target, "--direct", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with (tmp_path / "direct.log").open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            assert process.poll() is None, (tmp_path / "direct.log").read_text()
            try:
                if httpx.get(f"{url}/v2/models/tuned/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() - started < 60
            time.sleep(0.05)
        measured = time.monotonic() - started
        found = samples(url)
    finally:
        process.terminate()
        process.wait(timeout=30)
    to_ready = value(found, "zeroserve_cold_start_seconds_sum", model="tuned")
    assert value(found, "zeroserve_cold_start_seconds_count", model="tuned") == 1
    assert 0 < to_ready <= measured
    assert measured - to_ready < TOLERANCE_S
    phases = {
        phase: value(found, "zeroserve_cold_start_phase_seconds_sum", model="tuned", phase=phase)
        for phase in ("imports", "load", "warmup")
    }
    assert phases["imports"] > 0
    assert all(seconds >= 0 for seconds in phases.values()), phases
    assert sum(phases.values()) <= to_ready
    # the timeline in the log is the same record: the phases there are the metric's phases
    line = next(
        json.loads(text.split(" INFO ", 1)[1])
        for text in (tmp_path / "direct.log").read_text().splitlines()
        if '"startup_timeline"' in text
    )
    logged = {p["name"]: p["end_s"] - p["start_s"] for p in line["phases"] if p["name"] in phases}
    for phase, seconds in phases.items():
        assert abs(logged[phase] - seconds) < 0.001


def test_activator_metrics_after_a_cold_start_and_an_error(tmp_path: Path) -> None:
    server = start_server(FIXTURES / "local" / "steady.py", tmp_path / "steady.log")
    try:
        wait_ready(server, "steady")
        answer = httpx.post(
            f"{server.url}/v1/models/steady:predict", json={"instances": [1]}, timeout=60
        )
        assert answer.status_code == 200
        bad = httpx.post(
            f"{server.url}/v1/models/steady:predict",
            json={"instances": ["not a number"]},
            headers={"traceparent": TRACEPARENT},
        )
        assert bad.status_code == 400
        found = samples(server.url)
    finally:
        server.stop()
    assert value(found, "zeroserve_cold_starts_total", model="steady") == 1
    assert value(found, "zeroserve_scale_events_total", model="steady", direction="from_zero") == 1
    assert value(found, "zeroserve_request_hold_seconds_count", model="steady") == 1
    assert value(found, "zeroserve_replicas", model="steady", state="ready") == 1
    # the worker's own series, labelled with its replica
    assert (
        value(found, "zeroserve_errors_total", model="steady", status="400", type="InvalidPayload")
        == 1
    )
    assert value(found, "zeroserve_cold_start_seconds_count", model="steady", replica="steady-1")
    assert value(found, "request_predict_seconds_count", model_name="steady", replica="steady-1")
    events = [
        json.loads(line.split(" ", 4)[4])
        for line in server.log().splitlines()
        if ' {"event":' in line
    ]
    error = next(event for event in events if event["event"] == "error")
    assert error["trace_id"] == TRACEPARENT.split("-")[1]
    assert error["status"] == 400
    cold = next(event for event in events if event["event"] == "cold_start")
    assert cold["model"] == "steady"
    assert cold["ready_s"] > 0


def test_a_trace_runs_from_the_client_through_the_hold_to_the_worker(tmp_path: Path) -> None:
    """Real processes, the SDK's console exporter: the activator's hold span continues the
    client's traceparent and the worker's spans continue the hold span."""
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "zs-test"}
    server = start_server(FIXTURES / "local" / "steady.py", tmp_path / "traced.log", env=env)
    try:
        wait_ready(server, "steady")
        answer = httpx.post(
            f"{server.url}/v1/models/steady:predict",
            json={"instances": [1]},
            headers={"traceparent": TRACEPARENT},
            timeout=60,
        )
        assert answer.status_code == 200
    finally:
        server.stop()
    spans = [json.loads(line) for line in server.log().splitlines() if line.startswith('{"name"')]
    by_id = {span["context"]["span_id"]: span for span in spans}
    client_trace, client_span = TRACEPARENT.split("-")[1:3]
    hold = next(span for span in spans if span["name"] == "hold")
    assert hold["context"]["trace_id"] == f"0x{client_trace}"
    assert hold["parent_id"] == f"0x{client_span}"
    predict = next(span for span in spans if span["name"] == "predict")
    assert predict["context"]["trace_id"] == f"0x{client_trace}"
    ancestors = []
    parent = predict["parent_id"]
    while parent in by_id:
        ancestors.append(by_id[parent]["name"])
        parent = by_id[parent]["parent_id"]
    assert "hold" in ancestors
    assert {span["resource"]["attributes"]["service.name"] for span in spans} == {"zs-test"}
    assert any(span["name"] == "cold_start" for span in spans)
