"""Fixtures for end-to-end tests against a real `gateway serve` subprocess."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.server import ServerProcess, make_workspace, start_gateway


@pytest.fixture(scope="module")
def gateway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workspace = make_workspace(tmp_path_factory.mktemp("ws"))
    server = start_gateway(workspace)
    yield server
    assert server.stop() == 0
