"""The MCP door in process, through the SDK's own client: the client's back channel (elicitation, sampling,
logging with `logging/setLevel`), `tools/list_changed` when the registry changes, pagination, and the
resource/prompt provider extension point."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

from gateway import errors
from gateway.app import Gateway, build_gateway
from gateway.config import load_config
from gateway.execution import CallContext, ExecutionContext
from gateway.registry import Capability, Door
from protocols.mcp import McpDoor, PromptProvider, ResourceProvider
from translators.errors import MCP_CODES, mcp_code, mcp_tool_error_text

MODERN = "2026-07-28"


def test_every_core_error_has_an_mcp_code() -> None:
    assert set(errors.ERROR_TYPES) <= set(MCP_CODES)
    assert mcp_code(errors.NotFound("x")) == -32602
    assert mcp_code(errors.PathOutsideRoot("x")) == -32602
    assert mcp_code(errors.Internal("x")) == -32603
    assert (
        mcp_tool_error_text(errors.InvalidParams("bad", data={"loc": "path"})) == 'invalid_params: bad\n{"loc": "path"}'
    )


class AskParams(BaseModel):
    what: str


class AskResult(BaseModel):
    supports: dict[str, bool]
    answer: dict[str, Any] | None = None


async def ask(ctx: ExecutionContext, params: AskParams) -> AskResult:
    """Ask the calling client (test capability)."""
    peer = ctx.peer
    assert peer is not None
    supports = {f: peer.supports(f) for f in ("elicitation", "sampling", "logging")}  # type: ignore[arg-type]
    answer: dict[str, Any] | None = None
    if params.what == "elicit" and supports["elicitation"]:
        answer = await peer.elicit("Your name?", {"type": "object", "properties": {"name": {"type": "string"}}})
    elif params.what == "sample" and supports["sampling"]:
        answer = await peer.create_message(
            {"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}], "maxTokens": 10}
        )
    elif params.what == "log":
        for level in ("debug", "info", "warning", "error"):
            await peer.log(level, {"level": level}, "test")
    return AskResult(supports=supports, answer=answer)


def _capability(name: str) -> Capability[Any, Any]:
    return Capability(name=name, params_model=AskParams, result_model=AskResult, handler=ask, summary="Ask the client.")


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    (tmp_path / "a.py").write_text("x = 1\n")
    config = load_config(
        environ={},
        overrides={"server": {"workspace": str(tmp_path)}, "analysis": {"tree_sitter": False, "watch": False}},
    )
    gw = build_gateway(config)
    gw.registry.add(_capability("ask"))
    await gw.start()
    yield gw
    await gw.core.drain(1.0)
    await gw.close()


@pytest.fixture
async def door(gateway: Gateway) -> AsyncIterator[McpDoor]:
    door = McpDoor(gateway, page_size=5)
    await door.start()
    yield door
    await door.close()


class Inbox:
    """Notifications a client received, with a way to wait for one."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.changed = asyncio.Event()

    async def handler(self, message: Any) -> None:
        self.items.append(message)
        self.changed.set()

    async def wait_for(self, kind: type[Any], timeout: float = 5.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                for item in self.items:
                    if isinstance(item, kind):
                        self.items.remove(item)
                        return item
                self.changed.clear()
                await self.changed.wait()


async def test_peer_elicits_and_samples_through_the_calling_client(door: McpDoor) -> None:
    async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        assert params.message == "Your name?"
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def on_sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        return types.CreateMessageResult(role="assistant", content=types.TextContent(text="hello"), model="m")

    async with Client(door.server, mode="legacy", elicitation_callback=on_elicit, sampling_callback=on_sample) as c:
        elicited = await c.call_tool("ask", {"what": "elicit"})
        assert elicited.structured_content == {
            "supports": {"elicitation": True, "sampling": True, "logging": True},
            "answer": {"action": "accept", "content": {"name": "Ada"}},
        }
        sampled = await c.call_tool("ask", {"what": "sample"})
        assert sampled.structured_content is not None
        assert sampled.structured_content["answer"]["content"] == {"type": "text", "text": "hello"}


async def test_peer_supports_only_what_the_client_declared(door: McpDoor) -> None:
    async with Client(door.server, mode="legacy") as client:
        result = await client.call_tool("ask", {"what": "nothing"})
        assert result.structured_content == {
            "supports": {"elicitation": False, "sampling": False, "logging": True},
            "answer": None,
        }


async def test_peer_log_honours_the_session_log_level(door: McpDoor) -> None:
    received: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        received.append(params)

    async with Client(door.server, mode="legacy", logging_callback=on_log) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await client.set_logging_level("warning")
        await client.call_tool("ask", {"what": "log"})
        assert [(p.level, p.logger) for p in received] == [("warning", "test"), ("error", "test")]


async def test_modern_clients_get_log_messages_at_the_level_their_request_opts_in_to(door: McpDoor) -> None:
    received: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        received.append(params)

    async with Client(door.server, mode=MODERN, log_level="error", logging_callback=on_log) as client:
        result = await client.call_tool("ask", {"what": "log"})
        assert result.structured_content is not None and result.structured_content["supports"]["logging"] is True
        assert [(p.level, p.data) for p in received] == [("error", {"level": "error"})]


async def test_modern_clients_get_no_server_requests(door: McpDoor) -> None:
    async with Client(door.server, mode=MODERN) as client:
        result = await client.call_tool("ask", {"what": "elicit"})
        assert result.structured_content is not None
        assert result.structured_content["supports"] == {"elicitation": False, "sampling": False, "logging": False}


async def test_tools_list_is_paginated(door: McpDoor, gateway: Gateway) -> None:
    async with Client(door.server, mode="legacy") as client:
        names: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            listing = await client.list_tools(cursor=cursor)
            assert len(listing.tools) <= 5
            names += [t.name for t in listing.tools]
            pages += 1
            cursor = listing.next_cursor
            if cursor is None:
                break
        assert pages > 1
        assert names == [cap.name for cap in gateway.registry.for_door(Door.MCP)]
        with pytest.raises(MCPError) as bad:
            await client.list_tools(cursor="not-a-cursor")
        assert bad.value.error.code == -32602


async def test_registry_changes_announce_tools_list_changed(door: McpDoor, gateway: Gateway) -> None:
    inbox = Inbox()
    async with Client(door.server, mode="legacy", message_handler=inbox.handler) as client:
        gateway.registry.add(_capability("ask_again"))
        await inbox.wait_for(types.ToolListChangedNotification)
        assert "ask_again" in {t.name async for t in _all_tools(client)}
        gateway.registry.remove("ask_again")
        await inbox.wait_for(types.ToolListChangedNotification)
        assert "ask_again" not in {t.name async for t in _all_tools(client)}


async def test_registry_changes_reach_modern_listen_streams(door: McpDoor, gateway: Gateway) -> None:
    async with Client(door.server, mode=MODERN) as client, client.listen(tools_list_changed=True) as subscription:
        gateway.registry.add(_capability("ask_modern"))
        async with asyncio.timeout(5):
            event = await anext(subscription)
        assert type(event).__name__ == "ToolsListChanged"
        assert "ask_modern" in {t.name async for t in _all_tools(client)}


async def _all_tools(client: Client) -> AsyncIterator[types.Tool]:
    cursor: str | None = None
    while True:
        listing = await client.list_tools(cursor=cursor, cache_mode="bypass")
        for tool in listing.tools:
            yield tool
        cursor = listing.next_cursor
        if cursor is None:
            return


class NotesProvider(ResourceProvider, PromptProvider):
    """A provider answering in wire form, as a federated upstream does."""

    def __init__(self) -> None:
        self.subscribed: list[tuple[str, bool]] = []

    async def list_resources(self, call: CallContext) -> list[dict[str, Any]]:
        return [{"uri": "notes://one", "name": "one", "mimeType": "text/plain"}]

    async def read_resource(self, call: CallContext, uri: str) -> dict[str, Any] | None:
        if uri != "notes://one":
            return None
        return {"contents": [{"uri": uri, "mimeType": "text/plain", "text": f"read by {call.identity.subject}"}]}

    async def subscribe(self, uri: str, subscribe: bool) -> None:
        self.subscribed.append((uri, subscribe))

    async def list_prompts(self, call: CallContext) -> list[dict[str, Any]]:
        return [{"name": "upstream_hello", "arguments": [{"name": "who", "required": True}]}]

    async def get_prompt(self, call: CallContext, name: str, arguments: Any) -> dict[str, Any] | None:
        if name != "upstream_hello":
            return None
        text = f"hello {arguments['who']}"
        return {"messages": [{"role": "user", "content": {"type": "text", "text": text}}]}


async def test_providers_add_resources_and_prompts(door: McpDoor) -> None:
    inbox = Inbox()
    provider = NotesProvider()
    async with Client(door.server, mode="legacy", message_handler=inbox.handler) as client:
        remove_resources = door.add_resource_provider(provider)
        door.add_prompt_provider(provider)
        await inbox.wait_for(types.ResourceListChangedNotification)
        await inbox.wait_for(types.PromptListChangedNotification)
        assert "notes://one" in [r.uri for r in (await client.list_resources()).resources]
        read = await client.read_resource("notes://one")
        assert read.contents[0].text == "read by local"  # type: ignore[union-attr]
        prompt = await client.get_prompt("upstream_hello", {"who": "Ada"})
        assert prompt.messages[0].content.text == "hello Ada"  # type: ignore[union-attr]

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await client.subscribe_resource("notes://one")
        door.notify_resource_updated("notes://one")
        updated = await inbox.wait_for(types.ResourceUpdatedNotification)
        assert updated.params.uri == "notes://one"
        async with asyncio.timeout(5):
            while ("notes://one", True) not in provider.subscribed:
                await asyncio.sleep(0)

        remove_resources()
        await inbox.wait_for(types.ResourceListChangedNotification)
        with pytest.raises(MCPError) as missing:
            await client.read_resource("notes://one")
        assert missing.value.error.code == -32602
        assert missing.value.error.data == {"uri": "notes://one"}
