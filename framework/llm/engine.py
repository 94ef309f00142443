"""``LLMEngine``: the vLLM engine settings an LLM predictor declares on ``@predictor(llm=...)``.

Plain data (it imports no vLLM): the spec carries it, the local runtime starts the engine with it
and the Kubernetes target writes it into the manifest.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from zeroserve.spec.fields import QUANTITY, PositiveFloat, PositiveInt


class LLMEngine(BaseModel):
    """vLLM engine arguments of an LLM predictor (``zeroserve.predictors.vllm.VLLMPredictor``).

    The same arguments start the engine locally and are written into the rendered manifest
    (``ZEROSERVE_VLLM_ARGS``), where a platform team can tune them without touching the code.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_model_len: PositiveInt | None = None  # None: the model's own context length
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.9
    tensor_parallel_size: PositiveInt = 1
    enforce_eager: bool = False
    max_num_seqs: PositiveInt | None = None  # None: vLLM's default for the hardware
    extra_args: tuple[str, ...] = ()  # any other vLLM argument, e.g. ("--seed", "1")
    startup_timeout_s: PositiveFloat = 900.0  # engine start allowed before a pod is restarted
    shm_size: str = "2Gi"  # the memory-backed /dev/shm of the pod (tensor-parallel workers)
    # Idle seconds before the engine sleeps (vLLM's sleep mode, level 1: weights to host memory,
    # the GPU's memory freed) until the next request wakes it; shorter than scale_to_zero_after.
    # None: never. Skipped, with one log line, where vLLM has no sleep mode (on a CPU).
    sleep_after: PositiveFloat | None = None

    @field_validator("shm_size")
    @classmethod
    def _shm_is_quantity(cls, value: str) -> str:
        if not QUANTITY.match(value):
            raise ValueError("must be a Kubernetes quantity such as shm_size='2Gi'")
        return value

    def vllm_args(self) -> list[str]:
        """These settings as ``vllm serve`` arguments."""
        args = ["--dtype", self.dtype, "--tensor-parallel-size", str(self.tensor_parallel_size)]
        args += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        if self.max_model_len is not None:
            args += ["--max-model-len", str(self.max_model_len)]
        if self.max_num_seqs is not None:
            args += ["--max-num-seqs", str(self.max_num_seqs)]
        if self.enforce_eager:
            args.append("--enforce-eager")
        return [*args, *self.extra_args]
