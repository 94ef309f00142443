"""The OpenAI plug-in in the local activator: which model an OpenAI request is for.

OpenAI's routes name the model in the body (``"model"``), not in the path; the activator asks
``OpenAIRouting`` and forwards to that model's workers. What cannot be routed is answered in
OpenAI's error shape, as OpenAI and vLLM answer it.
"""

from __future__ import annotations

from typing import Any

import orjson

from zeroserve.errors import openai_error_body

ROUTES = "/openai/v1/"
MODEL_LIST = "/openai/v1/models"


class OpenAIRouting:
    """Routes ``/openai/v1/*`` requests among the models that answer OpenAI's routes."""

    def __init__(self, served: list[str]) -> None:
        self.served = served

    @staticmethod
    def routed(path: str) -> bool:
        """Whether a request on ``path`` goes to a model chosen by its body."""
        return path.startswith(ROUTES) and path != MODEL_LIST

    def model_list(self) -> dict[str, Any]:
        """The body of ``GET /openai/v1/models``."""
        data = [{"id": name, "object": "model", "owned_by": "zeroserve"} for name in self.served]
        return {"object": "list", "data": data}

    def model_for(
        self, body: bytes | bytearray, method: bytes = b"POST"
    ) -> tuple[str, None] | tuple[None, tuple[int, dict[str, Any]]]:
        """The model named by the body (the only one when it names none), or the status and
        OpenAI-shaped body to answer instead (405 for a method other than POST: every routed
        OpenAI route takes a body)."""
        if method != b"POST":
            message = f"{method.decode(errors='replace')} is not allowed here; send a POST"
            return None, (405, openai_error_body(message, "MethodNotAllowed", 405))
        try:
            fields = orjson.loads(body)
        except orjson.JSONDecodeError:
            fields = None
        if not isinstance(fields, dict):
            message = 'the body must be a JSON object, e.g. {"model": ..., "prompt": ...}'
            return None, (400, openai_error_body(message, "BadRequestError", 400))
        served = self.served
        name = fields.get("model") or (served[0] if len(served) == 1 else "")
        if name in served:
            return str(name), None
        if name:
            message = (
                f"The model `{name}` does not exist here; models: {', '.join(served) or 'none'}"
            )
            return None, (404, openai_error_body(message, "NotFoundError", 404, "model"))
        message = f'name the model in the body\'s "model": one of {", ".join(served)}'
        return None, (400, openai_error_body(message, "BadRequestError", 400, "model"))
