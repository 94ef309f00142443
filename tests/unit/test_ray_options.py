"""The Ray engine's mapping of a spec to Ray Serve options, and what it refuses (no Ray needed)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from zeroserve import Batching, predictor, secret
from zeroserve.errors import (
    InvalidPayload,
    PredictError,
    ReplicaLost,
    UsageError,
    http_status_for,
)
from zeroserve.spec.decorator import Declaration, declaration_of
from zeroserve.targets.ray.options import (
    check_runnable,
    deployment_options,
    parse_resource_flags,
    quantity,
)


def declared(**options: Any) -> Declaration:
    @predictor(name="m", **options)
    class Model:
        def predict(self, instances: list[float]) -> list[float]:
            return instances

    found = declaration_of(Model)
    assert found is not None
    return found


def test_the_spec_maps_to_scaling_resources_and_limits() -> None:
    options = deployment_options(
        declared(
            min_replicas=1,
            max_replicas=3,
            concurrency=4,
            scale_to_zero_after=30,
            cpu="500m",
            memory="512Mi",
            gpu=1,
            env={"MODE": "fast"},
        ),
        {"worker_node": 1.0},
    )
    scaling = options["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["initial_replicas"], scaling["max_replicas"]) == (
        1,
        1,
        3,
    )
    assert scaling["target_ongoing_requests"] == 4
    assert options["max_ongoing_requests"] == 8
    assert scaling["downscale_delay_s"] == scaling["downscale_to_zero_delay_s"] == 30
    assert scaling["upscale_delay_s"] == 0
    actor = options["ray_actor_options"]
    assert actor["num_cpus"] == 0.5
    assert actor["memory"] == 512 * 1024**2
    assert actor["num_gpus"] == 1
    assert actor["resources"] == {"worker_node": 1.0}
    assert actor["runtime_env"] == {"env_vars": {"MODE": "fast"}}
    assert options["logging_config"] == {"enable_access_log": False}


def test_a_batch_fills_a_replica_by_its_size_and_defaults_reach_zero() -> None:
    options = deployment_options(declared(batching=Batching(max_batch_size=64)))
    assert options["max_ongoing_requests"] == 128
    assert options["autoscaling_config"]["min_replicas"] == 0
    assert options["ray_actor_options"]["num_cpus"] == 1.0


def test_no_cpu_reserves_none() -> None:
    options = deployment_options(declared(cpu=None, memory=None))
    assert options["ray_actor_options"]["num_cpus"] == 0
    assert "memory" not in options["ray_actor_options"]


def test_cluster_references_in_env_are_refused_with_the_reason() -> None:
    with pytest.raises(UsageError, match="Kubernetes Secrets or ConfigMaps"):
        deployment_options(declared(env={"KEY": secret("s3", "key")}))


def test_a_resource_for_an_unknown_model_is_refused() -> None:
    with pytest.raises(UsageError, match="names no served model: other"):
        check_runnable([declared()], {"other": {"gpu_node": 1}})


@pytest.mark.parametrize(
    ("text", "value"), [("500m", 0.5), ("2", 2.0), ("1Gi", 1024.0**3), ("1.5", 1.5)]
)
def test_quantities(text: str, value: float) -> None:
    assert quantity(text) == value


@pytest.mark.parametrize("flag", ["iris", "iris=", "=gpu:1", "iris=gpu:zero", "iris=gpu:-1"])
def test_bad_resource_flags_say_the_form(flag: str) -> None:
    with pytest.raises(UsageError, match="MODEL=RESOURCE"):
        parse_resource_flags((flag,))


def test_resource_flags() -> None:
    parsed = parse_resource_flags(("a=x", "a=y:0.5", "b=z:2"))
    assert parsed == {"a": {"x": 1.0, "y": 0.5}, "b": {"z": 2.0}}


@pytest.mark.parametrize(
    "error",
    [
        InvalidPayload("instances[0]: not a number"),
        PredictError(model="m", cause=ValueError("bad")),
        ReplicaLost(model="m", cause="ActorDiedError: node lost"),
    ],
)
def test_errors_cross_processes_with_their_class_status_and_body(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.to_body() == error.to_body()  # type: ignore[attr-defined]
    assert http_status_for(copy) == http_status_for(error)  # type: ignore[arg-type]


def test_a_vllm_predictor_maps_like_any_other() -> None:
    from zeroserve import LLMEngine
    from zeroserve.predictors.vllm import vllm_predictor

    model = vllm_predictor("chat", "s3://models/chat@v1", llm=LLMEngine(max_model_len=512), gpu=1)
    found = declaration_of(model)
    assert found is not None
    assert deployment_options(found)["ray_actor_options"]["num_gpus"] == 1


def test_a_ray_client_server_that_fails_to_start_is_tried_again() -> None:
    from zeroserve.targets.ray.engine import CLIENT_SERVER_FAILED, init_with_retries

    calls: list[str] = []

    def flaky_init() -> None:
        calls.append("init")
        if calls.count("init") < 3:
            raise ConnectionAbortedError(
                f"Initialization failure from server: {CLIENT_SERVER_FAILED}"
            )

    init_with_retries(flaky_init, lambda: calls.append("shutdown"), attempts=3)
    assert calls == ["init", "shutdown", "init", "shutdown", "init"]

    def never_starts() -> None:
        raise ConnectionAbortedError(f"Initialization failure from server: {CLIENT_SERVER_FAILED}")

    with pytest.raises(ConnectionAbortedError):  # still failing after the last try
        init_with_retries(never_starts, lambda: None, attempts=2)

    def unreachable() -> None:
        raise ConnectionError("could not connect to 127.0.0.1:1")

    tries: list[int] = []
    with pytest.raises(ConnectionError, match="could not connect"):  # not retried: no such server
        init_with_retries(lambda: tries.append(1) or unreachable(), lambda: None)
    assert tries == [1]
