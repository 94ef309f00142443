"""PredictorSpec: the validated, frozen declaration that every runtime reads."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from zeroserve.errors import InvalidPayload, SpecError
from zeroserve.llm.engine import LLMEngine
from zeroserve.spec.fields import (
    DNS_LABEL,
    DNS_LABEL_MAX,
    ENV_NAME,
    MAX_BATCH_SIZE,
    MAX_LATENCY_MS,
    QUANTITY,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)


def name_from_class(class_name: str) -> str:
    """A DNS-1123 label from a class name: ``IrisClassifier`` -> ``iris-classifier``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", class_name)
    label = re.sub(r"[^a-z0-9-]+", "-", spaced.lower()).strip("-")
    return re.sub(r"-{2,}", "-", label)[:DNS_LABEL_MAX].strip("-") or "model"


class Batching(BaseModel):
    """How concurrent requests to one replica are grouped into one predict() call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_batch_size: Annotated[int, Field(gt=0, le=MAX_BATCH_SIZE)] = 32
    max_latency_ms: Annotated[float, Field(ge=0, le=MAX_LATENCY_MS, allow_inf_nan=False)] = 5.0
    split: bool = True


class Traffic(BaseModel):
    """This model as a version of another model name in ``zeroserve serve``: requests for
    ``route`` go to this model ``weight`` percent of the time (the rest to the model named
    ``route``), or with ``shadow=True`` this model gets a copy of each one, and its answers are
    recorded, never returned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    route: Annotated[str, Field(pattern=DNS_LABEL.pattern, max_length=DNS_LABEL_MAX)]
    weight: Annotated[int, Field(ge=0, le=100)] = 0
    shadow: bool = False

    @model_validator(mode="after")
    def _weight_or_shadow(self) -> Self:
        if self.shadow and self.weight:
            raise ValueError(
                "a shadow gets a copy of every request and answers none of them, so it takes no "
                f"weight: drop weight={self.weight} or shadow=True"
            )
        return self


class ClusterValue(BaseModel):
    """An environment value kept in the cluster, by reference: a key of a Secret or ConfigMap in
    the model's namespace (``zeroserve.secret("s3", "secret-key")``). Rendered manifests carry
    the reference, never the value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["secret", "configmap"]
    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]
    key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)]


def secret(name: str, key: str) -> ClusterValue:
    """An environment value from key ``key`` of the Secret ``name`` (in the model's namespace)."""
    return ClusterValue(kind="secret", name=name, key=key)


def config_map(name: str, key: str) -> ClusterValue:
    """An environment value from key ``key`` of the ConfigMap ``name``."""
    return ClusterValue(kind="configmap", name=name, key=key)


LATER_FIELDS = ("traffic",)
LLM_LATER_FIELDS = ("sleep_after",)


class PredictorSpec(BaseModel):
    """Everything a runtime needs to know about a predictor, validated once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    model_uri: str | None = None
    min_replicas: NonNegativeInt = 0
    max_replicas: PositiveInt = 1
    concurrency: PositiveInt = 8
    scale_to_zero_after: PositiveFloat = 120.0
    batching: Batching | None = None
    cpu: str | None = "1"
    memory: str | None = "1Gi"
    gpu: NonNegativeInt = 0
    env: dict[str, str | ClusterValue] = Field(default_factory=dict)
    llm: LLMEngine | None = None
    traffic: Traffic | None = None

    def as_json(self) -> dict[str, Any]:
        """The spec's JSON fields, for digests and code artifacts. Fields added later are left out
        while unset, so a spec that does not use them keeps the digest it had."""
        unset_later = {name for name in LATER_FIELDS if getattr(self, name) is None}
        fields: dict[str, Any] = self.model_dump(mode="json", exclude=unset_later)
        if self.llm is not None:
            for name in LLM_LATER_FIELDS:
                if getattr(self.llm, name) is None:
                    del fields["llm"][name]
        return fields

    @field_validator("name")
    @classmethod
    def _name_is_dns_label(cls, name: str) -> str:
        if len(name) > DNS_LABEL_MAX or not DNS_LABEL.match(name):
            raise ValueError(
                f"must be a DNS-1123 label (lowercase letters, digits and '-', starting and "
                f"ending with a letter or digit, at most {DNS_LABEL_MAX} characters), "
                f"e.g. name='{name_from_class(name)}'"
            )
        return name

    @field_validator("cpu", "memory")
    @classmethod
    def _is_quantity(cls, value: str | None) -> str | None:
        if value is not None and not QUANTITY.match(value):
            raise ValueError(
                "must be a Kubernetes quantity such as cpu='500m', cpu='2', memory='512Mi' "
                "or memory='4Gi'"
            )
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str | ClusterValue]) -> dict[str, str | ClusterValue]:
        for key in env:
            if not ENV_NAME.match(key):
                raise ValueError(
                    f"environment variable name '{key}' is invalid: use letters, digits and '_', "
                    "not starting with a digit"
                )
        return env

    @model_validator(mode="after")
    def _replicas_in_order(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas={self.min_replicas} is greater than max_replicas="
                f"{self.max_replicas}; set max_replicas >= {self.min_replicas} or lower "
                "min_replicas (0 lets the model scale to zero)"
            )
        return self

    @model_validator(mode="after")
    def _not_its_own_version(self) -> Self:
        if self.traffic is not None and self.traffic.route == self.name:
            raise ValueError(
                f"traffic.route='{self.name}' is this model's own name: name the model that "
                f"serves the route now, e.g. name='{self.name}-v2', traffic=Traffic(route="
                f"'{self.name}', weight=10)"
            )
        return self

    @model_validator(mode="after")
    def _llm_fits(self) -> Self:
        if self.llm is None:
            return self
        if self.batching is not None:
            raise ValueError(
                "an LLM predictor batches continuously inside vLLM; remove batching=... "
                "(max_num_seqs in llm=... bounds how many sequences share a step)"
            )
        sleep_after = self.llm.sleep_after
        if sleep_after is not None and sleep_after >= self.scale_to_zero_after:
            raise ValueError(
                f"llm.sleep_after={sleep_after:g} is not shorter than scale_to_zero_after="
                f"{self.scale_to_zero_after:g}: the engine would stop before it slept; set "
                f"sleep_after below {self.scale_to_zero_after:g} (e.g. "
                f"{self.scale_to_zero_after / 4:g}) or leave it out"
            )
        if self.gpu and self.llm.tensor_parallel_size > self.gpu:
            raise ValueError(
                f"llm.tensor_parallel_size={self.llm.tensor_parallel_size} needs that many "
                f"GPUs but gpu={self.gpu}; set gpu={self.llm.tensor_parallel_size}"
            )
        return self


def build_spec(owner: str, fields: dict[str, Any]) -> PredictorSpec:
    """Validate ``fields`` into a PredictorSpec, or raise SpecError naming key, value, fix."""
    try:
        return PredictorSpec(**fields)
    except ValidationError as exc:
        raise SpecError(f"@predictor on {owner}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One readable sentence per problem: the key, the value given, and what is accepted
    (the fields of ``model``, by default the decorator's arguments)."""
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "arguments"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            accepted = ", ".join((model or PredictorSpec).model_fields)
            problems.append(f"unknown argument '{key}'; accepted arguments are: {accepted}")
        elif "input" in error and error["type"] != "missing" and key != "arguments":
            problems.append(f"{key}={error['input']!r} is invalid: {message}")
        else:
            problems.append(message)
    return "; ".join(problems)


def changed_batching(current: Batching, changes: object) -> Batching:
    """``current`` with a client's changes merged in; InvalidPayload naming what is wrong.
    The one check of a batching change, wherever it arrives (activator or server)."""
    if not isinstance(changes, dict):
        raise InvalidPayload(
            'batching: the body must be a JSON object of settings, e.g. {"max_latency_ms": 2}'
        )
    try:
        return Batching.model_validate({**current.model_dump(), **changes})
    except ValidationError as exc:
        raise InvalidPayload(f"batching: {describe_validation_error(exc, Batching)}") from None
