"""The ``@predictor`` decorator: a class with ``predict`` becomes a served model."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from zeroserve.contract import check_contract
from zeroserve.errors import SpecError
from zeroserve.spec.schema import PredictSignature
from zeroserve.spec.spec import PredictorSpec, build_spec, name_from_class

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
    with a type hint on ``instances``; the optional hooks are listed in ``zeroserve.contract``.
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
    hooks = check_contract(cls, owner, settings)
    fields = {"name": name_from_class(owner), **settings}
    spec = build_spec(owner, fields)
    if spec.batching is not None and signature.instances_schema().get("type") != "array":
        raise SpecError(
            f"{owner} declares batching, so requests are concatenated into one list: annotate "
            f"predict's first argument as a list, e.g. `{signature.instances.name}: "
            "list[list[float]]`, and return one result per instance"
        )
    declaration = Declaration(spec, signature, hooks.takes_model_dir, hooks.openai)
    setattr(cls, SPEC_ATTRIBUTE, declaration)
    return cls
