"""Which versions answer a model name: the flags, the declarations, and each mistake's message."""

from __future__ import annotations

import pytest

from zeroserve import LLMEngine, Traffic
from zeroserve.errors import SpecError, UsageError
from zeroserve.local.split_config import VersionPlan, plan_splits
from zeroserve.spec.spec import PredictorSpec, build_spec


def specs(*names: str, **traffic: Traffic) -> dict[str, PredictorSpec]:
    return {
        name: PredictorSpec(name=name, traffic=traffic.get(name.replace("-", "_")))
        for name in names
    }


def test_a_version_is_the_model_of_that_name_else_name_dash_version() -> None:
    [plan] = plan_splits(["iris=v1:90,iris-v2:10"], [], specs("v1", "iris-v2"))
    assert plan.versions == [VersionPlan("v1", "v1", 90), VersionPlan("iris-v2", "iris-v2", 10)]
    [plan] = plan_splits(["iris=v1:90,v2:10"], ["iris=v3"], specs("iris-v1", "iris-v2", "iris-v3"))
    assert [v.model for v in plan.versions] == ["iris-v1", "iris-v2"]
    assert plan.shadow == VersionPlan("v3", "iris-v3", 0)


def test_declared_versions_leave_the_rest_to_the_model_of_the_route_name() -> None:
    served = specs("iris", "iris-v2", iris_v2=Traffic(route="iris", weight=10))
    [plan] = plan_splits([], [], served)
    assert plan.versions == [VersionPlan("iris", "iris", 90), VersionPlan("v2", "iris-v2", 10)]
    [plan] = plan_splits(["iris=iris:50,v2:50"], [], served)  # a flag overrides a declaration
    assert [v.weight for v in plan.versions] == [50, 50]
    shadowed = specs("iris", "iris-next", iris_next=Traffic(route="iris", shadow=True))
    [plan] = plan_splits([], [], shadowed)
    assert plan.versions == [VersionPlan("iris", "iris", 100)]
    assert plan.shadow == VersionPlan("next", "iris-next", 0)


@pytest.mark.parametrize(
    ("splits", "shadows", "served", "message"),
    [
        (["iris=v1:50,v1:50"], [], specs("v1"), "a version is named twice"),
        (["iris=v1:50,v2:50", "iris=v1:100"], [], specs("v1", "v2"), "names 'iris' twice"),
        (["Iris=v1:100"], [], specs("v1"), "lowercase letters"),
        (["iris=v1:100"], [], specs("iris", "v1"), "a split that leaves it out"),
        ([], ["iris=v2", "iris=v3"], specs("iris", "v2", "v3"), "has a shadow already"),
        (
            [],
            [],
            specs("a-v1", "a-v2", a_v1=Traffic(route="a", weight=60), a_v2=Traffic(route="a")),
            "their weights add up to 60",
        ),
        (
            [],
            [],
            specs(
                "a",
                "a-v2",
                "a-v3",
                a_v2=Traffic(route="a", weight=60),
                a_v3=Traffic(route="a", weight=60),
            ),
            "declare 120% of its traffic",
        ),  # fmt: skip
    ],
)
def test_each_mistake_is_named(
    splits: list[str], shadows: list[str], served: dict[str, PredictorSpec], message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        plan_splits(splits, shadows, served)
    assert message in str(caught.value)


def test_an_llm_has_no_versions_here() -> None:
    served = {
        "chat": PredictorSpec(name="chat", llm=LLMEngine()),
        "chat-v2": PredictorSpec(name="chat-v2", llm=LLMEngine()),
    }
    with pytest.raises(UsageError, match="OpenAI routes name the model in the body"):
        plan_splits(["chat=chat:90,v2:10"], [], served)


def test_a_traffic_declaration_is_checked_when_the_class_is_decorated() -> None:
    with pytest.raises(SpecError, match="takes no weight"):
        build_spec(
            "Iris", {"name": "iris-v2", "traffic": {"route": "iris", "weight": 5, "shadow": True}}
        )
    with pytest.raises(SpecError, match="this model's own name"):
        build_spec("Iris", {"name": "iris", "traffic": {"route": "iris", "weight": 5}})
    with pytest.raises(SpecError, match="traffic.weight"):
        build_spec("Iris", {"name": "iris-v2", "traffic": {"route": "iris", "weight": 150}})


def test_deploy_says_a_traffic_declaration_is_for_serve(capsys: pytest.CaptureFixture[str]) -> None:
    from zeroserve.cli.deploy import _note_local_traffic

    _note_local_traffic(PredictorSpec(name="iris-v2", traffic=Traffic(route="iris", weight=10)))
    _note_local_traffic(PredictorSpec(name="iris"))
    noted = capsys.readouterr().err
    assert noted.count("note:") == 1
    assert "deploy it as iris with --canary N" in noted
