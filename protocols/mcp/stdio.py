"""`gateway mcp`: the MCP door over this process's stdin and stdout (one client, either protocol era)."""

from __future__ import annotations

from mcp.server.stdio import stdio_server

from gateway.app import Gateway

from .door import McpDoor


async def run_stdio(gw: Gateway) -> int:
    """Serve one MCP client on stdin/stdout until it closes stdin; returns the exit code.

    While serving, the SDK points fd 1 at stderr, so nothing printed by accident can corrupt the wire.
    """
    door = McpDoor(gw)
    await door.start()
    try:
        async with stdio_server() as (read_stream, write_stream):
            await door.serve_streams(read_stream, write_stream)
    finally:
        await door.close()
    return 0
