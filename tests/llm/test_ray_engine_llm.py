"""The tiny-llm sample on `zeroserve serve --engine ray`: its OpenAI routes through the front,
vLLM in a Ray Serve replica (a local Ray cluster, started and stopped with the command)."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SAMPLES, RunningServer, start_server, wait_ready
from tests.llm.conftest import ENGINE_START_TIMEOUT_S, LLM_ENV, MODEL, sample_engine_args

if importlib.util.find_spec("ray") is None:
    pytest.skip("Ray is not installed in this environment", allow_module_level=True)

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def ray_llm(tiny_llm_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        **os.environ,
        **LLM_ENV,
        "RAY_AUTH_MODE": "disabled",
        "ZEROSERVE_TINY_LLM_URI": str(tiny_llm_folder),
        "ZEROSERVE_VLLM_ARGS": shlex.join(sample_engine_args()),
    }
    log = tmp_path_factory.mktemp("ray-llm") / "front.log"
    shared_before = set(os.listdir("/dev/shm"))
    server: RunningServer = start_server(
        SAMPLES / "tiny-llm" / "model.py", log, "--engine", "ray", "--start-timeout", "900", env=env
    )
    try:
        wait_ready(server, MODEL, timeout=180)
        first = httpx.post(  # from zero: Ray starts the replica, vLLM its engine
            f"{server.url}/openai/v1/completions",
            json={"model": MODEL, "prompt": "The quick", "max_tokens": 2},
            timeout=ENGINE_START_TIMEOUT_S,
        )
        assert first.status_code == 200, f"{first.text}\n{server.log()[-5000:]}"
        yield server.url
    finally:
        assert server.stop() == 0, server.log()[-5000:]
        left = subprocess.run(["ps", "-eo", "comm"], capture_output=True, text=True).stdout
        assert "raylet" not in left, "the local Ray cluster outlived the command"
        # the replica's engine shut down (its applications deleted before the cluster's stop)
        # and its message queues' shared memory (and its worker's loky semaphore) went with it,
        # although Ray killed the trackers that remove them
        left_now = set(os.listdir("/dev/shm")) - shared_before
        segments = {name for name in left_now if name.startswith(("psm_", "sem.loky-"))}
        assert not segments, f"the engine left shared memory behind: {sorted(segments)}"


def test_completions_answer_through_the_replica(ray_llm: str) -> None:
    answer = httpx.post(
        f"{ray_llm}/openai/v1/completions",
        json={"model": MODEL, "prompt": "Ray serves", "max_tokens": 6, "temperature": 0},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == MODEL
    assert body["usage"]["completion_tokens"] == 6


def test_streaming_events_add_up_to_the_answer(ray_llm: str) -> None:
    payload = {"model": MODEL, "prompt": "Knative scales", "max_tokens": 8, "temperature": 0}
    whole = httpx.post(f"{ray_llm}/openai/v1/completions", json=payload, timeout=120).json()
    with httpx.stream(
        "POST", f"{ray_llm}/openai/v1/completions", json={**payload, "stream": True}, timeout=120
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in stream.iter_lines() if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]


def test_a_bad_request_gets_an_openai_error(ray_llm: str) -> None:
    answer = httpx.post(
        f"{ray_llm}/openai/v1/completions",
        json={"model": MODEL, "prompt": "x", "max_tokens": 100000},
        timeout=120,
    )
    assert answer.status_code == 400, answer.text
    assert "max_tokens" in answer.json()["error"]["message"]
