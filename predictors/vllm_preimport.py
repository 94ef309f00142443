"""What vLLM's engine imports as it starts, imported here by the model host before it forks.

``VLLMPredictor.preimport_modules`` names this module: the host imports it once, so the worker it
forks for the model, and the engine core and CPU/GPU worker that forks in turn
(``zeroserve.predictors.vllm_start``), find these modules imported already. Without them a start
from zero imported about 1,100 modules after the fork (the engine, the model runner and loader,
attention backends, quantization configs, the OpenAI serving classes), about a second on 2 cores.

The list is vLLM 0.32's, taken from ``sys.modules`` in each engine process after a start, less
what the host had. A module that this build of vLLM lacks is skipped: the engine imports what it
needs anyway, only later.
"""

from __future__ import annotations

import contextlib
import importlib

from zeroserve.predictors.vllm_start import VLLM_HOMES, vllm_name

ENGINE_MODULES = (
    "vllm.entrypoints.launchers.api_server.entry",
    "vllm.engine.arg_utils",
    "vllm.v1.engine.async_llm",
    "vllm.v1.engine.core",
    "vllm.v1.executor.multiproc_executor",
    "vllm.v1.executor.uniproc_executor",
    "vllm.v1.worker.gpu_worker",
    "vllm.v1.worker.cpu_worker",
    "vllm.v1.worker.cpu_model_runner",
    "vllm.v1.attention.backends.cpu_attn",
    "vllm.model_executor.model_loader",
    "vllm.model_executor.models.llama",
    "vllm.model_executor.layers.quantization.compressed_tensors.compressed_tensors",
    "vllm.model_executor.layers.quantization.online.fp8",
    "vllm.model_executor.layers.quantization.online.int8",
    "vllm.entrypoints.openai.completion.serving",
    "vllm.entrypoints.openai.chat_completion.serving",
    "vllm.entrypoints.openai.responses.serving",
    "vllm.entrypoints.generate.api_router",
    "vllm.entrypoints.scale_out.factories",
    "vllm.renderers.hf",
    "vllm.transformers_utils.chat_templates.registry",
    "kserve.protocol.rest.openai.dataplane",
    "kserve.protocol.rest.openai.endpoints",
    "zeroserve.serving.materialize",
    "multiprocessing.popen_fork",
)

for _name in ENGINE_MODULES:
    with contextlib.suppress(ImportError):
        importlib.import_module(_name)
for _name in VLLM_HOMES:  # the server's pieces the predictor calls, where this vLLM keeps them
    with contextlib.suppress(ImportError):
        vllm_name(_name)
