"""``python -m bench [NAME ...]``: run benchmarks, each in its own process, and print a table."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

from rich.console import Console
from rich.table import Table

BENCHMARKS = (
    "overhead",
    "batching",
    "coldstart",
    "scale_from_zero",
    "proxy_choice",
    "builtins",
    "peers",
)
NEEDS_VLLM = ("llm",)  # run where vLLM is installed: tox -e llm, or python -m bench llm there
NEEDS_GPU = ("llm_gpu",)  # an NVIDIA GPU and vLLM's CUDA build: an 8B Llama from zero
NEEDS_RAY = ("ray",)  # run where Ray is installed: the tox env ray, or python -m bench ray there


def run(name: str) -> dict[str, object]:
    """Run ``bench.NAME`` in a fresh interpreter, echo its output, return its last JSON line."""
    process = subprocess.run(
        [sys.executable, "-m", f"bench.{name}"], capture_output=True, text=True, check=False
    )
    sys.stdout.write(process.stdout)
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        sys.stderr.write(process.stderr[-4000:])
        return {"bench": name, "ratio": None, "goal": None, "met": False, "error": "failed"}
    return dict(json.loads(lines[-1]))


def main(argv: list[str]) -> int:
    names = argv or [
        *BENCHMARKS,
        *(NEEDS_VLLM if importlib.util.find_spec("vllm") else ()),
        *(NEEDS_RAY if importlib.util.find_spec("ray") else ()),
        *(NEEDS_GPU if importlib.util.find_spec("vllm") and shutil.which("nvidia-smi") else ()),
    ]
    known = (*BENCHMARKS, *NEEDS_VLLM, *NEEDS_RAY, *NEEDS_GPU)
    unknown = [name for name in names if name not in known]
    if unknown:
        print(
            f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    table = Table("benchmark", "ratio", "goal", "met")
    results = [run(name) for name in names]
    for result in results:
        table.add_row(
            str(result["bench"]),
            str(result["ratio"]),
            str(result["goal"]),
            "yes" if result["met"] else "NO",
        )
    Console().print(table)
    return 0 if all(result["met"] for result in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
