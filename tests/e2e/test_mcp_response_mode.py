"""How `/mcp` chooses between a JSON answer and an event stream, per request, in both eras.

2025-11-25 (protocols.mcp.transport): JSON when the answer comes first, else the SDK's event stream.
2026-07-28 (protocols.mcp.http): a request that opted in to nothing but its answer goes to the SDK's
JSON-response mode, with the bridge cancelling it when the client leaves and keeping a slow one alive.
Raw HTTP to see the wire, the SDK client to see that nothing else changed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import mcp_types as types
import pytest
from aiohttp import web
from mcp import Client
from pydantic import BaseModel, Field
from support.mcp_wire import HEADERS, call, open_session, read_stream, sse_events

from gateway.app import Gateway, build_gateway, start_http
from gateway.config import load_config
from gateway.execution import ExecutionContext
from gateway.registry import Capability
from protocols.lsp import LspDoor
from protocols.mcp import McpDoor
from protocols.mcp import http as mcp_http
from protocols.mcp.http import answers_alone
from protocols.mcp.translate import header_checked_schema
from protocols.mcp.transport import DeferringTransport


class PauseParams(BaseModel):
    seconds: float = 0.0
    steps: int = 0
    log: bool = False
    elicit: bool = False


class PauseResult(BaseModel):
    slept: float
    answer: dict[str, Any] | None = None


class RegionParams(BaseModel):
    region: str = Field(json_schema_extra={"x-mcp-header": "Region"})


async def region(ctx: ExecutionContext, params: RegionParams) -> PauseResult:
    """Answer at once (test capability whose argument is mirrored into an `Mcp-Param-Region` header)."""
    return PauseResult(slept=0.0)


CANCELLED: list[asyncio.Event] = []
"""Set when a `pause` call is cancelled (the test that cares puts an event here)."""


async def pause(ctx: ExecutionContext, params: PauseParams) -> PauseResult:
    """Sleep, optionally reporting progress steps, logging or asking the client first (test capability)."""
    try:
        return await _pause(ctx, params)
    except asyncio.CancelledError:
        for event in CANCELLED:
            event.set()
        raise


async def _pause(ctx: ExecutionContext, params: PauseParams) -> PauseResult:
    for step in range(params.steps):
        ctx.progress(f"step {step + 1}", percentage=100.0 * (step + 1) / params.steps)
        await asyncio.sleep(0.01)
    if params.log and ctx.peer is not None:
        await ctx.peer.log("info", {"note": "working"}, "pause")
    answer = None
    if params.elicit and ctx.peer is not None:
        answer = await ctx.peer.elicit("Go on?", {"type": "object", "properties": {"go": {"type": "boolean"}}})
    await asyncio.sleep(params.seconds)
    return PauseResult(slept=params.seconds, answer=answer)


@pytest.fixture
async def base_url(tmp_path: Path) -> AsyncIterator[str]:
    (tmp_path / "small.txt").write_text("hello\n")
    config = load_config(
        environ={},
        overrides={
            "server": {"workspace": str(tmp_path), "http_port": 0, "lsp_port": None},
            "analysis": {"jedi": False, "tree_sitter": False, "watch": False, "index_on_start": False},
        },
    )
    gw: Gateway = build_gateway(config)
    gw.registry.add(
        Capability(name="pause", params_model=PauseParams, result_model=PauseResult, handler=pause, summary="Pause.")
    )
    gw.registry.add(
        Capability(name="region", params_model=RegionParams, result_model=PauseResult, handler=region, summary="R.")
    )
    await gw.start()
    mcp_door = McpDoor(gw)
    await mcp_door.start()
    runner: web.AppRunner | None = None
    try:
        runner, url = await start_http(gw, LspDoor(gw), mcp_door)
        yield url
    finally:
        if runner is not None:
            await runner.cleanup()
        await mcp_door.close()
        await gw.core.drain(1.0)
        await gw.close()


async def test_a_quick_answer_is_plain_json_with_the_session_header(base_url: str) -> None:
    url = f"{base_url}/mcp"
    async with aiohttp.ClientSession() as http:
        headers = await open_session(http, url)
        for request_id in (1, 2):  # the same connection serves the next call: the body was read to its end
            async with http.post(url, json=call(request_id, "read_file", {"path": "small.txt"}), headers=headers) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("application/json")
                assert r.headers["Mcp-Session-Id"] == headers["Mcp-Session-Id"]
                answer = await r.json()
            assert answer["id"] == request_id
            assert answer["result"]["structuredContent"]["text"] == "hello\n"


async def test_progress_makes_it_the_sdk_event_stream_priming_event_first(base_url: str) -> None:
    url = f"{base_url}/mcp"
    async with aiohttp.ClientSession() as http:
        headers = await open_session(http, url)
        body = call(7, "pause", {"steps": 3}, progress_token="p7")
        async with http.post(url, json=body, headers=headers) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
            events = await read_stream(resp, 7)
    priming, *rest = events
    assert priming["data"] == "" and priming["id"] and priming["retry"] == "1000"
    messages = [json.loads(e["data"]) for e in rest]
    assert [m.get("method") for m in messages[:-1]] == ["notifications/progress"] * 3
    assert [m["params"]["progress"] for m in messages[:-1]] == sorted(m["params"]["progress"] for m in messages[:-1])
    assert messages[-1]["result"]["structuredContent"] == {"slept": 0.0, "answer": None}
    assert all(e["id"] for e in rest)  # every event is numbered, so the stream can be resumed


async def test_a_log_message_before_the_answer_makes_it_a_stream(base_url: str) -> None:
    url = f"{base_url}/mcp"
    async with aiohttp.ClientSession() as http:
        headers = await open_session(http, url)
        async with http.post(url, json=call(3, "pause", {"log": True}), headers=headers) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            events = await read_stream(resp, 3)
    methods = [json.loads(e["data"]).get("method") for e in events if e.get("data")]
    assert methods == ["notifications/message", None]


async def test_a_silent_slow_call_becomes_a_resumable_stream_after_the_window(
    base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DeferringTransport, "defer_seconds", 0.05)
    url = f"{base_url}/mcp"
    async with aiohttp.ClientSession() as http:
        headers = await open_session(http, url)
        async with http.post(url, json=call(4, "pause", {"seconds": 1.5}), headers=headers) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            events = sse_events(resp)
            async with asyncio.timeout(0.9):  # the priming event comes before the answer can
                priming = await anext(events)
            assert priming["data"] == "" and priming["id"] and priming["retry"] == "1000"
        # Drop the stream; resume it as SEP-1699 says, `retry` milliseconds later (the server notices the drop
        # meanwhile): the answer comes on the GET stream.
        await asyncio.sleep(int(priming["retry"]) / 1000)
        resumed = {**headers, "Accept": "text/event-stream", "Last-Event-ID": priming["id"]}
        async with http.get(url, headers=resumed) as resp:
            assert resp.status == 200
            events_after = await read_stream(resp, 4)
    answer = json.loads(events_after[-1]["data"])
    assert answer["result"]["structuredContent"] == {"slept": 1.5, "answer": None}


async def test_refusals_are_the_sdks_own(base_url: str) -> None:
    url = f"{base_url}/mcp"
    async with aiohttp.ClientSession() as http:
        headers = await open_session(http, url)
        request = call(5, "read_file", {"path": "small.txt"})
        async with http.post(url, json=request, headers={**headers, "Mcp-Session-Id": "not-a-session"}) as resp:
            assert resp.status == 404
        no_session = {k: v for k, v in headers.items() if k != "Mcp-Session-Id"}
        async with http.post(url, json=request, headers=no_session) as resp:
            assert resp.status == 400  # a request other than initialize needs the session
        async with http.post(url, json=request, headers={**headers, "Accept": "application/json"}) as resp:
            assert resp.status == 406  # the session answers in SSE too, so the client must accept it
        async with http.post(url, data=b"{not json", headers=headers) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == -32700
        # The session still answers.
        async with http.post(url, json=request, headers=headers) as resp:
            assert resp.status == 200 and (await resp.json())["id"] == 5


async def test_the_sdk_client_gets_plain_answers_progress_errors_and_elicitation(base_url: str) -> None:
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"go": True})

    async with Client(f"{base_url}/mcp", mode="legacy", elicitation_callback=on_elicit) as client:
        quick = await client.call_tool("read_file", {"path": "small.txt"})
        assert quick.structured_content is not None and quick.structured_content["text"] == "hello\n"
        stepped = await client.call_tool("pause", {"steps": 2}, progress_callback=on_progress)
        assert stepped.structured_content == {"slept": 0.0, "answer": None}
        assert len(progress) == 2
        asked = await client.call_tool("pause", {"elicit": True})
        assert asked.structured_content == {"slept": 0.0, "answer": {"action": "accept", "content": {"go": True}}}
        failed = await client.call_tool("read_file", {"path": "../outside"})
        assert failed.is_error
        listed = await client.list_tools()
        assert "pause" in {tool.name for tool in listed.tools}


# -- 2026-07-28 ------------------------------------------------------------------------------------------------
MODERN = {**HEADERS, "MCP-Protocol-Version": "2026-07-28"}


def modern_call(request_id: int, name: str, arguments: dict[str, Any], **meta: Any) -> dict[str, Any]:
    envelope = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        **meta,
    }
    params = {"name": name, "arguments": arguments, "_meta": envelope}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def modern_headers(name: str) -> dict[str, str]:
    return {**MODERN, "Mcp-Method": "tools/call", "Mcp-Name": name}


def test_only_requests_that_opted_in_to_nothing_answer_alone() -> None:
    assert answers_alone(modern_call(1, "pause", {}))
    assert answers_alone({"jsonrpc": "2.0", "id": 1, "method": "server/discover"})
    assert not answers_alone(modern_call(1, "pause", {}, progressToken="p"))
    assert not answers_alone(modern_call(1, "pause", {}, **{"io.modelcontextprotocol/logLevel": "info"}))
    assert not answers_alone({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": {}})
    assert not answers_alone({"jsonrpc": "2.0", "method": "notifications/cancelled"})  # no id: not a request
    for malformed in (None, [], "x", {"id": 1}, {"id": 1, "method": 3}, {"id": 1, "method": "m", "params": []}):
        assert not answers_alone(malformed)
    assert not answers_alone({"id": 1, "method": "m", "params": {"_meta": "x"}})


async def test_modern_quick_answers_are_json(base_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        body = modern_call(1, "read_file", {"path": "small.txt"})
        async with http.post(f"{base_url}/mcp", json=body, headers=modern_headers("read_file")) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/json")
            answer = await resp.json()
    assert answer["id"] == 1 and answer["result"]["structuredContent"]["text"] == "hello\n"


async def test_modern_slow_silent_call_is_kept_alive_with_pings_then_answered(
    base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mcp_http, "KEEPALIVE_SECONDS", 0.2)
    async with aiohttp.ClientSession() as http:
        body = modern_call(2, "pause", {"seconds": 0.7})
        async with http.post(f"{base_url}/mcp", json=body, headers=modern_headers("pause")) as resp, asyncio.timeout(5):
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
            raw = (await resp.read()).decode()
    frames = [frame for frame in raw.split("\r\n\r\n") if frame]
    assert frames[:-1] and all(frame == ": ping" for frame in frames[:-1]), frames
    event = dict(line.split(": ", 1) for line in frames[-1].split("\r\n"))
    assert event["event"] == "message"
    answer = json.loads(event["data"])
    assert answer["id"] == 2 and answer["result"]["structuredContent"] == {"slept": 0.7, "answer": None}


async def test_modern_client_leaving_cancels_its_call(base_url: str) -> None:
    cancelled = asyncio.Event()
    CANCELLED.append(cancelled)
    try:
        async with aiohttp.ClientSession() as http:
            body = modern_call(3, "pause", {"seconds": 30})
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    async with http.post(f"{base_url}/mcp", json=body, headers=modern_headers("pause")) as resp:
                        await resp.read()
        # The session (and its connection) closed: the gateway notices and cancels the execution.
        async with asyncio.timeout(5):
            await cancelled.wait()
        async with aiohttp.ClientSession() as http:  # and goes on answering
            body = modern_call(4, "read_file", {"path": "small.txt"})
            async with http.post(f"{base_url}/mcp", json=body, headers=modern_headers("read_file")) as resp:
                assert (await resp.json())["id"] == 4
    finally:
        CANCELLED.remove(cancelled)


async def test_modern_opt_ins_still_get_the_sdks_event_stream(base_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        body = modern_call(5, "pause", {"steps": 2, "log": True}, progressToken="p5")
        body["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = "info"
        async with http.post(f"{base_url}/mcp", json=body, headers=modern_headers("pause")) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            events = await read_stream(resp, 5)
    methods = [json.loads(e["data"]).get("method") for e in events if e.get("data")]
    assert methods == ["notifications/progress", "notifications/progress", "notifications/message", None]


async def test_the_modern_sdk_client_gets_answers_and_progress(base_url: str) -> None:
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with Client(f"{base_url}/mcp", mode="2026-07-28", cache=None) as client:
        await client.list_tools()
        quick = await client.call_tool("read_file", {"path": "small.txt"})
        assert quick.structured_content is not None and quick.structured_content["text"] == "hello\n"
        stepped = await client.call_tool("pause", {"steps": 2}, progress_callback=on_progress)
        assert stepped.structured_content == {"slept": 0.0, "answer": None}
        assert len(progress) == 2
        assert (await client.call_tool("read_file", {"path": "../outside"})).is_error


def test_only_schemas_with_annotated_properties_go_to_the_header_check() -> None:
    plain = Capability(name="p", params_model=PauseParams, result_model=PauseResult, handler=pause, summary="P.")
    annotated = Capability(name="r", params_model=RegionParams, result_model=PauseResult, handler=region, summary="R")
    assert header_checked_schema(plain) is None
    schema = header_checked_schema(annotated)
    assert schema is not None and schema["properties"]["region"]["x-mcp-header"] == "Region"


async def test_modern_mcp_param_headers_are_checked_where_the_schema_asks(base_url: str) -> None:
    url = f"{base_url}/mcp"
    async with aiohttp.ClientSession() as http:
        body = modern_call(8, "region", {"region": "eu"})
        for sent, status in (("eu", 200), ("us", 400)):
            headers = {**modern_headers("region"), "Mcp-Param-Region": sent}
            async with http.post(url, json=body, headers=headers) as resp:
                assert resp.status == status, await resp.text()
                answer = await resp.json()
                assert ("result" in answer) == (status == 200)
        async with http.post(url, json=body, headers=modern_headers("region")) as resp:
            assert resp.status == 400  # the annotated argument is in the body but its header is missing
        # A tool without annotated properties has no header to check: a stray one changes nothing.
        body = modern_call(9, "read_file", {"path": "small.txt"})
        async with http.post(url, json=body, headers={**modern_headers("read_file"), "Mcp-Param-Path": "x"}) as r:
            assert r.status == 200 and (await r.json())["id"] == 9
