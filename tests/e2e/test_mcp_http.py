"""The MCP door over streamable HTTP at `/mcp` of a real `gateway serve`, through the SDK's own client, in
both protocol eras: `mode="legacy"` opens a 2025-11-25 session with `initialize`; `mode="auto"` probes
`server/discover` and speaks 2026-07-28 (per-request envelope, `subscriptions/listen`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from support.mcp_wire import HEADERS, sse_events
from support.server import ServerProcess, make_workspace, start_gateway

ERAS = {"2025-11-25": "legacy", "2026-07-28": "auto"}
FILES = 4000  # small files, so that a search takes a moment (about a second)

CONFIG = """
[[mcp.prompts]]
name = "review"
description = "Review a file"
template = "Review {path} with a focus on {focus}. Keep {braces} as they are."
[[mcp.prompts.arguments]]
name = "path"
required = true
[[mcp.prompts.arguments]]
name = "focus"
completions = ["security", "speed", "style"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = make_workspace(tmp_path_factory.mktemp("mcp-http"))
    line = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho\n"
    for package in range(40):
        folder = root / "many" / f"pkg{package}"
        folder.mkdir(parents=True)
        for index in range(FILES // 40):
            (folder / f"m{index}.py").write_text(line * 40 + f"needle_{package}_{index} = 1\n")
    for era in ERAS:
        (root / f"doc_{era[:4]}.py").write_text("on_disk = True\n")
    config = tmp_path_factory.mktemp("mcp-http-config") / "gateway.toml"
    config.write_text(CONFIG)
    process = start_gateway(root, "--config", str(config))
    yield process
    assert process.stop() == 0


@pytest.fixture(params=list(ERAS), ids=list(ERAS))
def era(request: pytest.FixtureRequest) -> str:
    version: str = request.param
    return version


@asynccontextmanager
async def connect(server: ServerProcess, era: str, **kwargs: Any) -> AsyncIterator[Client]:
    async with Client(server.url + "/mcp", mode=ERAS[era], **kwargs) as client:
        assert client.protocol_version == era
        yield client


async def rest(server: ServerProcess, name: str, params: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.post(f"{server.url}/v1/capabilities/{name}", json=params) as resp:
        body: dict[str, Any] = await resp.json()
        assert resp.status == 200, body
        return body


async def cancelled_searches(server: ServerProcess) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/metrics") as resp:
        text = await resp.text()
    pattern = r'gateway_executions_total\{capability="search",door="mcp",status="cancelled"\} ([0-9.e+]+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


class Inbox:
    """Server notifications a client received (2025-era sessions), with a way to wait for one."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.changed = asyncio.Event()

    async def handler(self, message: Any) -> None:
        self.items.append(message)
        self.changed.set()

    async def wait_for(self, kind: type[Any], timeout: float = 5.0, **fields: Any) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                for item in self.items:
                    params = getattr(item, "params", None)
                    if isinstance(item, kind) and all(getattr(params, k, None) == v for k, v in fields.items()):
                        self.items.remove(item)
                        return item
                self.changed.clear()
                await self.changed.wait()


# -- tools --------------------------------------------------------------------------------------------------
async def test_tools_are_the_registry_capabilities_with_schemas_and_hints(server: ServerProcess, era: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/v1/capabilities") as resp:
        capabilities = (await resp.json())["capabilities"]
    expected = sorted(c["name"] for c in capabilities if "mcp" in c["doors"])
    async with connect(server, era) as client:
        listing = await client.list_tools()
        assert listing.next_cursor is None
        tools = {t.name: t for t in listing.tools}
        assert sorted(tools) == expected
        assert {"read_file", "search", "list_files", "open_document", "change_document"} <= set(tools)
        read_file = tools["read_file"]
        assert read_file.input_schema["type"] == "object"
        assert "path" in read_file.input_schema["properties"]
        assert read_file.input_schema["required"] == ["path"]
        assert read_file.output_schema is not None and read_file.output_schema["type"] == "object"
        assert read_file.description is not None and read_file.description.startswith("Read a file")
        assert read_file.annotations == types.ToolAnnotations(
            title=None, read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        )
        change = tools["change_document"].annotations
        assert change is not None and change.read_only_hint is False and change.idempotent_hint is False


async def test_read_file_answers_structured_content_and_the_same_json_as_text(server: ServerProcess, era: str) -> None:
    async with connect(server, era) as client:
        result = await client.call_tool("read_file", {"path": "notes.md"})
        assert result.is_error is False
        assert result.structured_content is not None
        assert result.structured_content["text"] == "# Notes\n\nhello from 😀 and 中文\n"
        assert result.structured_content["source"] == "disk"
        assert len(result.content) == 1 and isinstance(result.content[0], types.TextContent)
        assert json.loads(result.content[0].text) == result.structured_content


async def test_list_files_and_search(server: ServerProcess, era: str) -> None:
    async with connect(server, era) as client:
        listed = await client.call_tool("list_files", {"glob": "*.md"})
        assert listed.structured_content is not None
        assert [item["path"] for item in listed.structured_content["items"]] == ["notes.md"]
        found = await client.call_tool("search", {"query": "hello world", "glob": "src/*.py"})
        assert found.structured_content is not None
        assert [(m["path"], m["line"]) for m in found.structured_content["items"]] == [("src/app.py", 2)]


async def test_path_outside_the_root_is_a_tool_error(server: ServerProcess, era: str) -> None:
    async with connect(server, era) as client:
        result = await client.call_tool("read_file", {"path": "../outside.txt"})
        assert result.is_error is True
        assert result.structured_content is None
        text = result.content[0].text  # type: ignore[union-attr]
        assert text.startswith("path_outside_root: ")


async def test_bad_arguments_are_a_tool_error_the_model_can_read(server: ServerProcess, era: str) -> None:
    async with connect(server, era) as client:
        result = await client.call_tool("read_file", {"start_line": 0})
        assert result.is_error is True
        text = result.content[0].text  # type: ignore[union-attr]
        assert text.startswith("invalid_params: invalid params for read_file")
        assert '"loc": "path"' in text and '"loc": "start_line"' in text


async def test_unknown_tool_is_a_protocol_error(server: ServerProcess, era: str) -> None:
    async with connect(server, era) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("no_such_tool", {})
        assert raised.value.error.code == -32602
        assert "no_such_tool" in raised.value.error.message


async def test_malformed_requests_get_json_rpc_errors(server: ServerProcess) -> None:
    url = server.url + "/mcp"
    headers = HEADERS
    modern = {**headers, "MCP-Protocol-Version": "2026-07-28"}
    async with aiohttp.ClientSession() as http:
        for sent in (headers, modern):
            async with http.post(url, data=b"{not json", headers=sent) as resp:
                assert resp.status == 400
                assert (await resp.json())["error"]["code"] == -32700
        no_envelope = {"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {}}
        async with http.post(url, json=no_envelope, headers={**modern, "Mcp-Method": "tools/list"}) as resp:
            assert resp.status == 400
            body = await resp.json()
            assert body["id"] == 7 and body["error"]["code"] == -32602
        async with http.post(url, json=[no_envelope], headers=modern) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == -32600
        async with http.put(url, json=no_envelope, headers=headers) as resp:
            assert resp.status == 405


# -- progress and cancellation ---------------------------------------------------------------------------------
async def test_search_progress_arrives_before_the_result(server: ServerProcess, era: str) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async with connect(server, era) as client:
        result = await client.call_tool("search", {"query": "needle_", "limit": 5}, progress_callback=on_progress)
        seen_at_result = len(progress)
    assert result.structured_content is not None
    assert result.structured_content["total"] == FILES
    assert result.structured_content["files_scanned"] >= FILES
    assert seen_at_result >= 3  # the start, at least one step while scanning, and the end
    values = [value for value, _, _ in progress]
    assert values == sorted(set(values)) and values[-1] == 100.0
    assert all(total == 100.0 for _, total, _ in progress)
    assert progress[-1][2] is not None and progress[-1][2].startswith("scanned ")


async def test_cancelling_a_search_cancels_its_execution(server: ServerProcess, era: str) -> None:
    before = await cancelled_searches(server)
    started = asyncio.Event()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        started.set()

    async with connect(server, era) as client:
        call = asyncio.create_task(client.call_tool("search", {"query": "needle_"}, progress_callback=on_progress))
        async with asyncio.timeout(10):
            await started.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        async with asyncio.timeout(10):
            while await cancelled_searches(server) <= before:
                await asyncio.sleep(0.05)  # polling a metric with a deadline: there is no event to await
        # The connection outlives the cancelled call.
        still = await client.call_tool("read_file", {"path": "src/util.py"})
        assert still.structured_content is not None and still.structured_content["text"] == "HELLO = 1\n"


async def test_shutdown_ends_open_streams_and_exits_cleanly(tmp_path_factory: pytest.TempPathFactory) -> None:
    own = start_gateway(make_workspace(tmp_path_factory.mktemp("mcp-shutdown")))
    stack = contextlib.AsyncExitStack()
    try:
        legacy = await stack.enter_async_context(Client(own.url + "/mcp", mode="legacy"))
        modern = await stack.enter_async_context(Client(own.url + "/mcp", mode="auto"))
        await stack.enter_async_context(modern.listen(tools_list_changed=True))
        assert (await legacy.call_tool("read_file", {"path": "src/util.py"})).is_error is False
        # SIGINT while a session's GET stream and a listen stream are open: both end, the process exits 0.
        assert await asyncio.to_thread(own.stop, signal.SIGINT, 15) == 0
    finally:
        with contextlib.suppress(Exception):  # the server is gone; the clients' goodbyes fail
            async with asyncio.timeout(10):
                await stack.aclose()
        if own.proc.poll() is None:
            own.proc.kill()


async def test_a_dropped_stream_resumes_with_last_event_id(server: ServerProcess) -> None:
    url = server.url + "/mcp"
    headers = HEADERS
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
    }
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "search", "arguments": {"query": "needle_", "limit": 1}, "_meta": {"progressToken": "p"}},
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=initialize, headers=headers) as resp:
            session = {"Mcp-Session-Id": resp.headers["Mcp-Session-Id"], "MCP-Protocol-Version": "2025-11-25"}
            assert [json.loads(e["data"])["id"] async for e in sse_events(resp) if e.get("data")] == [1]
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        async with http.post(url, json=initialized, headers={**headers, **session}) as resp:
            assert resp.status == 202
        # The call's stream starts with a priming event (an id, no data, a retry hint); drop it after a progress.
        resp = await http.post(url, json=call, headers={**headers, **session})
        events = sse_events(resp)
        priming = await anext(events)
        assert priming["data"] == "" and priming["id"] and priming["retry"] == "1000"
        while True:
            event = await anext(events)
            if event.get("data") and json.loads(event["data"]).get("method") == "notifications/progress":
                break
        last_id = event["id"]
        resp.close()  # the connection drops mid-call
        # SEP-1699: a client waits `retry` milliseconds before resuming (the server notices the drop meanwhile).
        await asyncio.sleep(int(priming["retry"]) / 1000)
        resumed = {**headers, **session, "Accept": "text/event-stream", "Last-Event-ID": last_id}
        async with http.get(url, headers=resumed) as resp:
            assert resp.status == 200
            async for event in sse_events(resp):
                message = json.loads(event["data"]) if event.get("data") else {}
                if message.get("id") == 2:
                    assert message["result"]["structuredContent"]["total"] == FILES
                    break
                assert message.get("method", "notifications/progress") == "notifications/progress"
            else:
                pytest.fail("the resumed stream ended without the result")
        async with http.delete(url, headers=session) as resp:
            assert resp.status in (200, 204)


# -- resources -----------------------------------------------------------------------------------------------
async def test_open_documents_are_resources_with_unsaved_text_and_change_notifications(
    server: ServerProcess, era: str
) -> None:
    path = f"doc_{era[:4]}.py"
    inbox = Inbox()
    async with connect(server, era, message_handler=inbox.handler) as client:
        await rest(server, "open_document", {"path": path, "text": "unsaved = 1\n"})
        uri = (server.workspace.resolve() / path).as_uri()
        listed = {r.uri: r for r in (await client.list_resources()).resources}
        assert uri in listed and listed[uri].name == path
        assert f"gateway://diagnostics/{path}" in listed
        read = await client.read_resource(uri)
        assert read.contents[0].text == "unsaved = 1\n"  # type: ignore[union-attr]

        async def change(text: str) -> None:
            change_params = {"path": path, "changes": [{"text": text}]}
            await rest(server, "change_document", change_params)

        if era == "2025-11-25":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await client.subscribe_resource(uri)
            # The session's GET stream (which carries the notification) opens alongside; retry until it is there.
            for attempt in range(20):
                await change(f"unsaved = {attempt + 2}\n")
                try:
                    await inbox.wait_for(types.ResourceUpdatedNotification, timeout=0.5, uri=uri)
                    break
                except TimeoutError:
                    continue
            else:
                pytest.fail("no notifications/resources/updated")
            await rest(server, "close_document", {"path": path})
            await inbox.wait_for(types.ResourceListChangedNotification)
        else:
            async with client.listen(resources_list_changed=True, resource_subscriptions=[uri]) as subscription:
                await change("unsaved = 2\n")
                async with asyncio.timeout(5):
                    event = await anext(subscription)
                assert (type(event).__name__, getattr(event, "uri", None)) == ("ResourceUpdated", uri)
                await rest(server, "close_document", {"path": path})
                async with asyncio.timeout(5):
                    while type(await anext(subscription)).__name__ != "ResourcesListChanged":
                        pass
        assert uri not in {r.uri for r in (await client.list_resources()).resources}
        assert (await client.read_resource(uri)).contents[0].text == "on_disk = True\n"  # type: ignore[union-attr]


async def test_any_file_is_readable_through_the_template_with_path_completion(server: ServerProcess, era: str) -> None:
    async with connect(server, era) as client:
        templates = {t.name: t for t in (await client.list_resource_templates()).resource_templates}
        file_template = templates["workspace-file"].uri_template
        root_uri = server.workspace.resolve().as_uri()
        assert file_template == root_uri + "/{+path}"
        read = await client.read_resource(root_uri + "/src/app.py")
        assert read.contents[0].text.startswith("def hello():")  # type: ignore[union-attr]
        assert read.contents[0].mime_type == "text/x-python"

        completed = await client.complete(
            types.ResourceTemplateReference(uri=file_template), {"name": "path", "value": "src/"}
        )
        assert completed.completion.values == ["src/app.py", "src/util.py"]
        assert (
            await client.complete(types.ResourceTemplateReference(uri=file_template), {"name": "path", "value": "not"})
        ).completion.values == ["notes.md"]

        diagnostics = await client.read_resource("gateway://diagnostics/src/app.py")
        assert json.loads(diagnostics.contents[0].text)["path"] == "src/app.py"  # type: ignore[union-attr]

        for bad in ("file:///etc/passwd", root_uri + "/../escape.txt", "nope://x", root_uri + "/missing.txt"):
            with pytest.raises(MCPError) as raised:
                await client.read_resource(bad)
            assert raised.value.error.code == -32602, bad


# -- prompts ----------------------------------------------------------------------------------------------------
async def test_prompts_from_config_with_argument_completion(server: ServerProcess, era: str) -> None:
    async with connect(server, era) as client:
        prompts = (await client.list_prompts()).prompts
        assert [(p.name, [(a.name, a.required) for a in p.arguments or []]) for p in prompts] == [
            ("review", [("path", True), ("focus", False)])
        ]
        got = await client.get_prompt("review", {"path": "src/app.py", "focus": "security"})
        assert got.messages[0].role == "user"
        assert got.messages[0].content.text == (  # type: ignore[union-attr]
            "Review src/app.py with a focus on security. Keep {braces} as they are."
        )
        for name, arguments in (("review", {"focus": "speed"}), ("missing", {})):
            with pytest.raises(MCPError) as raised:
                await client.get_prompt(name, arguments)
            assert raised.value.error.code == -32602

        reference = types.PromptReference(name="review")
        completed = await client.complete(reference, {"name": "focus", "value": "s"})
        assert completed.completion.values == ["security", "speed", "style"]
        assert (await client.complete(reference, {"name": "focus", "value": "SP"})).completion.values == ["speed"]
        assert (await client.complete(reference, {"name": "path", "value": ""})).completion.values == []
