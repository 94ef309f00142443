"""LLM cold starts on a GPU: an 8B Llama from zero, from asleep, and its throughput, against vLLM.

Run on a machine with an NVIDIA GPU and vLLM's CUDA build (nothing is downloaded):
    python -m bench.llm_gpu [SECONDS]       (or python -m bench llm_gpu)
SECONDS (default 900) bounds the run: a round that would not fit is left out and said so. The
figures so far go to BENCH_OUT/llm_gpu.jsonl after each step, with the servers' logs; with
BENCH_SCRATCH the model is built there once and used again by later runs.

The model has Llama-3-8B's shape (32 layers, hidden 4096, 8 KV heads, vocabulary 128,256) and
random bf16 weights (16 GB), made here on the GPU with the tiny-llm sample's tokenizer; it is
pushed to a local store (``file://``) and filled into zeroserve's cold-start cache once, so every
start below reads the cache's verified folder (the page cache warm). Measured, alternately:
- ``first_token_from_zero_s``: `zeroserve serve` up, its model host done pre-importing, the model
  at zero; one completion of one token (goal: median at most 4 s);
- ``wake_to_first_token_s``: the same model after ``sleep_after`` idle seconds (its engine asleep:
  weights in host memory, GPU memory freed); one token (goal: median at most 1 s);
- ``vllm_native_start_s``: vLLM's own OpenAI server, same engine arguments, process start to its
  first answer (vLLM's compile cache warm for both: the first start, which fills it, is reported
  apart);
- generated tokens/s at 1 and 32 clients through zeroserve and through vLLM's server (goal:
  zeroserve / vLLM at least 0.95 at both).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._process import free_port, running
from bench.llm import tokens_per_second

ROOT = Path(__file__).resolve().parent.parent
MODEL = "llama-8b"
# BENCH_LLM_GPU_TINY=1: the same steps on the tiny-llm sample (on a CPU: a rehearsal of the run)
TINY = bool(os.environ.get("BENCH_LLM_GPU_TINY"))
SHAPE = {
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
}
LAYERS_PER_SHARD = 4
ENGINE: dict[str, Any] = {"max_model_len": 4096, "dtype": "bfloat16", "max_num_seqs": 64}
if TINY:
    ENGINE = {"max_model_len": 512, "dtype": "float32", "max_num_seqs": 32, "enforce_eager": True}
SLEEP_AFTER, SCALE_TO_ZERO_AFTER = 3.0, 10.0
FROM_ZERO_GOAL_S, WAKE_GOAL_S, THROUGHPUT_GOAL = 4.0, 1.0, 0.95
CONCURRENCY = (1, 32)
ROUND_SECONDS, MAX_TOKENS = 6.0, 128
START_S = 600.0
ONE_TOKEN = {"model": MODEL, "prompt": "Hello", "max_tokens": 1}
ENV = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
MODEL_FILE = """\
from zeroserve import LLMEngine
from zeroserve.predictors.vllm import vllm_predictor

Llama8B = vllm_predictor(
    {name!r}, {uri!r}, llm=LLMEngine(**{engine!r}, sleep_after={sleep}),
    gpu=1, scale_to_zero_after={zero},
)
"""


def build(folder: Path, store: Path, cache: Path) -> dict[str, Any]:
    """Make the model (in a child process, which frees the GPU), push it, fill the cache; a
    version pushed by an earlier run into the same scratch folder is used again."""
    from zeroserve.coldstart import ModelCache, preload, push

    reference = f"file://{store}/{MODEL}@v1"
    if (store / MODEL / "v1").is_dir():
        return {"entry": str(preload(reference, ModelCache(cache, 64 * 1024**3)).path)}
    started = time.perf_counter()
    if TINY:
        sample = str(ROOT / "samples" / "tiny-llm" / "build.py")
        subprocess.run([sys.executable, sample, str(folder)], check=True)
    else:
        subprocess.run([sys.executable, "-m", "bench.llm_gpu", "--build", str(folder)], check=True)
    built = time.perf_counter()
    push(folder, f"file://{store}", name=MODEL, version="v1")
    pushed = time.perf_counter()
    shutil.rmtree(folder)
    lease = preload(reference, ModelCache(cache, 64 * 1024**3))
    return {
        "build_s": round(built - started, 1),
        "push_s": round(pushed - built, 1),
        "cache_fill_s": round(time.perf_counter() - pushed, 1),
        "entry": str(lease.path),
    }


def build_weights(folder: Path) -> None:
    """Random bf16 weights in Llama-3-8B's shape, made on the GPU, in safetensors shards."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    folder.mkdir(parents=True, exist_ok=True)
    runpy.run_path(str(ROOT / "samples" / "tiny-llm" / "build.py"))["build_tokenizer"](folder)
    config = LlamaConfig(**SHAPE, bos_token_id=0, eos_token_id=1, tie_word_embeddings=False)
    config.torch_dtype = "bfloat16"
    config.architectures = ["LlamaForCausalLM"]  # else vLLM takes it for a pooling LlamaModel
    config.save_pretrained(folder)
    generator = torch.Generator(device="cuda").manual_seed(0)

    def random(*shape: int) -> Any:
        made = torch.randn(shape, generator=generator, device="cuda", dtype=torch.bfloat16)
        return (made * 0.02).cpu()

    hidden, inner, vocab = SHAPE["hidden_size"], SHAPE["intermediate_size"], SHAPE["vocab_size"]
    kv = hidden // SHAPE["num_attention_heads"] * SHAPE["num_key_value_heads"]
    groups: list[dict[str, Any]] = [{"model.embed_tokens.weight": random(vocab, hidden)}]
    for first in range(0, SHAPE["num_hidden_layers"], LAYERS_PER_SHARD):
        group = {}
        for layer in range(first, first + LAYERS_PER_SHARD):
            prefix = f"model.layers.{layer}."
            shapes = {
                "self_attn.q_proj": (hidden, hidden),
                "self_attn.k_proj": (kv, hidden),
                "self_attn.v_proj": (kv, hidden),
                "self_attn.o_proj": (hidden, hidden),
                "mlp.gate_proj": (inner, hidden),
                "mlp.up_proj": (inner, hidden),
                "mlp.down_proj": (hidden, inner),
            }
            group.update({f"{prefix}{name}.weight": random(*s) for name, s in shapes.items()})
            for norm in ("input_layernorm", "post_attention_layernorm"):
                group[f"{prefix}{norm}.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
        groups.append(group)
    groups.append(
        {
            "model.norm.weight": torch.ones(hidden, dtype=torch.bfloat16),
            "lm_head.weight": random(vocab, hidden),
        }
    )
    weight_map, total = {}, 0
    for index, group in enumerate(groups, start=1):
        name = f"model-{index:05d}-of-{len(groups):05d}.safetensors"
        save_file(group, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(group, name))
        total += sum(tensor.numel() * tensor.element_size() for tensor in group.values())
    index_file = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index_file))


class Run:
    """The figures so far, written to ``llm_gpu.jsonl`` (and printed) after each step, so a run
    cut short still leaves what it measured; and the deadline each step is checked against."""

    def __init__(self, budget_s: float, out: Path) -> None:
        self.deadline = time.monotonic() + budget_s
        self.out = out
        self.figures: dict[str, Any] = {"skipped": []}

    def fits(self, step: str, needs_s: float) -> bool:
        if time.monotonic() + needs_s < self.deadline:
            return True
        self.figures["skipped"].append(step)
        return False

    def note(self, **figures: Any) -> None:
        self.figures.update(figures)
        line = json.dumps({"bench": "llm_gpu", "partial": True, **self.figures})
        print(line, flush=True)
        with (self.out / "llm_gpu.jsonl").open("a") as sink:
            sink.write(line + "\n")


def status_of(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/zeroserve/status", timeout=10).json()["models"][MODEL])


def wait_for(url: str, state: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while status_of(url)["state"] != state:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{MODEL} not {state} after {timeout} s: {status_of(url)}")
        time.sleep(0.1)
    if state == "zero":  # the engine's memory is back once its processes are gone
        while gpu_memory_used_mib() > 4096 and time.monotonic() < deadline:
            time.sleep(0.2)


def gpu_memory_used_mib() -> int:
    if shutil.which("nvidia-smi") is None:
        return 0
    query = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
    return int(subprocess.run(query, capture_output=True, text=True).stdout.split()[0])


def can_sleep(url: str) -> bool:
    """Whether the last start's engine can sleep (its timeline's ``sleep_mode`` mark)."""
    return any(p["name"] == "sleep_mode" and p.get("available") for p in last_start_phases(url))


def woken_s(url: str, completions: str) -> list[float]:
    """Seconds to a token once the engine is asleep (none where it cannot sleep)."""
    if not can_sleep(url):
        return []
    wait_for(url, "asleep", 60)
    return [one_token_s(completions)]


def one_token_s(base: str) -> float:
    started = time.perf_counter()
    httpx.post(base, json=ONE_TOKEN, timeout=START_S).raise_for_status()
    return time.perf_counter() - started


def last_start_phases(url: str) -> list[dict[str, Any]]:
    """The phases of the last start's worker timeline, as the status has them."""
    last = status_of(url).get("last_cold_start") or {}
    return list((last.get("worker_timeline") or {}).get("phases", []))


def phases_of(url: str) -> dict[str, float]:
    """The engine's phases in the last start's timeline (seconds each)."""
    phases = last_start_phases(url)
    return {
        p["name"]: round(p["end_s"] - p["start_s"], 2) for p in phases if p.get("end_s") is not None
    }


def throughput(completions: str) -> dict[int, float]:
    """Generated tokens/s at each concurrency, one round each."""
    rates = {}
    for clients in CONCURRENCY:
        rate = tokens_per_second(completions, clients, ROUND_SECONDS, MODEL, MAX_TOKENS)
        rates[clients] = round(asyncio.run(rate), 1)
    return rates


def native_server(stack: contextlib.ExitStack, entry: str, env: dict[str, str], log: Path) -> Any:
    """vLLM's own server on the cache's folder: (seconds to its first answer, completions URL)."""
    from zeroserve import LLMEngine

    port = free_port()
    completions = f"http://127.0.0.1:{port}/v1/completions"
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", entry]
    command += ["--served-model-name", MODEL, *LLMEngine(**ENGINE).vllm_args()]
    command += ["--host", "127.0.0.1", "--port", str(port), "--disable-uvicorn-access-log"]

    def answered() -> bool:
        return httpx.post(completions, json=ONE_TOKEN, timeout=START_S).status_code == 200

    started = time.perf_counter()
    stack.enter_context(running(command, answered, log, timeout=START_S, env=env))
    return time.perf_counter() - started, completions


def measure(run: Run, scratch: Path, entry: str, uri: str) -> None:
    env = {**os.environ, **ENV, "ZEROSERVE_CACHE__ROOT": str(scratch / "cache")}
    env["ZEROSERVE_CACHE__BUDGET"] = str(64 * 1024**3)
    model_file = scratch / "model.py"
    model_file.write_text(
        MODEL_FILE.format(
            name=MODEL, uri=uri, engine=ENGINE, sleep=SLEEP_AFTER, zero=SCALE_TO_ZERO_AFTER
        )
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    completions = f"{url}/openai/v1/completions"
    command = [sys.executable, "-m", "zeroserve", "serve", str(model_file), "--port", str(port)]

    def host_up() -> bool:  # the model host said hello (done pre-importing), the model at zero
        status = httpx.get(f"{url}/zeroserve/status", timeout=10).json()
        return status["host_timeline"] is not None and status["models"][MODEL]["state"] == "zero"

    ours: dict[str, list[float]] = {"from_zero": [], "wake": [], "native": []}
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            running(command + ["--no-access-log"], host_up, scratch / "zeroserve.log", 300, env)
        )
        host = httpx.get(f"{url}/zeroserve/status", timeout=10).json()
        run.note(fork=host["fork"], fork_off_reason=host["fork_off_reason"])
        run.note(first_token_from_zero_compile_cold_s=round(one_token_s(completions), 2))
        run.note(phases_compile_cold=phases_of(url), sleep_mode=can_sleep(url))
        ours["wake"] += woken_s(url, completions)
        run.note(zeroserve_tokens_per_s=throughput(completions))
        for round_index in range(3):
            wait_for(url, "zero", 120)
            if run.fits("vllm native start", 150):
                with contextlib.ExitStack() as native:
                    log = scratch / f"vllm-{round_index}.log"
                    seconds, theirs = native_server(native, entry, env, log)
                    ours["native"].append(seconds)
                    if round_index == 0:
                        run.note(vllm_tokens_per_s=throughput(theirs))
                run.note(vllm_native_start_rounds_s=[round(s, 1) for s in ours["native"]])
            if not run.fits("from zero", 90):
                break
            ours["from_zero"].append(one_token_s(completions))
            run.note(phases_warm=phases_of(url))
            ours["wake"] += woken_s(url, completions)
            run.note(
                first_token_from_zero_rounds_s=[round(s, 2) for s in ours["from_zero"]],
                wake_to_first_token_rounds_s=[round(s, 3) for s in ours["wake"]],
            )


def summary(figures: dict[str, Any]) -> dict[str, Any]:
    """The final line: medians, ratios and whether each goal is met."""
    zero = figures.get("first_token_from_zero_rounds_s") or []
    wake = figures.get("wake_to_first_token_rounds_s") or []
    native = figures.get("vllm_native_start_rounds_s") or []
    theirs = figures.get("vllm_tokens_per_s") or {}
    mine = figures.get("zeroserve_tokens_per_s") or {}
    ratios = {f"c{c}": round(mine[c] / theirs[c], 3) for c in CONCURRENCY if c in mine and theirs}
    ratio = min(ratios.values()) if len(ratios) == len(CONCURRENCY) else 0.0
    from_zero = round(statistics.median(zero), 2) if zero else None
    woken = round(statistics.median(wake), 3) if wake else None
    met = from_zero is not None and from_zero <= FROM_ZERO_GOAL_S
    met = met and woken is not None and woken <= WAKE_GOAL_S and ratio >= THROUGHPUT_GOAL
    return {
        "bench": "llm_gpu",
        "ratio": ratio,
        "goal": THROUGHPUT_GOAL,
        "met": met,
        "first_token_from_zero_s": from_zero,
        "from_zero_goal_s": FROM_ZERO_GOAL_S,
        "wake_to_first_token_s": woken,
        "wake_goal_s": WAKE_GOAL_S,
        "vllm_native_start_s": round(statistics.median(native), 1) if native else None,
        "throughput_ratios": ratios,
        **{k: v for k, v in figures.items() if k not in ("bench", "partial")},
    }


def main(budget_s: float) -> dict[str, Any]:
    out = Path(os.environ.get("BENCH_OUT", ".")).resolve()
    run = Run(budget_s, out)
    # BENCH_SCRATCH: a folder kept between runs (the 16 GB model is built once); else a temporary
    with contextlib.ExitStack() as stack:
        kept = os.environ.get("BENCH_SCRATCH")
        scratch = Path(kept) if kept else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        store = scratch / "store"
        built = build(scratch / "built", store, scratch / "cache")
        entry = built.pop("entry")
        run.note(**built, model_bytes=sum(f.stat().st_size for f in Path(entry).rglob("*")))
        try:
            measure(run, scratch, entry, f"file://{store}/{MODEL}@v1")
        except Exception as exc:  # keep what was measured; say what stopped the run
            run.note(error=f"{type(exc).__name__}: {str(exc)[-2000:]}")
        finally:
            for log in sorted(scratch.glob("*.log")):
                shutil.copyfile(log, out / log.name)
    return summary(run.figures)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--build"]:
        build_weights(Path(sys.argv[2]))
    else:
        print(json.dumps(main(float(sys.argv[1]) if len(sys.argv) > 1 else 900.0)))
