"""Property-based requests generated from each server's own OpenAPI document (schemathesis):
no answer is a server error, through the activator and in --direct."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.conftest import FIXTURES, RunningServer, start_server, wait_ready


@pytest.fixture(scope="module", params=["activator", "direct"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    flags = ("--direct",) if request.param == "direct" else ()
    log = tmp_path_factory.mktemp(f"openapi-{request.param}") / "server.log"
    server = start_server(FIXTURES / "http" / "echo.py", log, *flags)
    wait_ready(server, "echo")
    yield server
    server.stop()


MAX_EXAMPLES = 50  # per operation: a bounded run


@pytest.mark.timeout(600)
def test_generated_requests_get_no_server_error(served: RunningServer) -> None:
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 10  # KServe's v1 and v2 routes and zeroserve's own

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: Any) -> None:
            if "model_name" in (case.path_parameters or {}):
                case.path_parameters["model_name"] = "echo"  # the served model's real routes
            response = case.call(base_url=served.url, timeout=30)
            case.validate_response(response, checks=[not_a_server_error])

        no_server_error()
