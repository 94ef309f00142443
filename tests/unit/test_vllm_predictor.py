"""The vLLM predictor's corners that need no engine: readiness follows the engine's health; the
forked engine's CPU placement and phases.

The predictor against real vLLM is tests/llm (tox -e llm)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from zeroserve.predictors.vllm import VLLMPredictor


class _Engine:
    def __init__(self, dead: bool) -> None:
        self.dead = dead

    async def check_health(self) -> None:
        if self.dead:
            raise RuntimeError("EngineCore died")


def test_readiness_follows_the_engine() -> None:
    predictor = VLLMPredictor()
    assert asyncio.run(predictor.healthy()) is False  # not started
    predictor.engine = _Engine(dead=False)
    assert asyncio.run(predictor.healthy()) is True
    predictor.engine = _Engine(dead=True)
    assert asyncio.run(predictor.healthy()) is False


def test_a_models_readiness_asks_the_users_healthy() -> None:
    from zeroserve import predictor
    from zeroserve.serving.kserve_model import PredictorModel
    from zeroserve.serving.runner import PredictorRunner
    from zeroserve.spec.decorator import declaration_of

    class Flaky:
        alive = True

        async def healthy(self) -> bool:
            return self.alive

        def predict(self, instances: list[str]) -> list[str]:
            return instances

    declared = declaration_of(predictor(name="flaky")(Flaky))
    assert declared is not None
    model = PredictorModel(PredictorRunner(Flaky, declared, None))
    assert asyncio.run(model.healthy()) is False  # not loaded yet
    asyncio.run(model.load_in_server())
    assert asyncio.run(model.healthy()) is True
    model.instance.alive = False
    assert asyncio.run(model.healthy()) is False


def test_a_healthy_that_hangs_or_raises_counts_as_unhealthy_with_its_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from zeroserve import predictor
    from zeroserve.serving import runner as runner_module
    from zeroserve.serving.runner import PredictorRunner
    from zeroserve.spec.decorator import declaration_of

    class Checked:
        mode = "fine"

        async def healthy(self) -> bool:
            if self.mode == "hangs":
                await asyncio.Event().wait()
            if self.mode == "raises":
                raise RuntimeError("engine gone")
            return True

        def predict(self, instances: list[str]) -> list[str]:
            return instances

    monkeypatch.setattr(runner_module, "HEALTH_CHECK_TIMEOUT_S", 0.05)
    declared = declaration_of(predictor(name="checked")(Checked))
    assert declared is not None
    runner = PredictorRunner(Checked, declared, None)
    assert asyncio.run(runner.health()) == (False, "not loaded")
    asyncio.run(runner.load())
    assert asyncio.run(runner.health()) == (True, "")
    runner.instance.mode = "hangs"
    assert asyncio.run(runner.health()) == (False, "healthy() gave no answer within 0.05 s")
    assert asyncio.run(runner.healthy()) is False
    runner.instance.mode = "raises"
    assert asyncio.run(runner.health()) == (False, "healthy() raised RuntimeError: engine gone")


def test_the_cores_of_each_openmp_placement_vllm_writes() -> None:
    from zeroserve.predictors.vllm_start import cores_of

    assert cores_of({"GOMP_CPU_AFFINITY": "0 1 3"}) == {0, 1, 3}
    assert cores_of({"KMP_AFFINITY": "granularity=fine,explicit,proclist=[2,5]"}) == {2, 5}
    assert cores_of({"OMP_PLACES": "{4,6}"}) == {4, 6}
    assert cores_of({"OMP_NUM_THREADS": "2"}) == set()  # nobind: no placement, nothing to pin


def test_a_worker_without_a_placement_is_left_as_it_is() -> None:
    from zeroserve.predictors.vllm_start import bind_forked_cpu_worker

    before = os.sched_getaffinity(0)
    assert bind_forked_cpu_worker({}) is None
    assert os.sched_getaffinity(0) == before


def test_a_parent_is_read_past_a_name_with_spaces_and_parentheses(tmp_path: Path) -> None:
    import subprocess
    import sys

    from zeroserve.predictors.engine_memory import parent_of

    odd = tmp_path / "py (1) 2"  # /proc/PID/stat puts the name in parentheses
    odd.symlink_to(sys.executable)
    child = subprocess.Popen([str(odd), "-c", "import time; time.sleep(30)"])
    try:
        assert parent_of(child.pid) == os.getpid()
    finally:
        child.kill()
        child.wait()


def test_with_no_worker_cores_nothing_is_moved() -> None:
    from zeroserve.predictors.vllm_start import keep_serving_off

    before = os.sched_getaffinity(os.getppid())
    keep_serving_off(None)
    keep_serving_off(set())
    assert os.sched_getaffinity(os.getppid()) == before


def test_the_engines_phases_are_read_from_what_its_processes_appended(tmp_path: Path) -> None:
    from zeroserve.predictors import vllm_start

    sink = tmp_path / "phases.jsonl"
    assert vllm_start.read_phases(sink) == []  # spawned processes write none
    vllm_start._launch.update(at=1.0, sink=str(sink))
    try:
        vllm_start._write_phase("weight_load", 2.0, 2.5)
        vllm_start._write_phase("kv_cache", 2.5, 3.0)
    finally:
        vllm_start._launch.clear()
    vllm_start._write_phase("compile", 3.0, 3.1)  # no start under way: nowhere to write
    assert vllm_start.read_phases(sink) == [
        {"name": "weight_load", "start": 2.0, "end": 2.5},
        {"name": "kv_cache", "start": 2.5, "end": 3.0},
    ]


def test_phases_added_after_ready_reach_the_listener_and_a_thread_sees_the_timeline() -> None:
    from zeroserve.coldstart import StartupTimeline, active_timeline
    from zeroserve.serving.runner import _call_user

    timeline = StartupTimeline(origin=0.0)
    seen: list[dict[str, object]] = []
    timeline.record("load", 1.0, 2.0)
    timeline.on_late_phase = seen.append
    timeline.record("first_token", 2.0, 2.25)
    assert seen == [{"name": "first_token", "start_s": 2.0, "end_s": 2.25}]
    assert active_timeline() is None

    def load_in_a_thread() -> object:
        return active_timeline()

    async def load() -> object:
        with timeline.active():
            return await _call_user(load_in_a_thread)

    assert asyncio.run(load()) is timeline
    assert active_timeline() is None
