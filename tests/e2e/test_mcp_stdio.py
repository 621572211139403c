"""`gateway mcp` over stdio (as Claude Desktop launches it), through the SDK's own client, in both eras."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from support.server import make_workspace

ERAS = {"2025-11-25": "legacy", "2026-07-28": "auto"}
CONFIG = """
[[mcp.prompts]]
name = "explain"
template = "Explain {topic}."
[[mcp.prompts.arguments]]
name = "topic"
required = true
completions = ["closures", "coroutines"]
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_workspace(tmp_path_factory.mktemp("mcp-stdio"))
    for era in ERAS:
        (root / f"src/stdio_{era[:4]}.py").write_text("disk = 1\n")
    return root.resolve()


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mcp-stdio-config") / "gateway.toml"
    path.write_text(CONFIG)
    return path


def command(workspace: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", "mcp", "--workspace", str(workspace), "--config", str(config)]


@asynccontextmanager
async def connect(workspace: Path, config: Path, era: str, **kwargs: Any) -> AsyncIterator[Client]:
    argv = command(workspace, config)
    params = StdioServerParameters(command=argv[0], args=argv[1:], env={"GATEWAY_LOGGING__LEVEL": "WARNING"})
    async with Client(params, mode=ERAS[era], **kwargs) as client:
        assert client.protocol_version == era
        yield client


@pytest.mark.parametrize("era", list(ERAS))
async def test_stdio_tools_resources_prompts_and_notifications(workspace: Path, config: Path, era: str) -> None:
    received: list[Any] = []
    arrived = asyncio.Event()

    async def on_message(message: Any) -> None:
        received.append(message)
        arrived.set()

    path = f"src/stdio_{era[:4]}.py"
    uri = (workspace / path).as_uri()
    async with connect(workspace, config, era, message_handler=on_message) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"read_file", "search", "list_files", "open_document", "diagnostics"} <= names
        read = await client.call_tool("read_file", {"path": "src/app.py", "end_line": 1})
        assert read.structured_content is not None and read.structured_content["text"] == "def hello():\n"
        outside = await client.call_tool("read_file", {"path": "/etc/passwd"})
        assert outside.is_error is True
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("nope", {})
        assert unknown.value.error.code == -32602

        opened = await client.call_tool("open_document", {"path": path, "text": "unsaved = 1\n"})
        assert opened.is_error is False
        assert uri in {r.uri for r in (await client.list_resources()).resources}
        assert (await client.read_resource(uri)).contents[0].text == "unsaved = 1\n"  # type: ignore[union-attr]
        change = {"path": path, "changes": [{"text": "unsaved = 2\n"}]}
        if era == "2025-11-25":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await client.subscribe_resource(uri)
            await client.call_tool("change_document", change)
            async with asyncio.timeout(5):
                while not any(
                    isinstance(m, types.ResourceUpdatedNotification) and m.params.uri == uri for m in received
                ):
                    arrived.clear()
                    await arrived.wait()
        else:
            async with client.listen(resource_subscriptions=[uri]) as subscription:
                await client.call_tool("change_document", change)
                async with asyncio.timeout(5):
                    event = await anext(subscription)
                assert getattr(event, "uri", None) == uri
        assert (await client.read_resource(uri)).contents[0].text == "unsaved = 2\n"  # type: ignore[union-attr]

        prompt = await client.get_prompt("explain", {"topic": "closures"})
        assert prompt.messages[0].content.text == "Explain closures."  # type: ignore[union-attr]
        completed = await client.complete(types.PromptReference(name="explain"), {"name": "topic", "value": "co"})
        assert completed.completion.values == ["coroutines"]


def test_stdout_carries_only_protocol_messages_and_closing_stdin_ends_the_process(
    workspace: Path, config: Path
) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        },
    }
    messages = [initialize, {"jsonrpc": "2.0", "method": "notifications/initialized"}]
    messages.append({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    proc = subprocess.Popen(
        command(workspace, config),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
        proc.stdin.flush()
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]  # every stdout line is a JSON-RPC message
        proc.stdin.close()  # the client is done: the server exits
        assert proc.wait(timeout=30) == 0
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [line["id"] for line in lines] == [1, 2]
    assert lines[0]["result"]["serverInfo"]["name"] == "gateway"
    assert lines[0]["result"]["capabilities"]["tools"] == {"listChanged": True}
    assert any(tool["name"] == "read_file" for tool in lines[1]["result"]["tools"])
