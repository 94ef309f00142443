"""The error-to-status table and settings parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeroserve import errors
from zeroserve.settings import Settings, parse_size


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidPayload("bad"), 400),
        (errors.PayloadTooLarge(limit_bytes=1, received_bytes=2), 413),
        (errors.PredictError(model="m", cause=ValueError("x")), 500),
        (errors.LoadError(model="m", phase="load", cause=OSError("x")), 503),
        (errors.RequestError("other client mistake"), 400),
        (errors.ZeroserveError("anything else"), 500),
    ],
)
def test_http_status_table(error: errors.ZeroserveError, status: int) -> None:
    assert errors.http_status_for(error) == status


def test_every_error_class_shares_the_root() -> None:
    leaves = [
        errors.SpecError,
        errors.UsageError,
        errors.InvalidPayload,
        errors.PayloadTooLarge,
        errors.PredictError,
        errors.LoadError,
    ]
    assert all(issubclass(leaf, errors.ZeroserveError) for leaf in leaves)


def test_predict_error_body_names_model_and_exception() -> None:
    body = errors.PredictError(model="iris", cause=KeyError("petal")).to_body()
    assert body == {
        "error": "predict() of model 'iris' raised KeyError: 'petal'",
        "type": "PredictError",
        "model": "iris",
        "exception": "KeyError",
    }


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("16MiB", 16 * 2**20),
        ("16m", 16 * 2**20),
        ("500kB", 500_000),
        ("2GiB", 2**31),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@given(st.integers(min_value=0, max_value=2**40), st.sampled_from(["", "b", "KiB", "MB", "gib"]))
def test_parse_size_round_trip(number: int, unit: str) -> None:
    parsed = parse_size(f"{number}{unit}")
    assert isinstance(parsed, int)
    assert parsed >= number


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZEROSERVE_SERVER__PORT", "9001")
    monkeypatch.setenv("ZEROSERVE_SERVER__MAX_BODY_SIZE", "1MiB")
    settings = Settings()
    assert settings.server.port == 9001
    assert settings.server.max_body_size == 2**20
    assert settings.server.host == "127.0.0.1"
