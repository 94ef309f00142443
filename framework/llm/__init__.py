"""LLMs: the engine settings, KServe's OpenAI routes for a predictor, vLLM's compatibility.

With ``predictors/vllm.py`` the only place that knows vLLM; vLLM is imported lazily, inside.
"""
