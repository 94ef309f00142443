"""Starting vLLM's engine in a process that already imported it: fork, don't spawn; time each phase.

vLLM's own server (``build_async_engine_client_from_engine_args`` in
``vllm/entrypoints/launchers/api_server/entry.py``) makes the engine's config, then
``AsyncLLM.from_vllm_config`` starts the engine core process, and the core starts its worker, each
with ``vllm.utils.system_utils.get_mp_context()``: the start method named by
``VLLM_WORKER_MULTIPROC_METHOD`` when the process starts. vLLM's default is ``fork``, but on a CPU
``CpuPlatform.check_and_update_config`` (``vllm/platforms/cpu.py``) sets ``spawn`` while the config
is made, and a spawned process imports torch and vLLM again: on 2 cores about 9 s for the core and
9 s more for its worker, for a model whose weights load in 0.01 s.

``forked_engine`` makes the config the same way, then puts back the start method asked for (``fork``
when none was) before the engine starts: both processes are forks of the model's worker, itself
forked from the model host with vLLM imported. vLLM still spawns where it must: its
``_maybe_force_spawn`` checks, as each process starts, for CUDA already initialised in this process,
a Ray actor, NUMA binding or WSL (the model host never initialises CUDA).

Spawn is there on CPU for one reason: the OpenMP settings vLLM writes into the environment of its
worker (``OMP_NUM_THREADS`` and ``GOMP_CPU_AFFINITY``, ``KMP_AFFINITY`` or ``OMP_PLACES``, by
``OMPProcessManager.configure_omp_envs`` in ``vllm/utils/ompmultiprocessing.py``) are read by the
OpenMP runtime when it loads. A forked worker's runtime loaded long before: left alone, the worker
floated over every core and spun against the engine core, for half the tokens per second here.
``bind_forked_cpu_worker`` applies those settings in the worker before vLLM's ``init_device``: the
CPU affinity of its threads (OpenMP's threads start later and inherit it) and torch's thread count.
Only forked workers run it: a spawned one imports vLLM afresh, without these patches.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

from zeroserve.coldstart import active_timeline
from zeroserve.predictors.engine_memory import EngineSegments, parent_of

START_METHOD = "VLLM_WORKER_MULTIPROC_METHOD"
# (phase name, the vLLM method it times): run in the engine's own processes, so they are timed there
# (a fork inherits the patched classes) and read back once the engine is up.
WORKER_PHASES = (
    ("weight_load", "load_model"),  # read the weights into the model
    ("memory_profile", "determine_available_memory"),  # a profiling run (GPU: torch.compile)
    ("kv_cache", "initialize_from_config"),  # allocate the KV cache
    ("compile", "compile_or_warm_up_model"),  # graph capture / warm-up
)
# (package, vLLM's load format), the first installed is used (on a GPU; see streaming_load_format)
STREAMING_LOADERS = (
    ("runai_model_streamer", "runai_streamer"),
    ("fastsafetensors", "fastsafetensors"),
)
# where vLLM keeps what the predictor calls, newest layout first: vLLM 0.27 on moved the server's
# pieces to vllm.entrypoints.launchers (0.26 is the CUDA build for torch 2.11)
VLLM_HOMES = {
    "init_app_state": (
        "vllm.entrypoints.launchers.api_server.app_state",
        "vllm.entrypoints.openai.api_server",
    ),
    "make_arg_parser": ("vllm.entrypoints.launchers.cli_args", "vllm.entrypoints.openai.cli_args"),
    "validate_parsed_serve_args": (
        "vllm.entrypoints.launchers.cli_args",
        "vllm.entrypoints.openai.cli_args",
    ),
    "propagate_flash_late_interaction": ("vllm.entrypoints.launchers.cli_args",),
    "create_error_response": (
        "vllm.entrypoints.serve.exception_handling.error_response",
        "vllm.entrypoints.serve.utils.error_response",
    ),
}
PLACEMENTS = (("KMP_AFFINITY", r"proclist=\[([\d,]+)\]"), ("OMP_PLACES", r"\{([\d,]+)\}"))
_launch: dict[str, Any] = {}  # the engine start under way: when, and where its phases go
_launch_patched: list[bool] = []  # vLLM's worker classes patched (once per process)


@contextlib.asynccontextmanager
async def forked_engine(args: Any) -> AsyncIterator[Any]:
    """vLLM's ``AsyncLLM`` for the parsed server ``args``, its processes forked from this one; its
    phases go to the active start timeline. Shuts it down (processes, shared memory) on exit."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.async_llm import AsyncLLM

    engine_args = AsyncEngineArgs.from_cli_args(args)
    with contextlib.suppress(ImportError):  # a step of vLLM 0.27 on; earlier ones have none
        vllm_name("propagate_flash_late_interaction")(args, engine_args)
    usage = UsageContext.OPENAI_API_SERVER
    with _start_method_kept():
        config = engine_args.create_engine_config(usage_context=usage)
    _patch_engine_processes()
    # The shared memory the engine's processes make (their message queues) is registered with
    # multiprocessing's resource tracker, which unlinks what is left when its last user is gone.
    # Started here, it is this process's child: vLLM's shutdown kills the engine core with what
    # the core started, and a tracker the core started lazily went with it, leaving its segments.
    resource_tracker.ensure_running()
    with _phases_collected():
        engine = AsyncLLM.from_vllm_config(
            vllm_config=config,
            usage_context=usage,
            enable_log_requests=engine_args.enable_log_requests,
            aggregate_engine_logging=engine_args.aggregate_engine_logging,
            disable_log_stats=engine_args.disable_log_stats,
        )
    segments = EngineSegments()
    try:
        segments.note()  # its processes' message queues, mapped by now
        await engine.reset_mm_cache()
        yield engine
    finally:
        segments.note()
        engine.shutdown(timeout=config.shutdown_timeout)
        segments.unlink_left()  # what the tracker cannot remove where it went with the engine


def vllm_name(name: str) -> Any:
    """What vLLM keeps as ``name``, from the first of its ``VLLM_HOMES`` this vLLM has."""
    for home in VLLM_HOMES[name]:
        try:
            module = importlib.import_module(home)
        except ModuleNotFoundError:
            continue
        if hasattr(module, name):
            return getattr(module, name)
    raise ImportError(
        f"the installed vLLM has no {name} in {' or '.join(VLLM_HOMES[name])}; "
        "install a vLLM release from 0.26 on"
    )


@contextlib.contextmanager
def _start_method_kept() -> Iterator[None]:
    """Let the platform make its config, then restore the start method asked for (else fork)."""
    asked = os.environ.get(START_METHOD)
    try:
        yield
    finally:
        os.environ[START_METHOD] = asked or "fork"


@contextlib.contextmanager
def _phases_collected() -> Iterator[None]:
    """Time the engine's start: the whole of it here, its processes' phases in a file they append
    to (one JSON line each), added to the active timeline when the engine is up."""
    timeline = active_timeline()
    with tempfile.TemporaryDirectory(prefix="zeroserve-vllm-") as folder:
        sink = Path(folder) / "phases.jsonl"
        _launch.update(at=time.monotonic(), sink=str(sink))
        try:
            yield
        finally:
            ended = time.monotonic()
            launched = _launch.pop("at")
            _launch.clear()
            if timeline is not None:
                timeline.record("engine_start", launched, ended)
                for phase in read_phases(sink):
                    timeline.record(phase.pop("name"), phase.pop("start"), phase.pop("end"))


def sleep_mode_available() -> bool:
    """Whether vLLM can put this device's engine to sleep (CUDA, ROCm, XPU; not a CPU)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_sleep_mode_available())


def streaming_load_format(source: str, chosen: list[str]) -> list[str]:
    """``--load-format runai_streamer`` (or ``fastsafetensors``) where the weights are a folder of
    safetensors, the package is installed, the device is a GPU and no load format was asked for;
    else nothing, for vLLM's default loader.

    Not on a CPU: on this project's 2-core machine, an 810 MB bf16 Llama loaded in a median
    1.56 s with the default loader (safetensors' mmap) against 1.83 s with runai-model-streamer
    0.17 from a warm page cache, and 1.8 s against 3.3 s from a cold one.
    """
    if any(arg == "--load-format" or arg.startswith("--load-format=") for arg in chosen):
        return []
    if not any(Path(source).glob("*.safetensors")):
        return []
    from vllm.platforms import current_platform

    if not current_platform.is_cuda_alike():
        return []
    for module, load_format in STREAMING_LOADERS:
        if importlib.util.find_spec(module) is not None:
            return ["--load-format", load_format]
    return []


def read_phases(sink: Path) -> list[dict[str, Any]]:
    """The phases the engine's processes wrote (none where they were spawned, not forked)."""
    try:
        lines = sink.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def _write_phase(name: str, start: float, end: float) -> None:
    sink = _launch.get("sink")
    if sink is None:  # not during a start this process launched (e.g. a later re-init)
        return
    line = json.dumps({"name": name, "start": start, "end": end}) + "\n"
    descriptor = os.open(sink, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, line.encode())  # one O_APPEND write: lines never interleave
    finally:
        os.close(descriptor)


def _patch_engine_processes() -> None:
    """Once per process: time the worker's phases, and bind a forked CPU worker's threads."""
    from vllm.v1.worker.cpu_worker import CPUWorker
    from vllm.v1.worker.gpu_worker import Worker

    if _launch_patched:
        return
    for cls in (Worker, CPUWorker):
        for phase, method in WORKER_PHASES:
            if method in vars(cls):  # neither class's own method calls the other's
                setattr(cls, method, _timed(phase, vars(cls)[method]))
        cls.init_device = _started(vars(cls)["init_device"], bind=cls is CPUWorker)
    _launch_patched.append(True)


def _started(init_device: Callable[..., Any], bind: bool) -> Callable[..., Any]:
    """The worker's ``init_device``, first noting its process started (and binding a CPU one)."""

    def started(self: Any) -> Any:
        if bind:
            keep_serving_off(bind_forked_cpu_worker(os.environ))
        _write_phase("engine_core_start", _launch.get("at", time.monotonic()), time.monotonic())
        return init_device(self)

    return started


def _timed(phase: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return method(self, *args, **kwargs)
        finally:
            _write_phase(phase, started, time.monotonic())

    timed.__name__ = timed.__qualname__ = method.__name__
    timed.__doc__ = method.__doc__
    return timed


def bind_forked_cpu_worker(environ: os._Environ[str] | dict[str, str]) -> set[int] | None:
    """Apply the OpenMP placement vLLM set for this worker (see the module's documentation): pin
    this process's threads to its cores and set torch's thread count. Returns the cores, or None
    where vLLM set no placement (``VLLM_CPU_OMP_THREADS_BIND=nobind``)."""
    cores = cores_of(environ)
    if not cores:
        return None
    import torch

    _pin_threads(os.getpid(), cores)
    torch.set_num_threads(int(environ.get("OMP_NUM_THREADS") or len(cores)))
    return cores


def keep_serving_off(cores: set[int] | None) -> None:
    """Keep the engine core and the model's serving process (this worker's parent and its parent)
    off the worker's cores. vLLM binds its CPU worker to ``cores`` and leaves the other cores for
    them (``VLLM_CPU_NUM_OF_RESERVED_CPU``), but does not bind them there, so the scheduler may
    put them beside the worker, which spins on its core. Where no other core is allowed, nothing
    changes."""
    if not cores:
        return
    parent = os.getppid()
    for pid in (parent, parent_of(parent)):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to move
            others = os.sched_getaffinity(pid) - cores
            if others:
                _pin_threads(pid, others)


def _pin_threads(pid: int, cores: set[int]) -> None:
    """Put every thread of process ``pid`` on ``cores``."""
    for thread in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(thread), cores)


def cores_of(environ: os._Environ[str] | dict[str, str]) -> set[int]:
    """The cores in vLLM's OpenMP placement: ``GOMP_CPU_AFFINITY="0 1"``,
    ``KMP_AFFINITY="granularity=fine,explicit,proclist=[0,1]"`` or ``OMP_PLACES="{0,1}"``."""
    if environ.get("GOMP_CPU_AFFINITY"):
        return {int(core) for core in environ["GOMP_CPU_AFFINITY"].split()}
    for variable, pattern in PLACEMENTS:
        found = re.search(pattern, environ.get(variable, ""))
        if found:
            return {int(core) for core in found.group(1).split(",")}
    return set()
