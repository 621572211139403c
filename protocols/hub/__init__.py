"""The hub door: the JSON workspace hub at `/ws` and the y-websocket endpoint at `/yjs/<path>`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .ws import HubDoor
from .yjs import YjsDoor

if TYPE_CHECKING:
    from gateway.app import Gateway

__all__ = ["HubDoor", "YjsDoor", "add_hub_routes"]


def add_hub_routes(app: web.Application, gw: Gateway) -> None:
    """Mount `/ws` and `/yjs/{path}` on the HTTP listener; authentication is the listener's."""
    from protocols.rest.server import IDENTITY

    hub = HubDoor(gw)
    yjs = YjsDoor(gw)

    async def hub_socket(request: web.Request) -> web.StreamResponse:
        return await hub.handle(request, request[IDENTITY])

    async def yjs_socket(request: web.Request) -> web.StreamResponse:
        return await yjs.handle(request, request[IDENTITY])

    async def on_cleanup(_app: web.Application) -> None:
        await hub.close()

    app.router.add_get("/ws", hub_socket)
    app.router.add_get("/yjs/{path:.+}", yjs_socket)
    app.on_cleanup.append(on_cleanup)
