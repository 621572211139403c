"""A 2025-era tool that closes its own stream for polling (SEP-1699 `close_sse_stream`) while the gateway's
transport still waits to answer in JSON (protocols.mcp.transport): the client gets the priming event
and the end of the stream, and resumes with `Last-Event-ID` to the answer. An SDK `MCPServer` supplies
the tool; the gateway's own session manager and aiohttp bridge serve it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from mcp.server.mcpserver import Context, MCPServer
from support.mcp_wire import call, open_session, read_stream, sse_events

from protocols.mcp.asgi import serve_asgi
from protocols.mcp.transport import SessionManager


@pytest.fixture
async def url() -> AsyncIterator[str]:
    server = MCPServer("polling")

    @server.tool()
    async def poll_me(ctx: Context) -> str:
        """Close this call's stream, then answer a moment later."""
        await ctx.close_sse_stream()
        await asyncio.sleep(0.2)
        return "done"

    manager = SessionManager(app=server._lowlevel_server)

    async def handle(request: web.Request) -> web.StreamResponse:
        return await serve_asgi(manager.handle_request, request)  # type: ignore[arg-type]

    started, stop = asyncio.Event(), asyncio.Event()

    async def run_manager() -> None:  # anyio scopes are left by the task that entered them
        async with manager.run():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run_manager())
    await asyncio.wait_for(started.wait(), 5)
    app = web.Application()
    app.router.add_route("*", "/mcp", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/mcp"
    finally:
        await runner.cleanup()
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_a_stream_closed_for_polling_before_anything_came_resumes_to_the_answer(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        headers = await open_session(http, url)
        async with http.post(url, json=call(1, "poll_me", {}), headers=headers) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            async with asyncio.timeout(5):
                events = [event async for event in sse_events(resp)]
        assert len(events) == 1, events  # the priming event, then the stream ends
        priming = events[0]
        assert priming["data"] == "" and priming["id"] and priming["retry"]
        resumed = {**headers, "Accept": "text/event-stream", "Last-Event-ID": priming["id"]}
        async with http.get(url, headers=resumed) as resp:
            assert resp.status == 200
            answer = json.loads((await read_stream(resp, 1))[-1]["data"])
    assert answer["result"]["content"][0]["text"] == "done"
