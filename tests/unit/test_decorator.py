"""@predictor: declarations that work, and misuse that fails at decoration time with the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from zeroserve import Batching, PredictorSpec, SpecError, predictor
from zeroserve.spec.decorator import declaration_of
from zeroserve.spec.fields import DNS_LABEL
from zeroserve.spec.spec import name_from_class


def test_bare_decorator_uses_defaults_and_class_name() -> None:
    @predictor
    class FraudScorer:
        def predict(self, instances: list[float]) -> list[float]:
            return instances

    declaration = declaration_of(FraudScorer)
    assert declaration is not None
    assert declaration.spec == PredictorSpec(name="fraud-scorer")
    assert declaration.spec.min_replicas == 0
    assert declaration.signature.instances.name == "instances"
    assert not declaration.signature.is_async
    assert FraudScorer().predict([1.0]) == [1.0]  # the class itself is unchanged


def test_decorator_with_settings() -> None:
    @predictor(
        name="iris",
        max_replicas=4,
        concurrency=16,
        gpu=1,
        cpu="500m",
        memory="2Gi",
        batching=Batching(max_batch_size=8),
        env={"OMP_NUM_THREADS": "1"},
    )
    class Iris:
        def load(self, model_dir: Path) -> None: ...

        async def predict(self, instances: list[list[float]]) -> list[int]:
            return [0 for _ in instances]

    declaration = declaration_of(Iris)
    assert declaration is not None
    spec = declaration.spec
    assert (spec.name, spec.max_replicas, spec.concurrency, spec.gpu) == ("iris", 4, 16, 1)
    assert spec.batching == Batching(max_batch_size=8, max_latency_ms=5.0)
    assert declaration.signature.is_async
    assert declaration.takes_model_dir


def test_spec_is_frozen() -> None:
    spec = PredictorSpec(name="a")
    with pytest.raises(ValidationError):
        spec.name = "b"  # type: ignore[misc]


def _predict_class() -> type:
    class Model:
        def predict(self, instances: list[int]) -> list[int]:
            return instances

    return Model


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"name": "Iris_Model"}, "name='Iris_Model' is invalid: must be a DNS-1123 label"),
        ({"name": "a" * 64}, "at most 63 characters"),
        ({"min_replicas": 2, "max_replicas": 1}, "set max_replicas >= 2"),
        ({"max_replicas": 0}, "max_replicas=0 is invalid"),
        ({"cpu": "two"}, "cpu='two' is invalid: must be a Kubernetes quantity"),
        ({"memory": "1 GB"}, "memory='1 GB' is invalid"),
        ({"env": {"1BAD": "x"}}, "environment variable name '1BAD' is invalid"),
        ({"replicas": 3}, "unknown argument 'replicas'; accepted arguments are: name, model_uri"),
        ({"batching": {"max_batch_size": 0}}, "batching.max_batch_size=0 is invalid"),
    ],
)
def test_bad_settings_fail_at_decoration(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match="@predictor on Model: ") as caught:
        predictor(**settings)(_predict_class())
    assert message in str(caught.value)


def test_suggests_a_valid_name() -> None:
    with pytest.raises(SpecError, match="e.g. name='iris-model'"):
        predictor(name="Iris_Model")(_predict_class())


def test_function_is_refused() -> None:
    def predict(instances: list[int]) -> list[int]:
        return instances

    with pytest.raises(SpecError, match="decorates a class, not a function"):
        predictor(predict)  # type: ignore[type-var]


def test_missing_predict() -> None:
    class NoPredict:
        def load(self) -> None: ...

    with pytest.raises(SpecError, match=r"class NoPredict has no predict\(\) method; add e.g."):
        predictor(NoPredict)


def test_predict_without_type_hint() -> None:
    class Untyped:
        def predict(self, instances):  # type: ignore[no-untyped-def]
            return instances

    with pytest.raises(SpecError, match=r"Untyped.predict\(instances\) has no type hint"):
        predictor(Untyped)


def test_predict_without_arguments() -> None:
    class NoArgs:
        def predict(self) -> list[int]:
            return []

    with pytest.raises(SpecError, match="must take the instances as its first argument"):
        predictor(NoArgs)


def test_extra_predict_parameter_needs_default() -> None:
    class TwoArgs:
        def predict(self, instances: list[int], threshold: float) -> list[int]:
            return instances

    with pytest.raises(SpecError, match="'threshold' needs a default value"):
        predictor(TwoArgs)


def test_unresolvable_hint() -> None:
    class Forward:
        def predict(self, instances: list[Missing]) -> list[int]:  # type: ignore[name-defined]  # noqa: F821
            return []

    with pytest.raises(SpecError, match="cannot be resolved"):
        predictor(Forward)


def test_model_uri_needs_load_with_model_dir() -> None:
    class NoLoad:
        def predict(self, instances: list[int]) -> list[int]:
            return instances

    with pytest.raises(SpecError, match="declares model_uri but has no load"):
        predictor(model_uri="s3://bucket/model")(NoLoad)

    class LoadWithoutDir:
        def load(self) -> None: ...

        def predict(self, instances: list[int]) -> list[int]:
            return instances

    with pytest.raises(SpecError, match="load\\(\\) receives the model folder"):
        predictor(model_uri="s3://bucket/model")(LoadWithoutDir)


def test_async_load_is_accepted_and_bad_warmup_is_refused() -> None:
    class AsyncLoad:
        async def load(self) -> None: ...

        def predict(self, instances: list[int]) -> list[int]:
            return instances

    declared = declaration_of(predictor(AsyncLoad))
    assert declared is not None
    assert declared.takes_model_dir is False

    class WarmupWithArgs:
        def warmup(self, n: int) -> None: ...

        def predict(self, instances: list[int]) -> list[int]:
            return instances

    with pytest.raises(SpecError, match="def warmup\\(self\\) -> None"):
        predictor(WarmupWithArgs)


def test_undecorated_class_has_no_declaration() -> None:
    assert declaration_of(_predict_class()) is None


@given(st.text(alphabet=st.characters(codec="ascii"), min_size=0, max_size=100))
def test_name_from_class_is_always_a_dns_label(class_name: str) -> None:
    name = name_from_class(class_name)
    assert DNS_LABEL.match(name)
    assert len(name) <= 63


def test_name_from_class_examples() -> None:
    assert name_from_class("IrisClassifier") == "iris-classifier"
    assert name_from_class("GPT2Model") == "gpt2-model"
    assert name_from_class("my_model") == "my-model"


def test_llm_settings_are_validated_at_decoration() -> None:
    from zeroserve import LLMEngine

    class Chat:
        def predict(self, instances: list[str]) -> list[str]:
            return instances

    with pytest.raises(SpecError, match="batches continuously inside vLLM"):
        predictor(name="chat", llm=LLMEngine(), batching=Batching())(Chat)
    with pytest.raises(SpecError, match="tensor_parallel_size=4 needs that many GPUs"):
        predictor(name="chat", gpu=2, llm={"tensor_parallel_size": 4})(Chat)
    with pytest.raises(SpecError, match="gpu_memory_utilization"):
        predictor(name="chat", llm={"gpu_memory_utilization": 1.5})(Chat)
    spec = declaration_of(predictor(name="chat", llm={"max_model_len": 256})(Chat))
    assert spec is not None
    assert spec.spec.llm is not None
    assert spec.spec.llm.vllm_args()[-2:] == ["--max-model-len", "256"]


def test_an_llm_sleeps_before_it_would_scale_to_zero_and_unset_keeps_the_digest() -> None:
    class Chat:
        def predict(self, instances: list[str]) -> list[str]:
            return instances

    with pytest.raises(SpecError, match=r"sleep_after=600 is not shorter than scale_to_zero_after"):
        predictor(name="chat", scale_to_zero_after=600, llm={"sleep_after": 600})(Chat)
    with pytest.raises(SpecError, match="sleep_after"):
        predictor(name="chat", llm={"sleep_after": 0})(Chat)
    sleepy = declaration_of(
        predictor(name="chat", scale_to_zero_after=600, llm={"sleep_after": 60})(Chat)
    )
    plain = declaration_of(predictor(name="chat", scale_to_zero_after=600, llm={})(Chat))
    assert sleepy is not None
    assert plain is not None
    assert sleepy.spec.as_json()["llm"]["sleep_after"] == 60
    assert "sleep_after" not in plain.spec.as_json()["llm"]  # digests of specs before it: unchanged
    assert "--enable-sleep-mode" not in sleepy.spec.llm.vllm_args()  # added where vLLM can sleep


def test_openai_methods_must_both_be_async() -> None:
    class HalfOpenAI:
        async def create_completion(self, request: Any, raw_request: Any = None) -> Any: ...

        def predict(self, instances: list[str]) -> list[str]:
            return instances

    with pytest.raises(SpecError, match="needs both `async def create_completion"):
        predictor(HalfOpenAI)


def test_vllm_predictor_by_configuration_needs_no_vllm_until_it_loads() -> None:
    from zeroserve import spec_of
    from zeroserve.predictors.vllm import VLLMPredictor, vllm_predictor

    cls = vllm_predictor("tiny-chat", "s3://bucket/tiny", llm={"max_model_len": 128})
    declared = declaration_of(cls)
    assert declared is not None
    assert declared.openai
    assert declared.takes_model_dir
    assert issubclass(cls, VLLMPredictor)
    assert cls.__name__ == "TinyChat"
    assert cls.__module__ == __name__  # found by the loader in the file that configured it
    assert spec_of(cls).model_uri == "s3://bucket/tiny"
