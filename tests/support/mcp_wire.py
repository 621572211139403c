"""Raw HTTP helpers for `/mcp` tests that look at the wire: a 2025-era handshake, calls, event streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def open_session(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    """A 2025-11-25 handshake over raw HTTP; the headers every later request of the session carries."""
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    async with http.post(url, json=init, headers=HEADERS) as resp:
        assert resp.status == 200, await resp.text()
        session = {"Mcp-Session-Id": resp.headers["Mcp-Session-Id"], "MCP-Protocol-Version": "2025-11-25"}
        await resp.read()
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    async with http.post(url, json=note, headers={**HEADERS, **session}) as resp:
        assert resp.status == 202
    return {**HEADERS, **session}


def call(request_id: int, name: str, arguments: dict[str, Any], progress_token: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if progress_token is not None:
        params["_meta"] = {"progressToken": progress_token}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


async def sse_events(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, str]]:
    """The events of an event stream as sent, each a dict of its fields (data lines joined; comments skipped)."""
    event: dict[str, str] = {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if event:
                yield event
            event = {}
            continue
        if line.startswith(":"):  # a comment (keep-alive ping)
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        event[name] = f"{event[name]}\n{value}" if name == "data" and name in event else value


async def read_stream(resp: aiohttp.ClientResponse, request_id: int) -> list[dict[str, str]]:
    """Every event of a call's stream up to and including its answer."""
    events: list[dict[str, str]] = []
    async with asyncio.timeout(10):
        async for event in sse_events(resp):
            events.append(event)
            if event.get("data") and json.loads(event["data"]).get("id") == request_id:
                return events
    raise AssertionError(f"the stream ended without the answer: {events}")
