"""The predictor contract: every hook a ``@predictor`` class may define, checked at decoration.

==================================  ========  ================================================
hook                                needed    form, and when zeroserve calls it
==================================  ========  ================================================
``predict(instances, **options)``   yes       ``def`` or ``async def``; type hints on its
                                              parameters are the request schema; each request
``load(model_dir)`` / ``load()``    with      ``def`` (runs in a thread) or ``async def`` (on
                                    model_uri the server's loop); once, before readiness
``warmup()``                        no        plain ``def``, no arguments; after ``load()``
``close()``                         no        ``def`` or ``async def``, no arguments; at stop
``healthy()``                       no        ``async def`` or ``def`` returning a bool, no
                                              arguments; asked by every readiness check and
                                              every 2 s once ready: False, a raise or (async)
                                              no answer in 10 s replaces the worker
``check_request(instances, **o)``   no        plain ``def`` taking what predict() takes;
                                              per request, before batching: raise
                                              ``InvalidPayload`` for what cannot be predicted
``v2_metadata()``                   no        plain ``def``: ``{"inputs": [...], "outputs":
                                              [...]}`` for v2 model metadata, after load()
``preimport_modules``               no        a class attribute: module names the model host
                                              imports before it forks workers
protocol plug-ins                   no        e.g. OpenAI's ``create_completion`` and
                                              ``create_chat_completion`` (``zeroserve.llm``)
==================================  ========  ================================================

``check_contract`` checks each hook it finds (callable, sync or async as allowed, arity) and
raises ``SpecError`` with the fix; the runtime then calls the hooks without further checks.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zeroserve.errors import SpecError
from zeroserve.llm.openai_contract import answers_openai

NO_ARGUMENTS_HOOKS = ("close", "healthy", "v2_metadata")


@dataclass(frozen=True)
class Hooks:
    """What the checks found: how load() is called, and which protocol plug-ins apply."""

    takes_model_dir: bool
    openai: bool


def check_contract(cls: type, owner: str, settings: dict[str, Any]) -> Hooks:
    """Check every optional hook ``cls`` defines; SpecError naming the fix for the first misuse."""
    takes_model_dir = _check_load(cls, owner, settings)
    _check_warmup(cls, owner)
    for name in NO_ARGUMENTS_HOOKS:
        _check_no_arguments(cls, owner, name)
    _check_preimport_modules(cls, owner)
    return Hooks(takes_model_dir=takes_model_dir, openai=answers_openai(cls, owner))


def _required(method: Callable[..., Any]) -> list[inspect.Parameter]:
    """The parameters after ``self`` that a call must fill."""
    return [
        p
        for p in list(inspect.signature(method).parameters.values())[1:]
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]


def _check_load(cls: type, owner: str, settings: dict[str, Any]) -> bool:
    """Check load()'s arity; return whether it takes the model folder."""
    load = getattr(cls, "load", None)
    if load is None:
        if settings.get("model_uri"):
            raise SpecError(
                f"class {owner} declares model_uri but has no load(); add "
                "`def load(self, model_dir: Path) -> None:` to read the model from model_dir"
            )
        return False
    if not callable(load):
        raise SpecError(f"{owner}.load must be a method, not {type(load).__name__}")
    if len(_required(load)) > 1:
        raise SpecError(
            f"{owner}.load takes {len(_required(load))} required arguments; it is called as "
            "load(model_dir) or load(): `def load(self, model_dir: Path) -> None`"
        )
    takes_dir = len(inspect.signature(load).parameters) > 1
    if settings.get("model_uri") and not takes_dir:
        raise SpecError(
            f"class {owner} declares model_uri, so load() receives the model folder: "
            "`def load(self, model_dir: Path) -> None`"
        )
    return takes_dir


def _check_warmup(cls: type, owner: str) -> None:
    warmup = getattr(cls, "warmup", None)
    if warmup is None:
        return
    if not callable(warmup) or _required(warmup) or inspect.iscoroutinefunction(warmup):
        raise SpecError(
            f"{owner}.warmup must be a plain `def warmup(self) -> None` with no arguments"
        )


def _check_no_arguments(cls: type, owner: str, name: str) -> None:
    """``close`` and ``healthy``: methods (plain or async) called with no arguments."""
    method = getattr(cls, name, None)
    if method is None:
        return
    form = f"`async def {name}(self)` or `def {name}(self)`"
    if not callable(method):
        raise SpecError(f"{owner}.{name} must be a method: {form}, not {type(method).__name__}")
    if _required(method):
        raise SpecError(f"{owner}.{name} is called with no arguments: {form}")


def _check_preimport_modules(cls: type, owner: str) -> None:
    names = getattr(cls, "preimport_modules", ())
    if isinstance(names, str) or not all(isinstance(name, str) for name in names):
        raise SpecError(
            f"{owner}.preimport_modules must be a tuple of module names, e.g. "
            '`preimport_modules = ("torch", "transformers")`'
        )
