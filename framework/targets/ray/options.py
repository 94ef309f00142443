"""A predictor's spec as Ray Serve deployment options (pure data: no Ray import).

The mapping, and why:

- ``min_replicas``/``max_replicas`` -> the autoscaling bounds; ``initial_replicas`` is the
  minimum, so a model at ``min_replicas=0`` costs nothing until its first request, which Ray's
  handle holds while a replica starts.
- ``concurrency`` -> ``target_ongoing_requests`` (the per-replica target the autoscaler keeps);
  ``max_ongoing_requests`` (the hard per-replica limit; more wait at the handle) is twice that, and
  at least twice the batch size so that a batch can fill while the last one runs.
- ``scale_to_zero_after`` -> ``downscale_delay_s`` and ``downscale_to_zero_delay_s``; scaling up
  has no delay (Ray's default waits 30 s; Knative's panic mode and our activator start at once).
- ``cpu``/``memory``/``gpu`` -> the replica actor's ``num_cpus``/``memory``/``num_gpus``.
- a vLLM predictor's engine runs in the replica; the front answers its OpenAI routes.
- ``batching`` -> zeroserve's own batcher inside the replica (the runner's), not ``@serve.batch``,
  which has open hang reports (ray#42593, ray#66140) and cannot change its settings while serving
  (ray#36844); the same batcher runs in every engine, so a batch behaves the same everywhere.
"""

from __future__ import annotations

import re
from typing import Any

from zeroserve.errors import UsageError
from zeroserve.spec.decorator import Declaration

_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_FACTORS = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 1024.0,
    "Mi": 1024.0**2,
    "Gi": 1024.0**3,
    "Ti": 1024.0**4,
}
METRICS_INTERVAL_S = 0.5
LOOK_BACK_PERIOD_S = 10.0


def quantity(text: str) -> float:
    """A Kubernetes quantity as a number: ``"500m"`` -> 0.5, ``"1Gi"`` -> 1073741824.0."""
    match = _QUANTITY.match(text)
    if match is None:
        raise UsageError(f"'{text}' is not a quantity such as 500m, 2, 512Mi or 4Gi")
    return float(match.group(1)) * _FACTORS[match.group(2)]


def refusal(declaration: Declaration) -> str | None:
    """Why this predictor cannot run on Ray Serve, or None."""
    spec = declaration.spec
    secrets = [key for key, value in spec.env.items() if not isinstance(value, str)]
    if secrets:
        return (
            f"env {', '.join(sorted(secrets))} come from Kubernetes Secrets or ConfigMaps, "
            "which a Ray cluster has none of; give plain values, or deploy it with `zeroserve "
            "deploy`"
        )
    return None


def deployment_options(
    declaration: Declaration, resources: dict[str, float] | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``serve.deployment(...).options(...)`` from a predictor's spec;
    ``resources``: custom Ray resources its replicas need (e.g. one that only some nodes have)."""
    spec = declaration.spec
    reason = refusal(declaration)
    if reason is not None:
        raise UsageError(f"model '{spec.name}' cannot run on Ray: {reason}")
    batch = spec.batching.max_batch_size if spec.batching is not None else 0
    actor: dict[str, Any] = {"num_cpus": quantity(spec.cpu) if spec.cpu else 0}
    if spec.memory:
        actor["memory"] = quantity(spec.memory)
    if spec.gpu:
        actor["num_gpus"] = spec.gpu
    if resources:
        actor["resources"] = dict(resources)
    actor["runtime_env"] = {"env_vars": {key: str(value) for key, value in spec.env.items()}}
    idle = spec.scale_to_zero_after
    return {
        "name": spec.name,
        "max_ongoing_requests": max(2 * spec.concurrency, 2 * batch),
        "ray_actor_options": actor,
        # the front logs each request once; Serve's own access log costs replica CPU per request
        "logging_config": {"enable_access_log": False},
        "autoscaling_config": {
            "min_replicas": spec.min_replicas,
            "initial_replicas": spec.min_replicas,
            "max_replicas": spec.max_replicas,
            "target_ongoing_requests": spec.concurrency,
            "upscale_delay_s": 0.0,
            "downscale_delay_s": idle,
            "downscale_to_zero_delay_s": idle,
            "metrics_interval_s": METRICS_INTERVAL_S,
            "look_back_period_s": min(LOOK_BACK_PERIOD_S, idle),
        },
    }


def check_runnable(declarations: list[Declaration], resources: dict[str, dict[str, float]]) -> None:
    """UsageError, before anything starts, for a model Ray cannot run or a --ray-resource that
    names no model."""
    unknown = set(resources) - {declaration.spec.name for declaration in declarations}
    if unknown:
        raise UsageError(f"--ray-resource names no served model: {', '.join(sorted(unknown))}")
    for declaration in declarations:
        deployment_options(declaration, resources.get(declaration.spec.name))


def parse_resource_flags(flags: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """``--ray-resource MODEL=NAME:AMOUNT`` (repeatable) as ``{model: {name: amount}}``."""
    wanted: dict[str, dict[str, float]] = {}
    for flag in flags:
        model, _, resource = flag.partition("=")
        name, _, amount = resource.partition(":")
        try:
            value = float(amount or "1")
        except ValueError:
            value = -1.0
        if not model or not name or value <= 0:
            raise UsageError(
                f"--ray-resource '{flag}': write MODEL=RESOURCE[:AMOUNT], e.g. "
                "--ray-resource iris=worker_node:1 (a custom resource given to `ray start "
                "--resources`)"
            )
        wanted.setdefault(model, {})[name] = value
    return wanted
