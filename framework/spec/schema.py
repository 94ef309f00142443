"""Request and response schemas derived from the type hints of a predictor's ``predict``.

The first parameter of ``predict`` (after ``self``) receives the instances: the v1 payload's
``instances`` list, or the v2 request's input tensor. Further parameters must have defaults; a
request may set them through its ``parameters`` object. Every value is validated with pydantic,
and a value that does not fit raises :class:`InvalidPayload` naming field, value and expected type.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import TypeAdapter, ValidationError

from zeroserve.errors import InvalidPayload, SpecError

# pydantic error types -> the type a client should have sent.
_EXPECTED = {
    "float_parsing": "number",
    "float_type": "number",
    "int_parsing": "integer",
    "int_type": "integer",
    "int_from_float": "integer",
    "bool_parsing": "boolean",
    "bool_type": "boolean",
    "string_type": "string",
    "list_type": "array",
    "tuple_type": "array",
    "dict_type": "object",
    "missing": "a value (the field is required)",
    "too_short": "a longer array",
    "too_long": "a shorter array",
}
_MAX_DETAILS = 10
MAX_NESTING = 64  # arrays/objects inside each other, where a type hint allows any depth


@dataclass(frozen=True)
class Parameter:
    """One validated parameter of ``predict``."""

    name: str
    adapter: TypeAdapter[Any]

    @functools.cached_property
    def any_depth(self) -> bool:
        """Whether the type admits values nested to any depth (``Any`` somewhere in it)."""
        return _admits_anything(self.adapter.json_schema())


@dataclass(frozen=True)
class PredictSignature:
    """What ``predict`` accepts and returns, built from its type hints."""

    instances: Parameter
    options: tuple[Parameter, ...]
    is_async: bool
    returns: TypeAdapter[Any] | None = None  # None: no return hint, or Any
    returns_text: str = "none"

    @classmethod
    def from_method(cls, owner: str, method: Callable[..., Any]) -> PredictSignature:
        """Read the signature of ``owner.predict``; raise SpecError with the fix if unusable."""
        params = list(inspect.signature(method).parameters.values())[1:]  # drop self
        example = "def predict(self, instances: list[list[float]]) -> list[int]"
        if not params or params[0].kind not in _POSITIONAL:
            raise SpecError(
                f"{owner}.predict must take the instances as its first argument after self, "
                f"e.g. `{example}`"
            )
        hints = _type_hints(owner, method)
        first = params[0]
        if first.name not in hints:
            raise SpecError(
                f"{owner}.predict({first.name}) has no type hint; zeroserve builds the request "
                f"schema from it. Annotate it, e.g. `{example}`, or use `list[Any]` to accept "
                "any JSON instances"
            )
        options = []
        for param in params[1:]:
            if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                continue
            if param.default is inspect.Parameter.empty:
                raise SpecError(
                    f"{owner}.predict parameter '{param.name}' needs a default value: only the "
                    "first parameter receives the instances; others are optional request "
                    f"parameters, e.g. `{param.name}: float = 0.5`"
                )
            adapter = TypeAdapter(hints.get(param.name, Any))
            options.append(Parameter(param.name, adapter))
        returns = hints.get("return", Any)
        return cls(
            instances=Parameter(first.name, TypeAdapter(hints[first.name])),
            options=tuple(options),
            is_async=inspect.iscoroutinefunction(method),
            returns=None if returns is Any else TypeAdapter(returns),
            returns_text="none" if returns is Any else _type_text(returns),
        )

    def check_result(self, result: object) -> str | None:
        """Why ``result`` does not fit the declared return type, or None when it does."""
        if self.returns is None:
            return None
        try:
            self.returns.validate_python(result)
        except ValidationError as exc:
            first = _detail("result", exc.errors()[0])
            return f"{first['field']}: {first['message']} (got {first['value']!r})"
        return None

    def bind_v1(self, body: object) -> dict[str, Any]:
        """Validate a v1 body ``{"instances": [...], "parameters": {...}}`` into call kwargs."""
        if not isinstance(body, Mapping) or "instances" not in body:
            raise InvalidPayload(
                'a v1 request body must be a JSON object with an "instances" list, e.g. '
                '{"instances": [[5.1, 3.5, 1.4, 0.2]]}',
                schema=self.instances_schema(),
            )
        return self._bind(body["instances"], body.get("parameters"), field="instances")

    def bind_v2(self, inputs: Mapping[str, Any], parameters: object) -> dict[str, Any]:
        """Validate v2 input tensors (name -> nested list) into call kwargs."""
        if len(inputs) == 1:
            ((name, value),) = inputs.items()
        elif self.instances.name in inputs:
            name, value = self.instances.name, inputs[self.instances.name]
        else:
            raise InvalidPayload(
                f"a v2 request for this model needs one input tensor, or one named "
                f"'{self.instances.name}'; got inputs {sorted(inputs)}"
            )
        return self._bind(value, parameters, field=f"inputs[{name}]")

    def instances_schema(self) -> dict[str, Any]:
        """JSON schema of the instances, shown to a client whose payload does not fit."""
        return self.instances.adapter.json_schema()

    def schemas(self) -> dict[str, Any]:
        """JSON schemas of the instances, each request parameter and the result (None: any)."""
        return {
            "instances": self.instances_schema(),
            "parameters": {option.name: option.adapter.json_schema() for option in self.options},
            "returns": None if self.returns is None else self.returns.json_schema(),
        }

    def _bind(self, instances: object, parameters: object, *, field: str) -> dict[str, Any]:
        kwargs = {self.instances.name: self._validate(self.instances, instances, field)}
        if parameters is None:
            return kwargs
        if not isinstance(parameters, Mapping):
            raise InvalidPayload('"parameters" must be a JSON object of named values')
        known = {option.name: option for option in self.options}
        for key, value in parameters.items():
            option = known.get(key)
            if option is None:
                raise InvalidPayload(
                    f'unknown parameter "{key}"; this model accepts: '
                    f"{', '.join(known) or 'no parameters'}"
                )
            kwargs[key] = self._validate(option, value, f"parameters.{key}")
        return kwargs

    def _validate(self, parameter: Parameter, value: object, field: str) -> Any:
        if parameter.any_depth and _deeper_than(value, MAX_NESTING):
            raise InvalidPayload(
                f"{field}: arrays or objects are nested more than {MAX_NESTING} levels deep; "
                "send flatter data",
                schema=parameter.adapter.json_schema(),
            )
        try:
            return parameter.adapter.validate_python(value)
        except ValidationError as exc:
            details = [_detail(field, error) for error in exc.errors()[:_MAX_DETAILS]]
            first = details[0]
            raise InvalidPayload(
                f"{first['field']}: {first['message']} (got {first['value']!r}, expected "
                f"{first['expected']}); {exc.error_count()} problem(s) in the request",
                details=details,
                schema=parameter.adapter.json_schema(),
            ) from None


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_COMBINATIONS = ("anyOf", "oneOf", "allOf")


def _admits_anything(schema: object) -> bool:
    """Whether a JSON schema has a part that takes any value (``{}`` or ``true``)."""
    if schema is True:
        return True
    if not isinstance(schema, dict):
        return False
    if not any(key in schema for key in ("type", "$ref", "enum", "const", *_COMBINATIONS)):
        return True
    children: list[object] = [schema.get("items"), schema.get("additionalProperties")]
    children += list(schema.get("prefixItems", [])) + list(schema.get("properties", {}).values())
    for key in _COMBINATIONS:
        children += list(schema.get(key, []))
    return any(_admits_anything(child) for child in children if child is not None)


def _deeper_than(value: object, limit: int) -> bool:
    """Whether lists and dicts in ``value`` are nested more than ``limit`` levels deep."""
    stack: list[tuple[list[Any] | dict[Any, Any], int]] = []
    if isinstance(value, list | dict):
        stack.append((value, 1))
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, list | dict))
    return False


def _type_text(hint: object) -> str:
    """``list[int]`` for a type hint, as a user wrote it."""
    if isinstance(hint, type) and not getattr(hint, "__args__", None):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _type_hints(owner: str, method: Callable[..., Any]) -> dict[str, Any]:
    try:
        return get_type_hints(method, include_extras=True)
    except Exception as exc:  # a forward reference that does not resolve, a typo in a hint
        raise SpecError(
            f"{owner}.predict has type hints that cannot be resolved ({exc}); import every type "
            "the hints name at module level"
        ) from None


def _detail(prefix: str, error: Any) -> dict[str, Any]:
    path = prefix + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
    )
    value = error.get("input")
    return {
        "field": path,
        "value": value if isinstance(value, str | int | float | bool | None) else repr(value)[:80],
        "expected": _EXPECTED.get(error["type"], error["type"]),
        "message": error["msg"],
    }
