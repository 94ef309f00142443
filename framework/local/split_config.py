"""Which versions answer a model name: ``--split``/``--shadow`` flags and ``Traffic`` declarations.

``--split iris=v1:90,v2:10`` routes the name ``iris`` to two served models by weight; ``--shadow
iris=v2`` mirrors each request for ``iris`` to ``v2``. A version names a served model: ``v1`` is
the model ``v1`` if one is served, else ``iris-v1``. A predictor declared with
``traffic=Traffic(route="iris", weight=10)`` is a version of ``iris`` too; the model named
``iris`` keeps the rest of the traffic. Every mistake is a ``UsageError`` naming the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from zeroserve.errors import UsageError
from zeroserve.spec.fields import DNS_LABEL
from zeroserve.spec.spec import PredictorSpec

SPLIT_FLAG = re.compile(r"^([^=\s]+)=(.+)$")
SPLIT_EXAMPLE = "--split iris=v1:90,v2:10"
SHADOW_EXAMPLE = "--shadow iris=v2"


@dataclass(frozen=True)
class VersionPlan:
    """One version of a route: its label, the served model that answers, its weight."""

    label: str
    model: str
    weight: int


@dataclass
class SplitPlan:
    """A route's versions as configured, checked against the served models."""

    route: str
    versions: list[VersionPlan] = field(default_factory=list)
    shadow: VersionPlan | None = None


def parse_split_flag(text: str) -> tuple[str, list[tuple[str, int]]]:
    """``iris=v1:90,v2:10`` as ``("iris", [("v1", 90), ("v2", 10)])``; UsageError otherwise."""
    match = SPLIT_FLAG.match(text.strip())
    if match is None:
        raise UsageError(f"--split {text!r}: write NAME=VERSION:WEIGHT,..., e.g. {SPLIT_EXAMPLE}")
    route, spec = match.groups()
    versions = []
    for part in spec.split(","):
        label, _, weight = part.strip().partition(":")
        if not label or not weight.strip().isdigit() or int(weight) > 100:
            raise UsageError(
                f"--split {text!r}: {part.strip()!r} is not VERSION:WEIGHT with a weight from 0 "
                f"to 100, e.g. {SPLIT_EXAMPLE}"
            )
        versions.append((label, int(weight)))
    labels = [label for label, _ in versions]
    if len(set(labels)) != len(labels):
        raise UsageError(f"--split {text!r}: a version is named twice")
    total = sum(weight for _, weight in versions)
    if total != 100:
        raise UsageError(f"--split {text!r}: the weights add up to {total}; make them add to 100")
    return route, versions


def parse_shadow_flag(text: str) -> tuple[str, str]:
    """``iris=v2`` as ``("iris", "v2")``; UsageError otherwise."""
    match = SPLIT_FLAG.match(text.strip())
    if match is None or "," in match.group(2) or ":" in match.group(2):
        raise UsageError(f"--shadow {text!r}: write NAME=VERSION, e.g. {SHADOW_EXAMPLE}")
    route, label = match.groups()
    return route, label


def plan_splits(
    split_flags: list[str], shadow_flags: list[str], specs: dict[str, PredictorSpec]
) -> list[SplitPlan]:
    """Every route with versions, from the flags (first) and the predictors' declarations."""
    plans: dict[str, SplitPlan] = {}
    for text in split_flags:
        route, versions = parse_split_flag(text)
        if route in plans:
            raise UsageError(f"--split names '{route}' twice; give each name one --split")
        plan = plans[route] = SplitPlan(_route_name(route, "--split"))
        plan.versions = [_version(route, label, weight, specs) for label, weight in versions]
    _add_declared(plans, specs)
    for text in shadow_flags:
        route, label = parse_shadow_flag(text)
        plan = plans.get(route) or _single(route, specs, plans)
        if plan.shadow is not None:
            raise UsageError(f"'{route}' has a shadow already ({plan.shadow.model}); give it one")
        plan.shadow = _version(route, label, 0, specs)
    for spec in specs.values():
        traffic = spec.traffic
        if traffic is not None and traffic.shadow:
            plan = plans.get(traffic.route) or _single(traffic.route, specs, plans)
            if plan.shadow is None:
                plan.shadow = VersionPlan(_label(traffic.route, spec.name), spec.name, 0)
    return _checked(list(plans.values()), specs)


def _add_declared(plans: dict[str, SplitPlan], specs: dict[str, PredictorSpec]) -> None:
    """Routes declared with ``traffic=Traffic(route=..., weight=...)``, not set by a flag."""
    declared: dict[str, list[PredictorSpec]] = {}
    for spec in specs.values():
        if spec.traffic is not None and not spec.traffic.shadow:
            declared.setdefault(spec.traffic.route, []).append(spec)
    for route, members in declared.items():
        if route in plans:
            continue  # the flag decides
        versions = [
            VersionPlan(_label(route, spec.name), spec.name, spec.traffic.weight)  # type: ignore[union-attr]
            for spec in members
        ]
        total = sum(version.weight for version in versions)
        if route in specs:
            if total > 100:
                raise UsageError(
                    f"the versions of '{route}' ({', '.join(v.model for v in versions)}) declare "
                    f"{total}% of its traffic; the model '{route}' keeps the rest, so make them "
                    "add up to at most 100"
                )
            versions.insert(0, VersionPlan(route, route, 100 - total))
        elif total != 100:
            models = ", ".join(v.model for v in versions)
            raise UsageError(
                f"no model is named '{route}', so its versions ({models}) share all of its "
                f"traffic, but their weights add up to {total}: "
                f"make them add up to 100, or serve a model named '{route}' to keep the rest"
            )
        plans[route] = SplitPlan(route, versions)


def _single(route: str, specs: dict[str, PredictorSpec], plans: dict[str, SplitPlan]) -> SplitPlan:
    """A shadowed model without a split: all of its traffic stays with it."""
    if route not in specs:
        raise UsageError(
            f"--shadow {route}=...: no model is named '{route}' and no --split defines it; "
            f"shadow a served model ({', '.join(specs)}) or add {SPLIT_EXAMPLE}"
        )
    plan = plans[route] = SplitPlan(route, [VersionPlan(route, route, 100)])
    return plan


def _route_name(route: str, flag: str) -> str:
    if not DNS_LABEL.match(route):
        raise UsageError(f"{flag} {route}=...: a model name is lowercase letters, digits and '-'")
    return route


def _version(route: str, label: str, weight: int, specs: dict[str, PredictorSpec]) -> VersionPlan:
    """The served model a version label names: the model ``label``, else ``route-label``."""
    for model in (label, f"{route}-{label}"):
        if model in specs:
            return VersionPlan(label, model, weight)
    raise UsageError(
        f"version '{label}' of '{route}' is not a served model (neither '{label}' nor "
        f"'{route}-{label}'); served models: {', '.join(specs) or 'none'}"
    )


def _label(route: str, model: str) -> str:
    """``v2`` for the model ``iris-v2`` of route ``iris``; the model's name otherwise."""
    return model.removeprefix(f"{route}-") or model


def _checked(plans: list[SplitPlan], specs: dict[str, PredictorSpec]) -> list[SplitPlan]:
    for plan in plans:
        members = [*plan.versions, *([plan.shadow] if plan.shadow else [])]
        for version in members:
            if specs[version.model].llm is not None:
                raise UsageError(
                    f"'{version.model}' is an LLM: its OpenAI routes name the model in the body, "
                    "so versions and shadows are for the v1/v2 routes; deploy LLM versions with "
                    "`zeroserve deploy` and `zeroserve rollout`"
                )
        if plan.shadow and plan.shadow.model in {v.model for v in plan.versions}:
            raise UsageError(
                f"'{plan.shadow.model}' is both a weighted version and the shadow of "
                f"'{plan.route}'; a shadow's answers are never returned, so it takes no weight"
            )
        if plan.route in specs and plan.route not in {v.model for v in members}:
            raise UsageError(
                f"'{plan.route}' is a served model and the name of a split that leaves it out; "
                f"include it (--split {plan.route}={plan.route}:90,...) or name the split otherwise"
            )
    return plans
