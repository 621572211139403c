"""The aiohttp-to-ASGI bridge (protocols.mcp.asgi) on a real aiohttp server and client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from protocols.mcp.asgi import serve_asgi


class EventApp:
    """An ASGI app answering with an event stream: `first` at once (if any), then one event per release."""

    def __init__(self, first: bytes | None) -> None:
        self.first = first
        self.release: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # the (empty) request body
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if self.first is not None:
            await send({"type": "http.response.body", "body": self.first, "more_body": True})
        while (event := await self.release.get()) is not None:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@pytest.fixture
async def serve() -> AsyncIterator[tuple[str, dict[str, EventApp]]]:
    apps: dict[str, EventApp] = {"quiet": EventApp(None), "primed": EventApp(b"id: 1\ndata: \n\n")}

    async def handle(request: web.Request) -> web.StreamResponse:
        return await serve_asgi(apps[request.match_info["name"]], request)

    app = web.Application()
    app.router.add_get("/{name}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", apps
    finally:
        for event_app in apps.values():
            event_app.release.put_nowait(None)
        await runner.cleanup()


async def test_a_quiet_event_stream_still_opens_at_once(serve: tuple[str, dict[str, EventApp]]) -> None:
    """Headers wait a moment for a first event to share their packet; with none coming they go alone."""
    base, apps = serve
    async with aiohttp.ClientSession() as http, asyncio.timeout(5), http.get(f"{base}/quiet") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
        apps["quiet"].release.put_nowait(b"data: later\n\n")
        assert await resp.content.readuntil(b"\n\n") == b"data: later\n\n"
        apps["quiet"].release.put_nowait(None)
        assert await resp.content.read() == b""


async def test_headers_and_the_first_event_arrive_together_and_the_stream_ends(
    serve: tuple[str, dict[str, EventApp]],
) -> None:
    base, apps = serve
    async with aiohttp.ClientSession() as http, asyncio.timeout(5), http.get(f"{base}/primed") as resp:
        assert resp.status == 200
        assert await resp.content.readuntil(b"\n\n") == b"id: 1\ndata: \n\n"
        apps["primed"].release.put_nowait(b"data: result\n\n")
        apps["primed"].release.put_nowait(None)
        assert await resp.content.read() == b"data: result\n\n"
