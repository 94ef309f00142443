"""Whether a candidate model accepts every request its baseline accepts, field by field.

Both sides are the JSON schemas ``GET /zeroserve/models/NAME/schema`` serves (pydantic's, from
``predict``'s type hints). A change is breaking where the candidate refuses something the
baseline took: a type narrowed (number to integer, a type dropped), an array's or string's
bounds tightened, a number's range tightened, an enum value dropped, a new required field, a
field dropped where no others are allowed. Widening is never breaking. Each finding names its
path in the request: ``instances[*][*]``, ``instances[*].petal_width``, ``parameters.top_k``.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]
LOWER_BOUNDS = ("minItems", "minLength", "minimum", "exclusiveMinimum", "minProperties")
UPPER_BOUNDS = ("maxItems", "maxLength", "maximum", "exclusiveMaximum", "maxProperties")
ANY_OF = ("anyOf", "oneOf")


def breaking_changes(baseline: Schema, candidate: Schema) -> list[str]:
    """Each way a request the baseline accepts may be refused by the candidate, by path."""
    found: list[str] = []
    _compare(
        _Side(baseline.get("instances", {}), baseline.get("instances", {})),
        _Side(candidate.get("instances", {}), candidate.get("instances", {})),
        "instances",
        found,
    )
    before, after = baseline.get("parameters") or {}, candidate.get("parameters") or {}
    for name, schema in before.items():
        if name not in after:
            found.append(f"parameters.{name}: the candidate no longer takes this parameter")
        else:
            _compare(
                _Side(schema, schema), _Side(after[name], after[name]), f"parameters.{name}", found
            )
    return found


class _Side:
    """A schema node and the root its ``$ref``s point into."""

    def __init__(self, node: Any, root: Schema) -> None:
        self.root = root
        self.node = self._resolved(node)

    def _resolved(self, node: Any) -> Any:
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 32:
            target: Any = self.root
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            node, seen = {**target, **{k: v for k, v in node.items() if k != "$ref"}}, seen + 1
        return node

    def child(self, node: Any) -> _Side:
        return _Side(node, self.root)

    def types(self) -> set[str] | None:
        """The JSON types this node allows; None for any."""
        node = self.node
        if node is True or node == {} or not isinstance(node, dict):
            return None
        kind = node.get("type")
        if kind is None:
            return None
        return set(kind) if isinstance(kind, list) else {kind}


def _compare(before: _Side, after: _Side, path: str, found: list[str]) -> None:
    old, new = before.node, after.node
    if new is True or new == {} or not isinstance(new, dict):
        return  # the candidate takes anything here
    if old is False:
        return  # the baseline took nothing here
    if isinstance(old, dict) and any(key in old for key in ANY_OF):
        for branch in _branches(old):
            _compare(before.child(branch), after, path, found)
        return
    if any(key in new for key in ANY_OF):
        if not any(_accepts(before, after.child(branch), path) for branch in _branches(new)):
            found.append(f"{path}: no alternative of the candidate's type takes the baseline's")
        return
    if not isinstance(old, dict):
        return
    _compare_types(before, after, path, found)
    _compare_bounds(old, new, path, found)
    if "enum" in new:
        dropped = [value for value in old.get("enum", []) if value not in new["enum"]]
        if dropped or "enum" not in old:
            found.append(f"{path}: the candidate takes only {new['enum']} (dropped {dropped})")
    _compare_items(before, after, path, found)
    _compare_properties(before, after, path, found)


def _branches(node: Schema) -> list[Any]:
    return [branch for key in ANY_OF for branch in node.get(key, [])]


def _accepts(before: _Side, after: _Side, path: str) -> bool:
    findings: list[str] = []
    _compare(before, after, path, findings)
    return not findings


def _compare_types(before: _Side, after: _Side, path: str, found: list[str]) -> None:
    old, new = before.types(), after.types()
    if new is None:
        return
    if old is None:
        found.append(f"{path}: the baseline took any value; the candidate takes {_text(new)}")
        return
    if "number" in new:
        new = new | {"integer"}  # every integer is a number
    narrowed = old - new
    if narrowed:
        now = _text(after.types() or set())
        found.append(
            f"{path}: the candidate no longer takes {_text(narrowed)} "
            f"(baseline {_text(old)}, candidate {now})"
        )


def _compare_bounds(old: Schema, new: Schema, path: str, found: list[str]) -> None:
    for key in LOWER_BOUNDS:
        if key in new and (key not in old or new[key] > old[key]):
            found.append(f"{path}: {key} raised from {old.get(key, 'none')} to {new[key]}")
    for key in UPPER_BOUNDS:
        if key in new and (key not in old or new[key] < old[key]):
            found.append(f"{path}: {key} lowered from {old.get(key, 'none')} to {new[key]}")


def _compare_items(before: _Side, after: _Side, path: str, found: list[str]) -> None:
    old, new = before.node, after.node
    if "items" in new:
        _compare(before.child(old.get("items", {})), after.child(new["items"]), f"{path}[*]", found)
    old_prefix, new_prefix = old.get("prefixItems", []), new.get("prefixItems", [])
    for index, schema in enumerate(new_prefix):
        baseline = old_prefix[index] if index < len(old_prefix) else old.get("items", {})
        _compare(before.child(baseline), after.child(schema), f"{path}[{index}]", found)


def _compare_properties(before: _Side, after: _Side, path: str, found: list[str]) -> None:
    old, new = before.node, after.node
    old_fields, new_fields = old.get("properties", {}), new.get("properties", {})
    for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
        found.append(f"{path}.{name}: a new required field")
    closed = new.get("additionalProperties") is False
    for name, schema in old_fields.items():
        if name in new_fields:
            _compare(before.child(schema), after.child(new_fields[name]), f"{path}.{name}", found)
        elif closed:
            found.append(f"{path}.{name}: the candidate refuses this field")


def _text(types: set[str]) -> str:
    return " or ".join(sorted(types))
