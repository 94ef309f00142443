"""The OpenAI plug-in's part of the predictor contract: which classes answer its routes."""

from __future__ import annotations

import inspect

from zeroserve.errors import SpecError

OPENAI_METHODS = ("create_completion", "create_chat_completion")


def answers_openai(cls: type, owner: str) -> bool:
    """Whether the class answers OpenAI's completion routes: both methods, both ``async def``."""
    found = [name for name in OPENAI_METHODS if callable(getattr(cls, name, None))]
    if not found:
        return False
    if len(found) < len(OPENAI_METHODS) or not all(
        inspect.iscoroutinefunction(getattr(cls, name)) for name in found
    ):
        raise SpecError(
            f"{owner} answers OpenAI routes, so it needs both `async def create_completion"
            "(self, request, raw_request)` and `async def create_chat_completion(self, "
            "request, raw_request)`; subclass zeroserve.predictors.vllm.VLLMPredictor for vLLM"
        )
    return True
