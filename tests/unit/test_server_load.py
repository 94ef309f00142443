"""The server's load step: a model that cannot get ready stops the server with the reason."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from zeroserve.errors import LoadError
from zeroserve.serving.server import LocalModelServer
from zeroserve.settings import Settings

pytestmark = pytest.mark.timeout(30)


class RefusedModel:
    """A model whose load step raises something other than LoadError (as a deploy to Ray can)."""

    name = "refused"

    async def load_in_server(self) -> None:
        raise ValueError("the cluster refused the application")


def test_an_unexpected_error_while_loading_stops_the_server_with_a_load_error() -> None:
    server = LocalModelServer(Settings().server)
    http: Any = SimpleNamespace(should_exit=False)
    server._http = http
    asyncio.run(server._load([RefusedModel()]))  # type: ignore[list-item]
    assert http.should_exit, "the server kept serving a model that can never get ready"
    assert isinstance(server.load_error, LoadError)
    assert server.load_error.model == "refused"
    assert "the cluster refused the application" in server.load_error.message
    assert isinstance(server.load_error.__cause__, ValueError)
