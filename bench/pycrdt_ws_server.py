"""The pycrdt-websocket peer for `bench/hub.py`: its `WebsocketServer` behind its `ASGIServer` on uvicorn.

The room is the URL path (as in the JS reference server). No store, rooms kept while empty.

    .venv/bin/python bench/pycrdt_ws_server.py PORT
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from pycrdt.websocket import ASGIServer, WebsocketServer, exception_logger


async def main(port: int) -> None:
    async with WebsocketServer(auto_clean_rooms=False, exception_handler=exception_logger) as websocket_server:
        app = ASGIServer(websocket_server)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws_max_size=8 * 1024 * 1024,
            ws_ping_interval=None,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        print(f"listening http http://127.0.0.1:{port}", file=sys.stderr, flush=True)
        await server.serve()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
