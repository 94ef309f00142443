"""The idle sleep of an LLM engine, against an engine that records what it was asked (vLLM's sleep
mode needs a GPU: on a CPU the state is skipped, tests/llm checks that line)."""

from __future__ import annotations

import asyncio

import pytest

from zeroserve.predictors.vllm_sleep import IdleSleep


class RecordingEngine:
    """``sleep``/``wake_up`` as AsyncLLM has them; each call takes a turn of the event loop."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.sleeping = False

    async def sleep(self, level: int = 1) -> None:
        await asyncio.sleep(0)
        self.calls.append(f"sleep {level}")
        self.sleeping = True

    async def wake_up(self) -> None:
        await asyncio.sleep(0)
        self.calls.append("wake_up")
        self.sleeping = False


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sleeper() -> tuple[IdleSleep, RecordingEngine, Clock]:
    engine, clock = RecordingEngine(), Clock()
    return IdleSleep(engine, "tiny-llm", after=30.0, clock=clock), engine, clock


def test_the_engine_sleeps_once_idle_long_enough_and_wakes_for_the_next_request() -> None:
    async def scenario() -> None:
        idle, engine, clock = sleeper()
        clock.now += 29.0
        assert await idle.sleep_if_idle() is False  # not idle long enough
        clock.now += 1.0
        assert await idle.sleep_if_idle() is True
        assert await idle.sleep_if_idle() is False  # already asleep
        assert engine.calls == ["sleep 1"]
        assert idle.asleep
        async with idle.serving():
            assert not engine.sleeping  # woken before the request runs
        assert engine.calls == ["sleep 1", "wake_up"]
        assert not idle.asleep
        assert idle.last_wake_s is not None

    asyncio.run(scenario())


def test_a_request_in_flight_is_never_put_to_sleep_under() -> None:
    async def scenario() -> None:
        idle, engine, clock = sleeper()
        async with idle.serving():
            clock.now += 3600.0
            assert await idle.sleep_if_idle() is False
        assert await idle.sleep_if_idle() is False  # idle counts from the request's end
        clock.now += 30.0
        assert await idle.sleep_if_idle() is True
        assert engine.calls == ["sleep 1"]

    asyncio.run(scenario())


def test_requests_arriving_while_it_goes_to_sleep_wait_and_find_it_awake() -> None:
    async def scenario() -> None:
        idle, engine, clock = sleeper()
        clock.now += 31.0
        seen: list[bool] = []

        async def request() -> None:
            async with idle.serving():
                seen.append(engine.sleeping)

        going = asyncio.create_task(idle.sleep_if_idle())
        await asyncio.sleep(0)  # it holds the turn, mid-sleep
        await asyncio.gather(request(), request(), going)
        assert seen == [False, False]
        assert engine.calls == ["sleep 1", "wake_up"]  # one wake for both

    asyncio.run(scenario())


def test_a_watch_that_cannot_put_the_engine_to_sleep_stops_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class DeadEngine(RecordingEngine):
        async def sleep(self, level: int = 1) -> None:
            raise RuntimeError("EngineCore died")

    idle = IdleSleep(DeadEngine(), "tiny-llm", after=0.01)
    asyncio.run(asyncio.wait_for(idle.watch(every=0.01), timeout=10))
    assert "could not be put to sleep" in caplog.text


def test_the_activator_reports_asleep_by_the_workers_rule() -> None:
    from types import SimpleNamespace

    from zeroserve import LLMEngine
    from zeroserve.local.status import engine_asleep

    def pool(sleep_after: float | None, available: bool | None, idle: float, **more: object):
        mark = [] if available is None else [{"name": "sleep_mode", "available": available}]
        replica = SimpleNamespace(state="ready", timeline={"phases": mark})
        spec = SimpleNamespace(llm=LLMEngine(sleep_after=sleep_after))
        fields = {"in_flight": 0, "waiters": [], "last_active": 100.0 - idle, **more}
        return SimpleNamespace(spec=spec, replicas={"r1": replica}, **fields)

    assert engine_asleep(pool(30.0, True, idle=31.0), now=100.0)  # type: ignore[arg-type]
    assert not engine_asleep(pool(30.0, True, idle=29.0), now=100.0)  # type: ignore[arg-type]
    assert not engine_asleep(pool(30.0, False, idle=99.0), now=100.0)  # type: ignore[arg-type]
    assert not engine_asleep(pool(30.0, None, idle=99.0), now=100.0)  # type: ignore[arg-type]
    assert not engine_asleep(pool(None, True, idle=99.0), now=100.0)  # type: ignore[arg-type]
    busy = pool(30.0, True, idle=99.0, in_flight=1)
    assert not engine_asleep(busy, now=100.0)  # type: ignore[arg-type]
