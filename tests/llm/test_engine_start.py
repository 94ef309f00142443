"""The engine's start from zero: its core and worker forked from the model's worker (nothing
imported again), the forked CPU worker pinned where vLLM placed it, each phase timed, and nothing
left running or in shared memory when the server stops."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import FIXTURES, RunningServer, start_server
from tests.llm.conftest import ENGINE_START_TIMEOUT_S, LLM_ENV, MODEL

ENGINE_PHASES = ("engine_start", "engine_core_start", "weight_load", "kv_cache", "compile")


def engine_processes(replica_pid: int) -> dict[str, psutil.Process]:
    """The replica's engine core and worker, by vLLM's process titles."""
    found = {}
    for child in psutil.Process(replica_pid).children(recursive=True):
        title = " ".join(child.cmdline())
        for role in ("EngineCore", "Worker"):
            if f"VLLM::{role}" in title:
                found[role] = child
    return found


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(condition, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_each_engine_phase_is_timed_inside_the_models_load(llm_serving: RunningServer) -> None:
    status = httpx.get(f"{llm_serving.url}/zeroserve/status", timeout=10).json()
    last = status["models"][MODEL]["last_cold_start"]
    phases = {phase["name"]: phase for phase in last["worker_timeline"]["phases"]}
    # engine_core_start is written by the engine's own worker, patched before the fork: a spawned
    # worker (a fresh interpreter) would not have written it
    assert set(ENGINE_PHASES) <= set(phases), sorted(phases)
    load = phases["load"]
    for name in ENGINE_PHASES:
        assert load["start_s"] <= phases[name]["start_s"] <= phases[name]["end_s"], name
        assert phases[name]["end_s"] <= load["end_s"], name
    engine = phases["engine_start"]
    for name in ENGINE_PHASES[1:]:
        assert engine["start_s"] <= phases[name]["start_s"], name
    # the first token came after the engine was up: logged as a phase of the start
    lines = [line for line in llm_serving.log().splitlines() if '"startup_phase"' in line]
    assert any('"first_token"' in line for line in lines), llm_serving.log_gist()


def test_the_forked_cpu_worker_has_its_cores_and_the_engine_core_the_others(
    llm_serving: RunningServer,
) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: vLLM reserves none for the engine core, so nothing to pin apart")
    status = httpx.get(f"{llm_serving.url}/zeroserve/status", timeout=10).json()
    (replica,) = status["models"][MODEL]["replicas"]
    processes = engine_processes(replica["pid"])
    assert set(processes) == {"EngineCore", "Worker"}, processes
    placed = re.findall(r"local_rank=0, core ids=\[([\d, ]+)\]", llm_serving.log())
    assert placed, llm_serving.log_gist()
    cores = {int(core) for core in placed[-1].split(",")}
    for thread in processes["Worker"].threads():
        assert os.sched_getaffinity(thread.id) == cores, thread.id
    # the engine core and the model's serving process run on the other (reserved) cores only
    others = os.sched_getaffinity(0) - cores
    for process in (processes["EngineCore"], psutil.Process(replica["pid"])):
        for thread in process.threads():
            assert os.sched_getaffinity(thread.id) == others, (process.name(), thread.id)


def test_without_sleep_mode_the_asleep_state_is_skipped_and_stopping_leaves_nothing(
    tiny_llm_folder: Path, tmp_path: Path
) -> None:
    """A model declaring sleep_after on a CPU (no sleep mode in vLLM there): one log line, the
    model stays ready while idle; then the server stops and its engine's processes and shared
    memory go with it."""
    shared_before = set(os.listdir("/dev/shm"))
    env = {**os.environ, **LLM_ENV, "ZEROSERVE_TINY_LLM_URI": str(tiny_llm_folder)}
    server = start_server(FIXTURES / "sleepy_llm.py", tmp_path / "serve.log", env=env)
    try:
        answer = httpx.post(
            f"{server.url}/openai/v1/completions",
            json={"model": MODEL, "prompt": "Hello", "max_tokens": 1},
            timeout=ENGINE_START_TIMEOUT_S,
        )
        assert answer.status_code == 200, server.log_gist()
        status = httpx.get(f"{server.url}/zeroserve/status", timeout=10).json()
        (replica,) = status["models"][MODEL]["replicas"]
        started = psutil.Process(replica["pid"]).children(recursive=True)
        assert {"EngineCore", "Worker"} <= set(engine_processes(replica["pid"])), started
        timeline = status["models"][MODEL]["last_cold_start"]["worker_timeline"]["phases"]
        assert {"name": "sleep_mode", "available": False} in [
            {key: p[key] for key in ("name", "available") if key in p} for p in timeline
        ]
        assert "vLLM has no sleep mode on this device" in server.log()

        def idle_past_sleep_after() -> bool:
            model = httpx.get(f"{server.url}/zeroserve/status", timeout=10).json()
            return bool(model["models"][MODEL]["idle_s"] > 1.5)

        wait_for(idle_past_sleep_after, 30, "the model idle past sleep_after")
        status = httpx.get(f"{server.url}/zeroserve/status", timeout=10).json()
        assert status["models"][MODEL]["state"] == "ready"
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert f'zeroserve_model_asleep{{model="{MODEL}"}} 0.0' in metrics
    finally:
        assert server.stop() == 0, server.log_gist()
    wait_for(lambda: not any(alive(p) for p in started), 30, "the engine's processes")
    left = {name for name in set(os.listdir("/dev/shm")) - shared_before if "psm_" in name}
    assert not left, left


def test_a_killed_engine_core_answers_503_until_a_fresh_worker_serves(
    tiny_llm_folder: Path, tmp_path: Path
) -> None:
    """kill -9 of vLLM's engine core under a ready worker: the requests meanwhile are answered
    503 (never 500), the worker's health watch stops it and a fresh one serves."""
    env = {**os.environ, **LLM_ENV, "ZEROSERVE_TINY_LLM_URI": str(tiny_llm_folder)}
    server = start_server(FIXTURES / "sleepy_llm.py", tmp_path / "serve.log", env=env)
    completions = f"{server.url}/openai/v1/completions"
    one = {"model": MODEL, "prompt": "Hello", "max_tokens": 1}
    try:
        answer = httpx.post(completions, json=one, timeout=ENGINE_START_TIMEOUT_S)
        assert answer.status_code == 200, server.log_gist()
        status = httpx.get(f"{server.url}/zeroserve/status", timeout=10).json()
        (replica,) = status["models"][MODEL]["replicas"]
        engine_processes(replica["pid"])["EngineCore"].kill()
        codes: list[int] = []

        def served_again() -> bool:
            codes.append(
                httpx.post(completions, json=one, timeout=ENGINE_START_TIMEOUT_S).status_code
            )
            return codes[-1] == 200

        wait_for(served_again, ENGINE_START_TIMEOUT_S, "a fresh worker's answer")
        assert set(codes[:-1]) <= {503}, codes
        old_worker = psutil.Process(replica["pid"]) if psutil.pid_exists(replica["pid"]) else None
        wait_for(lambda: old_worker is None or not alive(old_worker), 60, "the old worker's exit")
        assert "is no longer healthy" in server.log(), server.log_gist()
    finally:
        server.stop()
