"""LLM serving: zeroserve's vLLM predictor against vLLM's own OpenAI server, same model, same run.

Run in the `llm` environment (vLLM installed): python -m bench llm
The tiny-llm sample (a random 2-layer Llama, built here) is pushed to a moto S3 server and served
from there. Measured:
- time to first answer from a cold cache and from a warm one: `zeroserve serve` is launched and
  one completion is asked for at once (the activator holds it while the model host fetches the
  weights, imports, and the engine starts);
- generated tokens per second at concurrency 1 and 16 (greedy, 64 tokens per request, EOS
  ignored, non-streaming), through zeroserve's activator and through
  `python -m vllm.entrypoints.openai.api_server` with the same engine arguments, both running,
  measured in alternating rounds; each ratio is the median over rounds.
Goals: zeroserve / vLLM >= 0.95 at both concurrencies; concurrency 16 >= 8x concurrency 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench._process import free_port, running
from bench.coldstart import client, s3_env

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "tiny-llm"
MODEL = "tiny-llm"
GOAL = 0.95
SCALING_GOAL = 8.0
ROUNDS = 6
ROUND_SECONDS = 5.0
MAX_TOKENS = 64
ENGINE_START_S = 900.0
LLM_ENV = {
    "HF_HUB_OFFLINE": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


async def tokens_per_second(completions: str, concurrency: int, seconds: float) -> float:
    """Generated tokens per second from ``concurrency`` clients asking back to back."""
    body = {
        "model": MODEL,
        "prompt": "Serverless model serving starts a model when",
        "max_tokens": MAX_TOKENS,
        "temperature": 0.0,
        "ignore_eos": True,
    }
    generated = 0
    deadline = time.perf_counter() + seconds

    async def client_loop(http: httpx.AsyncClient) -> None:
        nonlocal generated
        while time.perf_counter() < deadline:
            answer = await http.post(completions, json=body)
            answer.raise_for_status()
            generated += answer.json()["usage"]["completion_tokens"]

    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        await asyncio.gather(*(client_loop(http) for _ in range(concurrency)))
    return generated / (time.perf_counter() - started)


def first_answer_seconds(command: list[str], env: dict[str, str], url: str, log: Path) -> float:
    """Seconds from launching the server to its first completion (it stays up: caller stops)."""
    started = time.perf_counter()
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                answer = httpx.post(
                    f"{url}/openai/v1/completions",
                    json={"model": MODEL, "prompt": "Hello", "max_tokens": 1},
                    timeout=ENGINE_START_S,
                )
                if answer.status_code == 200:
                    return time.perf_counter() - started
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=60)


def engine_args() -> list[str]:
    """The sample's engine arguments, as vLLM's own server takes them."""
    sys.path.insert(0, str(SAMPLE))
    try:
        from zeroserve import spec_of
        from zeroserve.loader import find_predictors

        (found,) = find_predictors(str(SAMPLE / "model.py"))
        llm = spec_of(found.cls).llm
    finally:
        sys.path.pop(0)
    assert llm is not None
    return llm.vllm_args()


def build_and_push(scratch: Path, bucket: str) -> tuple[Path, str]:
    from zeroserve.coldstart import push

    folder = scratch / "tiny-llm"
    subprocess.run(
        [sys.executable, str(SAMPLE / "build.py"), str(folder)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client().create_bucket(Bucket=bucket)
    push(folder, f"s3://{bucket}/models", name=MODEL, version="v1")
    return folder, f"s3://{bucket}/models/{MODEL}@v1"


def start_times(scratch: Path, env: dict[str, str]) -> dict[str, float]:
    cache = scratch / "cache"
    times = {}
    for kind in ("cold_cache", "warm_cache"):
        port = free_port()
        command = [sys.executable, "-m", "zeroserve", "serve", str(SAMPLE / "model.py")]
        command += ["--port", str(port), "--no-access-log"]
        run_env = {**env, "ZEROSERVE_CACHE__ROOT": str(cache)}
        url = f"http://127.0.0.1:{port}"
        times[kind] = first_answer_seconds(command, run_env, url, scratch / f"{kind}.log")
        print(f"first answer from a {kind.replace('_', ' ')}: {times[kind]:.1f} s")
    return times


def compare(urls: dict[str, str]) -> dict[str, dict[str, float]]:
    """Median ratio and mean tokens/s per server at concurrency 1 and 16, alternating rounds.

    ``urls`` are the servers' completion routes."""
    figures: dict[str, dict[str, float]] = {}
    for concurrency in (1, 16):
        rates: dict[str, list[float]] = {name: [] for name in urls}
        ratios = []
        for index in range(ROUNDS):
            order = list(urls) if index % 2 == 0 else list(urls)[::-1]
            round_rates = {}
            for name in order:
                rate = asyncio.run(tokens_per_second(urls[name], concurrency, ROUND_SECONDS))
                round_rates[name] = rate
                rates[name].append(rate)
            ratios.append(round_rates["zeroserve"] / round_rates["vllm"])
        figures[f"c{concurrency}"] = {
            "ratio": round(statistics.median(ratios), 3),
            **{f"{name}_tokens_per_s": round(statistics.fmean(v), 1) for name, v in rates.items()},
        }
        print(f"concurrency {concurrency}: {figures[f'c{concurrency}']}")
    return figures


def main() -> dict[str, object]:
    port = free_port()
    s3_url = f"http://127.0.0.1:{port}"
    os.environ.update(s3_env(s3_url))
    with tempfile.TemporaryDirectory() as scratch_name, contextlib.ExitStack() as stack:
        scratch = Path(scratch_name)
        moto = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        stack.enter_context(running(moto, f"{s3_url}/moto-api/", scratch / "moto.log"))
        folder, reference = build_and_push(scratch, "bench-llm")
        env = {**os.environ, **LLM_ENV, "ZEROSERVE_TINY_LLM_URI": reference}
        starts = start_times(scratch, env)
        urls = serve_both(stack, scratch, folder, env)
        figures = compare(urls)
    shutil.rmtree(scratch_name, ignore_errors=True)
    c1, c16 = figures["c1"], figures["c16"]
    scaling = c16["zeroserve_tokens_per_s"] / c1["zeroserve_tokens_per_s"]
    ratio = min(c1["ratio"], c16["ratio"])
    return {
        "bench": "llm",
        "ratio": ratio,
        "goal": GOAL,
        "met": ratio >= GOAL and scaling >= SCALING_GOAL,
        "c1": c1,
        "c16": c16,
        "c16_over_c1": round(scaling, 2),
        "scaling_goal": SCALING_GOAL,
        "first_answer_cold_cache_s": round(starts["cold_cache"], 1),
        "first_answer_warm_cache_s": round(starts["warm_cache"], 1),
        "max_tokens": MAX_TOKENS,
    }


def serve_both(
    stack: contextlib.ExitStack, scratch: Path, folder: Path, env: dict[str, str]
) -> dict[str, str]:
    """zeroserve (activator, warm cache, started by a first request) and vLLM's own server."""
    ports = {"zeroserve": free_port(), "vllm": free_port()}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    zeroserve = [sys.executable, "-m", "zeroserve", "serve", str(SAMPLE / "model.py")]
    zeroserve += ["--port", str(ports["zeroserve"]), "--no-access-log"]
    native = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder)]
    native += ["--served-model-name", MODEL, "--port", str(ports["vllm"]), *engine_args()]
    native += ["--host", "127.0.0.1", "--disable-uvicorn-access-log"]
    cache_env = {**env, "ZEROSERVE_CACHE__ROOT": str(scratch / "cache")}
    completions = {
        "zeroserve": f"{urls['zeroserve']}/openai/v1/completions",
        "vllm": f"{urls['vllm']}/v1/completions",
    }
    for name, command in (("zeroserve", zeroserve), ("vllm", native)):
        ready = f"{urls[name]}/v1/models" if name == "vllm" else f"{urls[name]}/v2/health/live"
        log = scratch / f"{name}-serve.log"
        stack.enter_context(running(command, ready, log, timeout=ENGINE_START_S, env=cache_env))
        warm = {"model": MODEL, "prompt": "Hello", "max_tokens": 4}
        httpx.post(completions[name], json=warm, timeout=ENGINE_START_S).raise_for_status()
    return completions


if __name__ == "__main__":
    print(json.dumps(main()))
