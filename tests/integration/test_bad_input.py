"""Malformed input gets 400 with a JSON body naming the problem, and results that cannot be
sent get one clear 500 naming what was returned, on v1 and v2 alike, through the activator and
in --direct (what a pod runs)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import FIXTURES, RunningServer, start_server, wait_ready

MODELS = ("echo", "results", "typed", "small")


@pytest.fixture(scope="module", params=["activator", "direct"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    flags = ("--direct",) if request.param == "direct" else ()
    log = tmp_path_factory.mktemp(request.param) / "server.log"
    running = start_server(FIXTURES / "http", log, *flags)
    for name in MODELS:
        wait_ready(running, name)
    yield running
    running.stop()


def v2(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "instances", "shape": shape, "datatype": datatype, "data": data}]}


def post(server: RunningServer, path: str, body: bytes | dict[str, Any]) -> httpx.Response:
    if isinstance(body, bytes):
        headers = {"content-type": "application/json"}
        return httpx.post(server.url + path, content=body, headers=headers, timeout=30)
    return httpx.post(server.url + path, json=body, timeout=30)


def raw_fp64(number: bytes) -> bytes:
    """A v2 body with a number JSON itself cannot hold (Python's json module reads these)."""
    return b'{"inputs":[{"name":"i","shape":[1],"datatype":"FP64","data":[%s]}]}' % number


DEEP = b'{"instances": ' + b"[" * 1000 + b"]" * 1000 + b"}"


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/v2/models/small/infer", v2("small", "INT64", [2, 2], [1, 2, 3]), "shape"),
        ("/v2/models/small/infer", v2("small", "INT64", [2], [[1, 2], [3]]), "shape"),
        ("/v2/models/small/infer", v2("small", "INT8", [1], [300]), "range"),
        ("/v2/models/small/infer", v2("small", "UINT8", [1], [-1]), "range"),
        (
            "/v2/models/echo/infer",
            raw_fp64(b"NaN"),
            "NaN",
        ),
        (
            "/v2/models/echo/infer",
            raw_fp64(b"1e400"),
            "infinite",
        ),
        (
            "/v2/models/echo/infer",
            raw_fp64(b"Infinity"),
            "infinite",
        ),
        ("/v1/models/echo:predict", b'{"instances": [NaN]}', ""),
        ("/v1/models/echo:predict", b'{"instances": [1e400]}', ""),
        ("/v1/models/echo:predict", DEEP, "nested"),
        ("/v1/models/echo:predict", {"instances": 3}, ""),
        ("/v1/models/small:predict", {"instances": [[1]]}, "integer"),
    ],
)
def test_malformed_input_is_400_with_a_json_reason(
    server: RunningServer, path: str, body: bytes | dict[str, Any], says: str
) -> None:
    answer = post(server, path, body)
    assert answer.status_code == 400, answer.text
    assert says in str(answer.json())


def test_no_instances_get_no_predictions(server: RunningServer) -> None:
    assert post(server, "/v1/models/small:predict", {"instances": []}).json() == {"predictions": []}


@pytest.mark.parametrize("what", ["set", "object", "generator"])
@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_results_that_cannot_be_sent_are_one_clear_500(
    server: RunningServer, what: str, protocol: str
) -> None:
    if protocol == "v1":
        answer = post(server, "/v1/models/results:predict", {"instances": [what]})
    else:
        answer = post(server, "/v2/models/results/infer", v2("r", "BYTES", [1], [what]))
    assert answer.status_code == 500
    body = answer.json()
    assert body["type"] == "UnencodableResult"
    assert body["returned"] in (f"a {what}", "an object", "a list of 1")
    assert "0x" not in answer.text  # no memory address, no text of the object


def test_none_where_ints_are_declared_names_the_declared_type(server: RunningServer) -> None:
    for answer in (
        post(server, "/v1/models/typed:predict", {"instances": ["a"]}),
        post(server, "/v2/models/typed/infer", v2("t", "BYTES", [1], ["a"])),
    ):
        assert answer.status_code == 500
        assert answer.json()["declared"] == "list[int]"
        assert "valid integer" in answer.json()["error"]


def test_a_ragged_result_is_fine_on_v1_and_a_clear_500_on_v2(server: RunningServer) -> None:
    v1 = post(server, "/v1/models/results:predict", {"instances": ["ragged"]})
    assert v1.json() == {"predictions": [[1, 2], [3]]}
    answer = post(server, "/v2/models/results/infer", v2("r", "BYTES", [1], ["ragged"]))
    assert answer.status_code == 500
    assert "rectangular" in answer.json()["error"]
    fine = post(server, "/v2/models/results/infer", v2("r", "BYTES", [1], ["fine"]))
    assert fine.json()["outputs"][0]["data"] == [1, 2, 3, 4]
    assert not math.isnan(fine.json()["outputs"][0]["data"][0])
