"""The ``@predictor`` decorator: a class with ``predict`` becomes a served model."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from zeroserve.errors import SpecError
from zeroserve.schema import PredictSignature
from zeroserve.spec import PredictorSpec, build_spec, name_from_class

T = TypeVar("T", bound=type)

SPEC_ATTRIBUTE = "__zeroserve__"


@dataclass(frozen=True)
class Declaration:
    """What ``@predictor`` attaches to a class: its spec and its predict signature."""

    spec: PredictorSpec
    signature: PredictSignature
    takes_model_dir: bool
    openai: bool = False  # also served on KServe's OpenAI routes (create_completion, ...)


@overload
def predictor(cls: T, /) -> T: ...


@overload
def predictor(cls: None = None, /, **settings: Any) -> Callable[[T], T]: ...


def predictor(cls: T | None = None, /, **settings: Any) -> T | Callable[[T], T]:
    """Declare a class as a zeroserve predictor.

    Use it bare (``@predictor``) or with settings (``@predictor(name="iris", max_replicas=4)``);
    the settings are the fields of :class:`PredictorSpec`. The class needs ``predict(instances)``
    with a type hint on ``instances``; ``load(model_dir)`` and ``warmup()`` are optional.
    Every mistake raises :class:`SpecError` here, at decoration time.
    """
    if cls is not None:
        return _declare(cls, settings)

    def wrap(target: T) -> T:
        return _declare(target, settings)

    return wrap


def declaration_of(cls: type) -> Declaration | None:
    """The Declaration of a decorated class, or None for any other class."""
    found = cls.__dict__.get(SPEC_ATTRIBUTE)
    return found if isinstance(found, Declaration) else None


def spec_of(cls: type) -> PredictorSpec:
    """The PredictorSpec ``@predictor`` gave ``cls`` (or the decorated class it derives from)."""
    for klass in cls.__mro__:
        declaration = declaration_of(klass)
        if declaration is not None:
            return declaration.spec
    raise SpecError(f"{cls.__name__} is not decorated with @predictor")


def _declare(cls: T, settings: dict[str, Any]) -> T:
    if not inspect.isclass(cls):
        kind = type(cls).__name__
        raise SpecError(
            f"@predictor decorates a class, not a {kind} ({getattr(cls, '__name__', cls)!r}); "
            "write `class MyModel:` with a `def predict(self, instances: list[...]) -> list[...]`"
        )
    owner = cls.__name__
    predict = getattr(cls, "predict", None)
    if not callable(predict):
        raise SpecError(
            f"class {owner} has no predict() method; add e.g. "
            "`def predict(self, instances: list[list[float]]) -> list[int]: ...`"
        )
    signature = PredictSignature.from_method(owner, predict)
    takes_model_dir = _check_load(cls, owner, settings)
    _check_warmup(cls, owner)
    fields = {"name": name_from_class(owner), **settings}
    spec = build_spec(owner, fields)
    if spec.batching is not None and signature.instances_schema().get("type") != "array":
        raise SpecError(
            f"{owner} declares batching, so requests are concatenated into one list: annotate "
            f"predict's first argument as a list, e.g. `{signature.instances.name}: "
            "list[list[float]]`, and return one result per instance"
        )
    openai = _check_openai(cls, owner)
    setattr(cls, SPEC_ATTRIBUTE, Declaration(spec, signature, takes_model_dir, openai))
    return cls


OPENAI_METHODS = ("create_completion", "create_chat_completion")


def _check_openai(cls: type, owner: str) -> bool:
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
    params = [
        p
        for p in list(inspect.signature(load).parameters.values())[1:]
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if len(params) > 1:
        raise SpecError(
            f"{owner}.load takes {len(params)} required arguments; it is called as "
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
    required = [
        p
        for p in list(inspect.signature(warmup).parameters.values())[1:]
        if p.default is inspect.Parameter.empty
    ]
    if required or inspect.iscoroutinefunction(warmup):
        raise SpecError(
            f"{owner}.warmup must be a plain `def warmup(self) -> None` with no arguments"
        )
