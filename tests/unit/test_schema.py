"""Request binding from predict's type hints."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import Field

from zeroserve import InvalidPayload
from zeroserve.spec.schema import PredictSignature


class Model:
    def predict(
        self,
        rows: list[Annotated[list[float], Field(min_length=2, max_length=2)]],
        threshold: float = 0.5,
    ) -> list[int]:
        return []


SIGNATURE = PredictSignature.from_method("Model", Model.predict)


def test_v1_binds_instances_and_parameters() -> None:
    kwargs = SIGNATURE.bind_v1({"instances": [[1, 2.5]], "parameters": {"threshold": "0.9"}})
    assert kwargs == {"rows": [[1.0, 2.5]], "threshold": 0.9}


def test_v1_error_names_field_value_and_expected() -> None:
    with pytest.raises(InvalidPayload) as caught:
        SIGNATURE.bind_v1({"instances": [[1, 2], [3, "x"]]})
    error = caught.value
    assert error.details[0]["field"] == "instances[1][1]"
    assert error.details[0]["value"] == "x"
    assert error.details[0]["expected"] == "number"
    assert error.schema is not None
    assert error.schema["type"] == "array"
    assert str(error).startswith("instances[1][1]: Input should be a valid number")


def test_v1_needs_an_instances_list() -> None:
    with pytest.raises(InvalidPayload, match='"instances" list'):
        SIGNATURE.bind_v1({"inputs": []})
    with pytest.raises(InvalidPayload, match='"instances" list'):
        SIGNATURE.bind_v1([1, 2])


def test_parameters_must_be_known_and_an_object() -> None:
    with pytest.raises(InvalidPayload, match='unknown parameter "alpha"; this model accepts: thr'):
        SIGNATURE.bind_v1({"instances": [], "parameters": {"alpha": 1}})
    with pytest.raises(InvalidPayload, match='"parameters" must be a JSON object'):
        SIGNATURE.bind_v1({"instances": [], "parameters": [1]})
    with pytest.raises(InvalidPayload, match="parameters.threshold"):
        SIGNATURE.bind_v1({"instances": [], "parameters": {"threshold": "high"}})


def test_v2_single_input_any_name_or_named_input() -> None:
    assert SIGNATURE.bind_v2({"x": [[1, 2]]}, None) == {"rows": [[1.0, 2.0]]}
    both = {"rows": [[1, 2]], "mask": [[0, 1]]}
    assert SIGNATURE.bind_v2(both, {"threshold": 1}) == {"rows": [[1.0, 2.0]], "threshold": 1.0}
    with pytest.raises(InvalidPayload, match="one named 'rows'"):
        SIGNATURE.bind_v2({"a": [], "b": []}, None)


def test_many_errors_are_capped() -> None:
    with pytest.raises(InvalidPayload) as caught:
        SIGNATURE.bind_v1({"instances": [["a", "b"]] * 50})
    assert len(caught.value.details) == 10
    assert "100 problem(s)" in str(caught.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(json_values)
def test_any_json_either_binds_or_raises_invalid_payload(value: Any) -> None:
    outcome: object
    try:
        outcome = SIGNATURE.bind_v1({"instances": value})["rows"]
    except InvalidPayload as exc:
        outcome = exc.to_body()
    if isinstance(outcome, dict):
        assert outcome["type"] == "InvalidPayload"
    else:
        assert all(len(row) == 2 for row in outcome)
