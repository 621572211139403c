"""Streamable HTTP at `/mcp` on the gateway's one aiohttp listener.

The SDK's `StreamableHTTPSessionManager` does the protocol work for both eras: 2025 sessions with
`Mcp-Session-Id`, a GET stream and DELETE, resumable SSE with an event store per session (see
`protocols.mcp.events`) and a JSON answer to a request whose answer comes first (see
`protocols.mcp.transport`); 2026-07-28 single-exchange POSTs with the `Mcp-Method` / `Mcp-Name` header
checks. It is an ASGI application, served here through `protocols.mcp.asgi`, which streams SSE as it
is produced and reports the client's disconnect. The manager's task group lives in a
task of its own for the lifetime of the listener (anyio scopes must be left by the task that entered them).

Security: the REST door's middleware has already authenticated the request (401 otherwise) and put the
`Identity` on it; that identity goes into the ASGI scope for the handlers, and, with auth configured, a
session is bound to the identity that opened it (the SDK answers 404 to anyone else). Host and Origin
are checked against loopback names plus `[mcp] allowed_hosts` / `allowed_origins` (DNS rebinding):
a bad Host gets 421, a bad Origin 403.

A 2026-07-28 request that can receive nothing but its answer (no progress token, no log level in its
`_meta`, not `subscriptions/listen`) goes to a second manager of the same server in the SDK's
JSON-response mode: the SDK's event-stream mode would answer it in JSON too (it defers the choice until
something is emitted), but only after starting two tasks and a stream per request to watch for that.
The bridge keeps what that mode gave such a request: the client going away cancels it, and a long one
becomes an event stream with pings after `KEEPALIVE_SECONDS` (the SDK's interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
from typing import Any

from aiohttp import web
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http import check_accept_headers
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp_types import LOG_LEVEL_META_KEY
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.requests import Request

from gateway.config import GatewayConfig
from gateway.identity import Identity
from protocols.rest.server import IDENTITY

from .asgi import http_scope, serve_asgi
from .door import IDENTITY_SCOPE_KEY, McpDoor
from .transport import SessionManager

log = logging.getLogger("gateway.mcp")

MCP_PATH = "/mcp"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
MANAGER_KEY = web.AppKey("mcp_http", object)
KEEPALIVE_SECONDS = 15.0
"""After this long without an answer, a JSON-mode 2026-07-28 response becomes an event stream with pings."""


def _host_forms(host: str) -> list[str]:
    """A Host value with and without a port (`name` and `name:*`); IPv6 literals in brackets."""
    host = host.strip()
    if not host:
        return []
    try:
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            host = f"[{host.strip('[]')}]"
    except ValueError:
        pass
    if host.endswith("]") or ":" not in host:
        return [host, f"{host}:*"]
    return [host]


def answers_alone(message: Any) -> bool:
    """Whether a 2026-07-28 JSON-RPC message is a request that can receive nothing but its answer.

    Request-scoped notifications are the only other thing such a response may carry in that era, and they
    need the client's opt-in: a progress token or a log level in the request's `_meta`; a
    `subscriptions/listen` response is a notification stream by definition. Anything malformed is left
    to the SDK's own checks (False).
    """
    if not isinstance(message, dict) or "id" not in message or not isinstance(message.get("method"), str):
        return False
    if message["method"] == "subscriptions/listen":
        return False
    params = message.get("params")
    if params is None:
        return True
    if not isinstance(params, dict):
        return False
    meta = params.get("_meta")
    if meta is None:
        return True
    return isinstance(meta, dict) and "progressToken" not in meta and LOG_LEVEL_META_KEY not in meta


def security_settings(config: GatewayConfig) -> TransportSecuritySettings:
    """Host/Origin rules for `/mcp`: loopback names always, the bound address, then the configured extras."""
    hosts: list[str] = []
    for name in LOOPBACK_HOSTS:
        hosts += _host_forms(name)
    bound = config.server.host
    if bound not in ("0.0.0.0", "::", ""):
        hosts += _host_forms(bound)
    for extra in config.mcp.allowed_hosts:
        hosts += _host_forms(extra)
    origins: list[str] = []
    for scheme in ("http", "https"):
        for name in LOOPBACK_HOSTS:
            origins += [f"{scheme}://{name}", f"{scheme}://{name}:*"]
    origins += [o.rstrip("/") for o in config.mcp.allowed_origins]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(dict.fromkeys(hosts)),
        allowed_origins=list(dict.fromkeys(origins)),
    )


class McpHttp:
    """The `/mcp` endpoint: one SDK session manager, run for as long as the listener runs."""

    def __init__(self, door: McpDoor) -> None:
        self.door = door
        config = door.gw.config
        self.settings = security_settings(config)
        self._security = TransportSecurityMiddleware(self.settings)
        # Both managers serve the same server under the same Host/Origin rules and body limit.
        shared: dict[str, Any] = {
            "app": door.server,
            "stateless": False,
            "security_settings": self.settings,
            "max_request_body_size": config.server.max_body_bytes,
        }
        self.manager = SessionManager(json_response=False, **shared)
        # Serves only 2026-07-28 requests that `answers_alone` picks (never a session).
        self.json_manager = StreamableHTTPSessionManager(json_response=True, **shared)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()

    async def start(self) -> None:
        """Start the session manager in its own task and wait until it serves."""
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="mcp-http-sessions")
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._task.done():
            self._task.result()  # raises what stopped it

    async def _run(self) -> None:
        async with self.manager.run(), self.json_manager.run():
            self._ready.set()
            await self._stop.wait()

    async def close(self) -> None:
        """End every session (their streams close, running tool calls are cancelled) and stop the manager."""
        self.door.end_listen_streams()  # 2026-07-28 listen streams live in request handlers, not in the manager
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)
            self._task = None

    def _scope_extra(self, identity: Identity) -> dict[str, Any]:
        extra: dict[str, Any] = {IDENTITY_SCOPE_KEY: identity}
        if self.door.gw.authenticator.enabled:
            # Sessions are bound to the principal that opened them (the SDK compares these); no token is kept.
            token = AccessToken(token="", client_id=identity.subject, scopes=[], subject=identity.subject)
            extra["user"] = AuthenticatedUser(token)
        return extra

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """One HTTP request on `/mcp` (POST, GET or DELETE), whichever protocol era it speaks."""
        identity: Identity = request[IDENTITY]
        extra = self._scope_extra(identity)
        scope = http_scope(request, extra)
        refused = await self._security.validate_request(Request(scope), is_post=False)
        if refused is not None:
            return await serve_asgi(refused, request, extra)  # type: ignore[arg-type]
        if not self._ready.is_set() or self._stop.is_set():
            return web.json_response(
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": "the MCP endpoint is not serving"}},
                status=503,
            )
        # The same scope, built once: the Host/Origin check above only read its headers.
        version = request.headers.get("MCP-Protocol-Version")
        if request.method != "POST" or version is None or version in HANDSHAKE_PROTOCOL_VERSIONS:
            return await serve_asgi(self.manager.handle_request, request, scope=scope)  # type: ignore[arg-type]
        body = await request.read()
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            message = None
        has_json, has_sse = check_accept_headers(Request(scope))
        if has_json and has_sse and answers_alone(message):
            app, keepalive = self.json_manager.handle_request, KEEPALIVE_SECONDS
        else:
            app, keepalive = self.manager.handle_request, None
        return await serve_asgi(app, request, scope=scope, body=body, keepalive=keepalive)  # type: ignore[arg-type]


def add_mcp_http(app: web.Application, door: McpDoor) -> McpHttp:
    """Mount the MCP door at `/mcp` on the gateway's HTTP application (started and stopped with it)."""
    endpoint = McpHttp(door)
    app[MANAGER_KEY] = endpoint
    app.router.add_route("*", MCP_PATH, endpoint.handle)

    async def on_startup(_: web.Application) -> None:
        await endpoint.start()

    async def on_shutdown(_: web.Application) -> None:
        await endpoint.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return endpoint
