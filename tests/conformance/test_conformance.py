"""The official MCP conformance suite against a real `gateway serve`'s `/mcp`.

(a) The gateway federates the conformance fixture upstream with an empty prefix: every scenario of
0.1.16 `--suite all` passes, and on 0.2.0-alpha.12 `--suite all` everything but the tasks extension
(expected-failures.yaml). (b) The protocol-level scenarios pass against the gateway's own tools with no
upstream. Needs the MCP door (protocols/mcp) and npm; installs the suite with `npm ci` when missing.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from support.server import ServerProcess, make_workspace, start_gateway

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("protocols.mcp") is None, reason="the MCP door (protocols/mcp) is not there yet"
    ),
    pytest.mark.timeout(1500),
]


@pytest.fixture(scope="module")
def suite_installed() -> None:
    harness.ensure_installed()


def _gateway(tmp_path_factory: pytest.TempPathFactory, *, federate: bool) -> Iterator[ServerProcess]:
    root = make_workspace(tmp_path_factory.mktemp("confws"))
    config = harness.gateway_config(tmp_path_factory.mktemp("confcfg") / "gateway.toml", federate=federate)
    server = start_gateway(root, "--config", str(config))
    try:
        if federate:
            harness.wait_for_tool(server.url, "test_simple_text")
        yield server
    finally:
        assert server.stop() == 0


@pytest.fixture(scope="module")
def federating_gateway(tmp_path_factory: pytest.TempPathFactory, suite_installed: None) -> Iterator[ServerProcess]:
    yield from _gateway(tmp_path_factory, federate=True)


@pytest.fixture(scope="module")
def plain_gateway(tmp_path_factory: pytest.TempPathFactory, suite_installed: None) -> Iterator[ServerProcess]:
    yield from _gateway(tmp_path_factory, federate=False)


def test_every_0_1_16_scenario_passes_through_federation(federating_gateway: ServerProcess) -> None:
    run = harness.run_suite("0.1.16", f"{federating_gateway.url}/mcp", label="federated")
    assert run.scenarios, run.output[-3000:]
    assert run.failed == 0 and run.returncode == 0, run.report()


def test_every_0_2_scenario_but_tasks_passes_through_federation(federating_gateway: ServerProcess) -> None:
    run = harness.run_suite(
        "0.2.0-alpha.12",
        f"{federating_gateway.url}/mcp",
        label="federated",
        expected_failures=harness.EXPECTED_FAILURES,
    )
    assert run.scenarios, run.output[-3000:]
    unexpected = [f for f in run.failures if not f["scenario"].startswith("tasks-")]
    assert run.returncode == 0 and not unexpected, run.report()


@pytest.mark.parametrize(
    ("version", "scenario"),
    [(version, scenario) for version, names in harness.PROTOCOL_SCENARIOS.items() for scenario in names],
)
def test_protocol_scenarios_pass_on_the_gateways_own_tools(
    plain_gateway: ServerProcess, version: str, scenario: str
) -> None:
    run = harness.run_suite(version, f"{plain_gateway.url}/mcp", label="own-tools", scenario=scenario)
    assert run.scenarios, run.output[-3000:]
    assert run.returncode == 0 and not run.failures, run.report()
