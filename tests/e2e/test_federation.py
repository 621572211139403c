"""Federation: upstream MCP servers' tools, resources and prompts through the gateway, on every door.

A real `gateway serve` federates a stdio upstream (prefix `local_`) and a streamable HTTP upstream that
wants its own bearer token (prefix `r_`). Their tools are called over REST, LSP and (when the MCP door
is there) MCP; the stdio upstream is killed and its tools leave the registry and come back after the
restart. In-process tests pin the empty prefix and the refusal of a clashing name.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
import pytest
from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient
from support.server import ServerProcess, make_workspace, start_gateway
from support.sse import sse_events

from gateway.app import build_gateway
from gateway.config import load_config
from gateway.errors import InvalidParams
from gateway.execution import CallContext

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "mcp"
STDIO_UPSTREAM = FIXTURES / "stdio_upstream.py"
CONFORMANCE_UPSTREAM = FIXTURES / "conformance_upstream.py"
HTTP_UPSTREAM = FIXTURES / "http_upstream.py"
UPSTREAM_TOKEN = "upstream-secret-token"
DOWNSTREAM_TOKEN = "downstream-token-that-must-stay-here"
HAS_MCP_DOOR = importlib.util.find_spec("protocols.mcp") is not None


def _wait_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 20) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line.strip()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"{proc.args!r} did not print {prefix!r}")


@pytest.fixture(scope="module")
def http_upstream() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, str(HTTP_UPSTREAM)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "UPSTREAM_TOKEN": UPSTREAM_TOKEN},
    )
    url = _wait_line(proc, "listening ").split()[1]
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def federated(tmp_path_factory: pytest.TempPathFactory, http_upstream: str) -> Iterator[ServerProcess]:
    root = make_workspace(tmp_path_factory.mktemp("fedws"))
    config = tmp_path_factory.mktemp("fedcfg") / "gateway.toml"
    config.write_text(
        "[analysis]\nindex_on_start = false\nwatch = false\n\n"
        "[[mcp.upstreams]]\n"
        'name = "local"\n'
        f"command = [{json.dumps(sys.executable)}, {json.dumps(str(STDIO_UPSTREAM))}]\n"
        "restart_initial_seconds = 1.0\n\n"
        "[[mcp.upstreams]]\n"
        'name = "remote"\n'
        'prefix = "r_"\n'
        f"url = {json.dumps(http_upstream)}\n"
        'bearer_token_env = "REMOTE_MCP_TOKEN"\n'
    )
    server = start_gateway(root, "--config", str(config), env={"REMOTE_MCP_TOKEN": UPSTREAM_TOKEN})
    yield server
    assert server.stop() == 0


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def capability_names(http: aiohttp.ClientSession, server: ServerProcess) -> dict[str, dict[str, Any]]:
    async with http.get(f"{server.url}/v1/capabilities") as resp:
        assert resp.status == 200
        body = await resp.json()
    items = body["capabilities"] if isinstance(body, dict) else body
    return {c["name"]: c for c in items}


async def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll an async predicate until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def call(http: aiohttp.ClientSession, server: ServerProcess, name: str, params: dict[str, Any]) -> Any:
    async with http.post(f"{server.url}/v1/capabilities/{name}", json=params) as resp:
        return resp.status, await resp.json(content_type=None)


async def federated_ready(http: aiohttp.ClientSession, server: ServerProcess) -> dict[str, dict[str, Any]]:
    async def ready() -> dict[str, dict[str, Any]] | None:
        names = await capability_names(http, server)
        return names if {"local_echo", "local_add", "r_shout"} <= set(names) else None

    result: dict[str, dict[str, Any]] = await wait_for(ready, what="federated tools")
    return result


async def test_upstream_tools_become_capabilities_with_the_upstream_schemas(
    http: aiohttp.ClientSession, federated: ServerProcess
) -> None:
    caps = await federated_ready(http, federated)
    add = caps["local_add"]
    text = json.dumps(add)
    assert '"a"' in text and '"b"' in text and "integer" in text
    async with http.get(f"{federated.url}/openapi.json") as resp:
        openapi = await resp.json()
    assert "/v1/capabilities/local_add" in openapi["paths"]
    assert "/v1/capabilities/r_shout" in openapi["paths"]


async def test_rest_calls_stdio_and_http_upstream_tools(http: aiohttp.ClientSession, federated: ServerProcess) -> None:
    await federated_ready(http, federated)
    status, body = await call(http, federated, "local_echo", {"text": "hi"})
    assert status == 200, body
    assert body["content"][0]["text"] == "echo: hi"
    status, body = await call(http, federated, "local_add", {"a": 2, "b": 40})
    assert status == 200, body
    assert body["structuredContent"] == {"total": 42}
    status, body = await call(http, federated, "r_shout", {"text": "quiet"})
    assert status == 200, body
    assert body["content"][0]["text"] == "QUIET"


async def test_arguments_are_validated_against_the_upstream_input_schema(
    http: aiohttp.ClientSession, federated: ServerProcess
) -> None:
    await federated_ready(http, federated)
    status, body = await call(http, federated, "local_add", {"a": "two", "b": 1})
    assert status == 422, body
    assert body["code"] == "invalid_params"


async def test_the_downstream_token_is_never_forwarded_upstream(
    http: aiohttp.ClientSession, federated: ServerProcess
) -> None:
    await federated_ready(http, federated)
    headers = {"Authorization": f"Bearer {DOWNSTREAM_TOKEN}"}
    async with http.post(f"{federated.url}/v1/capabilities/r_seen_authorization", json={}, headers=headers) as resp:
        body = await resp.json()
    assert resp.status == 200, body
    assert body["content"][0]["text"] == f"Bearer {UPSTREAM_TOKEN}"


async def test_progress_passes_through_to_rest_sse(http: aiohttp.ClientSession, federated: ServerProcess) -> None:
    await federated_ready(http, federated)
    headers = {"Accept": "text/event-stream"}
    events: list[tuple[str, Any]] = []
    async with http.post(f"{federated.url}/v1/capabilities/local_work", json={"steps": 3}, headers=headers) as resp:
        assert resp.status == 200
        async for event in sse_events(resp):
            events.append(event)
    progress = [data for kind, data in events if kind == "progress"]
    assert [p["data"]["progress"] for p in progress] == [1, 2, 3]
    assert progress[-1]["percentage"] == 100
    assert events[-1][0] == "result"
    assert "did 3 steps" in json.dumps(events[-1][1])


async def test_lsp_execute_command_calls_an_upstream_tool(
    http: aiohttp.ClientSession, federated: ServerProcess
) -> None:
    await federated_ready(http, federated)  # the LSP session lists commands when it opens
    assert federated.lsp_url is not None
    parsed = urlparse(federated.lsp_url)
    assert parsed.hostname is not None and parsed.port is not None
    client = LanguageClient("fed-editor", "1.0")
    await client.start_tcp(parsed.hostname, parsed.port)
    try:
        result = await client.initialize_async(
            lsp.InitializeParams(capabilities=lsp.ClientCapabilities(), root_uri=federated.workspace.as_uri())
        )
        client.initialized(lsp.InitializedParams())
        commands = result.capabilities.execute_command_provider
        assert commands is not None and "gateway.local_echo" in commands.commands
        answer = await client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="gateway.local_echo", arguments=[{"text": "from the editor"}])
        )
        assert answer["content"][0]["text"] == "echo: from the editor"
        shouted = await client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="gateway.r_shout", arguments=[{"text": "lsp"}])
        )
        assert shouted["content"][0]["text"] == "LSP"
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()


async def test_a_killed_stdio_upstream_is_withdrawn_and_comes_back(
    http: aiohttp.ClientSession, federated: ServerProcess
) -> None:
    await federated_ready(http, federated)
    status, body = await call(http, federated, "local_pid", {})
    assert status == 200, body
    pid = int(body["content"][0]["text"])
    os.kill(pid, signal.SIGKILL)

    async def withdrawn() -> bool:
        return "local_echo" not in await capability_names(http, federated)

    await wait_for(withdrawn, timeout=10, what="the dead upstream's tools to be withdrawn")
    assert "r_shout" in await capability_names(http, federated)  # the other upstream is untouched

    async def back() -> bool:
        return "local_echo" in await capability_names(http, federated)

    await wait_for(back, timeout=20, what="the restarted upstream's tools")
    status, body = await call(http, federated, "local_pid", {})
    assert status == 200, body
    assert int(body["content"][0]["text"]) != pid
    status, body = await call(http, federated, "local_echo", {"text": "again"})
    assert body["content"][0]["text"] == "echo: again"


@pytest.mark.skipif(not HAS_MCP_DOOR, reason="the MCP door (protocols/mcp) is not there yet")
async def test_mcp_door_lists_and_calls_upstream_tools_with_progress_and_logging(
    http: aiohttp.ClientSession, federated: ServerProcess
) -> None:
    from mcp.client import Client
    from mcp.shared.exceptions import MCPDeprecationWarning

    await federated_ready(http, federated)
    logs: list[Any] = []
    progress: list[tuple[float, float | None]] = []

    async def on_log(params: Any) -> None:
        logs.append(params.data)

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total))

    async with Client(f"{federated.url}/mcp", logging_callback=on_log, mode="legacy") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"local_echo", "local_add", "r_shout"} <= set(tools)
        assert tools["local_add"].input_schema["properties"].keys() >= {"a", "b"}
        result = await client.call_tool("local_echo", {"text": "mcp"})
        assert result.content[0].text == "echo: mcp"  # type: ignore[union-attr]
        added = await client.call_tool("local_add", {"a": 1, "b": 2})
        assert added.structured_content == {"total": 3}
        # logging/setLevel is the 2025-11-25 way (this client's era); the SDK flags it as gone in 2026-07-28
        with pytest.warns(MCPDeprecationWarning):
            await client.session.set_logging_level("debug")
        await client.call_tool("local_work", {"steps": 2}, progress_callback=on_progress)
    assert len(progress) == 2 and progress[0][0] < progress[1][0]
    assert progress[-1][0] == progress[-1][1]  # done: progress reached its total (raw or as a percentage)
    assert any("step 2 of 2" in str(entry) for entry in logs)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] != "Z"
    except FileNotFoundError:
        return False


async def test_a_stdio_upstream_dies_with_a_killed_gateway(
    tmp_path_factory: pytest.TempPathFactory, http: aiohttp.ClientSession
) -> None:
    root = make_workspace(tmp_path_factory.mktemp("orphanws"))
    config = root.parent / "orphan.toml"
    config.write_text(
        '[analysis]\nindex_on_start = false\nwatch = false\n\n[[mcp.upstreams]]\nname = "local"\n'
        f"command = [{json.dumps(sys.executable)}, {json.dumps(str(STDIO_UPSTREAM))}]\n"
    )
    server = start_gateway(root, "--config", str(config))
    try:

        async def ready() -> bool:
            return "local_pid" in await capability_names(http, server)

        await wait_for(ready, what="the upstream's tools")
        status, body = await call(http, server, "local_pid", {})
        assert status == 200, body
        pid = int(body["content"][0]["text"])
        assert _alive(pid)
    finally:
        server.proc.kill()  # SIGKILL: no shutdown code runs in the gateway
        server.proc.wait(10)

    async def gone() -> bool:
        return not _alive(pid)

    await wait_for(gone, timeout=10, what="the upstream to die with the gateway")


# -- in-process: schemas -------------------------------------------------------------------------------------
def test_params_model_reports_and_enforces_the_exact_upstream_schema() -> None:
    from protocols.mcp_client.schema import inline_local_refs, params_model, result_model

    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"address": {"type": "object", "properties": {"city": {"type": "string"}}}},
        "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
        "required": ["name"],
        "additionalProperties": False,
    }
    model = params_model("x_tool", schema)
    assert model.model_json_schema() == schema
    ok = model.model_validate({"name": "n", "address": {"city": "c"}})
    assert ok.arguments() == {"name": "n", "address": {"city": "c"}}
    for bad in ({}, {"name": 1}, {"name": "n", "extra": True}, {"name": "n", "address": {"city": 3}}):
        with pytest.raises(ValueError):
            model.model_validate(bad)
    inlined = inline_local_refs(schema)
    assert "$defs" not in inlined and "$schema" not in inlined
    assert inlined["properties"]["address"] == {"type": "object", "properties": {"city": {"type": "string"}}}
    recursive = {"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"}
    assert inline_local_refs(recursive)["properties"]["next"]["type"] == "object"
    result = result_model("x_tool", {"type": "object", "properties": {"total": {"type": "integer"}}})
    assert result.model_json_schema()["properties"]["structuredContent"]["properties"]["total"] == {"type": "integer"}
    wire = {"content": [{"type": "text", "text": "t"}], "isError": True}
    parsed = result.model_validate(wire)
    assert parsed.wire() == wire and parsed.is_error and not parsed.input_required


# -- in-process: names, prefixes and clashes ----------------------------------------------------------------
def _gateway_config(tmp_path: Path, prefix: str) -> Any:
    return load_config(
        overrides={
            "server": {"workspace": str(make_workspace(tmp_path / "ws"))},
            "analysis": {"jedi": False, "tree_sitter": False, "index_on_start": False, "watch": False},
            "mcp": {
                "upstreams": [{"name": "local", "prefix": prefix, "command": [sys.executable, str(STDIO_UPSTREAM)]}]
            },
        }
    )


async def test_empty_prefix_keeps_upstream_names_and_refuses_a_clash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gw = build_gateway(_gateway_config(tmp_path, ""))
    builtin = gw.registry.get("read_file")
    caplog.set_level(logging.ERROR, logger="protocols.mcp_client")
    await gw.start()
    try:
        assert gw.federation is not None
        await gw.federation.wait_ready(20)
        upstream = gw.federation.upstreams["local"]
        assert upstream.state == "running"
        assert "echo" in gw.registry and gw.registry.get("echo").tags == ("federated", "local")
        assert gw.registry.get("read_file") is builtin  # the built-in keeps its name
        assert "read_file" in upstream.skipped
        assert any("read_file" in r.getMessage() and "not federated" in r.getMessage() for r in caplog.records)
        result = await gw.core.execute(CallContext(), "echo", {"text": "plain"})
        assert result.model_dump()["content"][0]["text"] == "echo: plain"
        with pytest.raises(InvalidParams):
            await gw.core.execute(CallContext(), "add", {"a": 1})
    finally:
        await gw.close()
    assert "echo" not in gw.registry  # withdrawn on close


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_http_upstream(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(HTTP_UPSTREAM), str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "UPSTREAM_TOKEN": UPSTREAM_TOKEN},
    )
    _wait_line(proc, "listening ")
    return proc


async def test_an_http_upstream_that_goes_away_is_withdrawn_and_reconnected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from protocols.mcp_client import upstream as upstream_module

    monkeypatch.setattr(upstream_module, "HEALTH_CHECK_SECONDS", 0.3)
    port = _free_port()
    proc = _start_http_upstream(port)
    config = load_config(
        overrides={
            "server": {"workspace": str(make_workspace(tmp_path / "ws"))},
            "analysis": {"jedi": False, "tree_sitter": False, "index_on_start": False, "watch": False},
            "mcp": {
                "upstreams": [
                    {
                        "name": "remote",
                        "url": f"http://127.0.0.1:{port}/mcp",
                        "bearer_token_env": "FED_TEST_TOKEN",
                        "restart_initial_seconds": 0.2,
                        "restart_max_seconds": 0.5,
                        "max_restarts": 100,
                    }
                ]
            },
        }
    )
    monkeypatch.setenv("FED_TEST_TOKEN", UPSTREAM_TOKEN)
    gw = build_gateway(config)
    await gw.start()
    try:
        assert gw.federation is not None
        await gw.federation.wait_ready(20)
        assert "remote_shout" in gw.registry
        proc.terminate()
        proc.wait(10)

        async def withdrawn() -> bool:
            return "remote_shout" not in gw.registry

        await wait_for(withdrawn, timeout=10, what="the unreachable upstream's tools to be withdrawn")
        proc = _start_http_upstream(port)

        async def back() -> bool:
            return "remote_shout" in gw.registry

        await wait_for(back, timeout=20, what="the reconnected upstream's tools")
        result = await gw.core.execute(CallContext(), "remote_shout", {"text": "again"})
        assert result.model_dump()["content"][0]["text"] == "AGAIN"
    finally:
        await gw.close()
        proc.terminate()
        proc.wait(10)


async def test_federated_resources_and_prompts_are_offered_to_the_mcp_door(tmp_path: Path) -> None:
    gw = build_gateway(_gateway_config(tmp_path, "local_"))
    await gw.start()
    try:
        assert gw.federation is not None
        await gw.federation.wait_ready(20)
        federation = gw.federation
        assert [r["uri"] for r in federation.list_resources()] == ["fixture://readme"]
        read = await federation.read_resource("fixture://readme")
        assert read is not None and read["contents"][0]["text"] == "federated readme"
        assert await federation.read_resource("fixture://nothing") is None
        assert [p["name"] for p in federation.list_prompts()] == ["local_greet"]
        prompt = await federation.get_prompt("local_greet", {"name": "Ada"})
        assert prompt is not None and "Ada" in json.dumps(prompt)
        assert await federation.get_prompt("greet") is None
        tool = gw.registry.get("local_echo")
        assert tool.read_only and not tool.destructive
        assert not gw.registry.get("local_work").read_only
    finally:
        await gw.close()


# -- in-process: the calling client's back channel ----------------------------------------------------------
class FakePeer:
    """A downstream client's back channel, as the MCP door would provide it."""

    def __init__(self) -> None:
        self.elicited: list[tuple[str, dict[str, Any]]] = []
        self.sampled: list[dict[str, Any]] = []
        self.logs: list[tuple[str, Any]] = []

    def supports(self, feature: str) -> bool:
        return True

    async def elicit(self, message: str, requested_schema: dict[str, Any]) -> dict[str, Any]:
        self.elicited.append((message, requested_schema))
        return {"action": "accept", "content": {"username": "ada", "email": "ada@example.com", "name": "Ada"}}

    async def create_message(self, params: dict[str, Any]) -> dict[str, Any]:
        self.sampled.append(params)
        return {"role": "assistant", "content": {"type": "text", "text": "Paris"}, "model": "fake"}

    async def log(self, level: str, data: Any, logger: str | None = None) -> None:
        self.logs.append((level, data))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_elicitation_sampling_logging_and_progress_reach_the_calling_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    from protocols.mcp_client import upstream as upstream_module

    monkeypatch.setattr(upstream_module, "CLIENT_MODE", mode)
    config = load_config(
        overrides={
            "server": {"workspace": str(make_workspace(tmp_path / "ws"))},
            "analysis": {"jedi": False, "tree_sitter": False, "index_on_start": False, "watch": False},
            "mcp": {"upstreams": [{"name": "c", "prefix": "", "command": [sys.executable, str(CONFORMANCE_UPSTREAM)]}]},
        }
    )
    gw = build_gateway(config)
    await gw.start()
    try:
        assert gw.federation is not None
        await gw.federation.wait_ready(20)
        era = gw.federation.upstreams["c"].protocol_version
        assert (era == "2026-07-28") == (mode == "auto")
        peer = FakePeer()
        result = await gw.core.execute(CallContext(peer=peer), "test_elicitation", {"message": "Who are you?"})
        text = result.model_dump()["content"][0]["text"]
        assert text.startswith("User response: action=accept") and "ada@example.com" in text
        assert peer.elicited[0][0] == "Who are you?"
        assert peer.elicited[0][1]["required"] == ["username", "email"]
        result = await gw.core.execute(CallContext(peer=peer), "test_sampling", {"prompt": "Capital?"})
        assert result.model_dump()["content"][0]["text"] == "LLM response: Paris"
        assert peer.sampled[0]["maxTokens"] == 100
        reports: list[Any] = []
        await gw.core.execute(CallContext(peer=peer, on_progress=reports.append), "test_tool_with_progress", {})
        assert [r.data["progress"] for r in reports] == [0, 50, 100]
        assert [r.percentage for r in reports] == [0, 50, 100]
        await gw.core.execute(CallContext(peer=peer), "test_tool_with_logging", {})
        assert [data for _, data in peer.logs] == [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ]
        with pytest.raises(Exception, match="does not support"):
            await gw.core.execute(CallContext(), "test_sampling", {"prompt": "no peer"})
    finally:
        await gw.close()


async def test_a_2026_client_gets_the_upstreams_input_required_result_and_retries_through_the_gateway(
    tmp_path: Path,
) -> None:
    from protocols.mcp_client import META_INPUT_REQUIRED, META_INPUT_RESPONSES, META_REQUEST_STATE

    config = load_config(
        overrides={
            "server": {"workspace": str(make_workspace(tmp_path / "ws"))},
            "analysis": {"jedi": False, "tree_sitter": False, "index_on_start": False, "watch": False},
            "mcp": {"upstreams": [{"name": "c", "prefix": "", "command": [sys.executable, str(CONFORMANCE_UPSTREAM)]}]},
        }
    )
    gw = build_gateway(config)
    await gw.start()
    try:
        assert gw.federation is not None
        await gw.federation.wait_ready(20)
        first = await gw.core.execute(
            CallContext(meta={META_INPUT_REQUIRED: True}), "test_input_required_result_request_state", {}
        )
        wire = first.model_dump()
        assert wire["resultType"] == "input_required" and "confirm" in wire["inputRequests"]
        retry = {
            META_INPUT_REQUIRED: True,
            META_INPUT_RESPONSES: {"confirm": {"action": "accept", "content": {"ok": True}}},
            META_REQUEST_STATE: wire["requestState"],
        }
        done = await gw.core.execute(CallContext(meta=retry), "test_input_required_result_request_state", {})
        assert "state-ok" in done.model_dump()["content"][0]["text"]
        prompt = await gw.federation.get_prompt(
            "test_input_required_result_prompt", None, CallContext(meta={META_INPUT_REQUIRED: True})
        )
        assert prompt is not None and prompt["resultType"] == "input_required"
        answered = await gw.federation.get_prompt(
            "test_input_required_result_prompt", None, CallContext(peer=FakePeer())
        )
        assert answered is not None and answered["messages"]
    finally:
        await gw.close()
