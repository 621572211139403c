"""Serve one aiohttp request with an ASGI application, streaming both ways.

The MCP SDK's streamable HTTP transport is an ASGI application; the gateway's one HTTP listener is
aiohttp. This bridge runs the ASGI app inside the aiohttp handler task and keeps the two properties a
general-purpose adapter tends to lose, without which SSE responses hang:

- every `http.response.body` chunk is written (and flushed) as it comes, so progress notifications
  reach the client before the result, and a response with `more_body` may stay open indefinitely;
- `receive()` hands over the request body, and after that blocks until the client goes away (or the
  response is complete) and then reports `http.disconnect`, as ASGI servers do. It must never return
  immediately in a loop: SSE responses watch `receive()` for the disconnect, and the 2026-07-28 transport
  cancels a request when its client closes the stream.

aiohttp tells a handler about a lost connection only by cancelling it (`handler_cancellation`, off on
this listener), so the disconnect is noticed by checking the transport every `DISCONNECT_POLL_SECONDS`
while someone waits for it, and at once when a write fails. After a disconnect, writes are dropped
quietly, as uvicorn does, so the application winds down through its normal paths.

`serve_asgi(..., keepalive=N)` is for an app that answers in one piece and never waits for the disconnect
itself (the SDK's JSON-response mode): the bridge then checks the transport on a timer and cancels the
app when the client goes away, and if no response has started after N seconds it opens an event stream
with a `: ping` comment every N seconds, sending the answer as its one `message` event when it comes, so
an idle-read timeout between the two ends cannot close a long call. That is what the SDK's event-stream
mode does for a request that sends nothing before its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

log = logging.getLogger("gateway.mcp")

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DISCONNECT_POLL_SECONDS = 0.1
"""How often a waiting `receive()` checks whether the client has gone away."""
HEADERS_WAIT_SECONDS = 0.005
"""How long an event stream's headers wait to go out in one packet with its first event."""
PING = b": ping\r\n\r\n"
KEEPALIVE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"})


def http_scope(request: web.Request, extra: Mapping[str, Any] | None = None) -> Scope:
    """The ASGI HTTP scope of an aiohttp request (header names lower-cased, as ASGI requires)."""
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    sock = transport.get_extra_info("sockname") if transport is not None else None
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.split("?", 1)[0].encode("latin-1", "replace"),
        "query_string": request.query_string.encode("latin-1", "replace"),
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in request.raw_headers],
        "client": tuple(peer[:2]) if isinstance(peer, tuple) else None,
        "server": tuple(sock[:2]) if isinstance(sock, tuple) else None,
        "state": {},
        "extensions": {},
    }
    if extra:
        scope.update(extra)
    return scope


class _CoalescingResponse(web.StreamResponse):
    """A streamed response whose headers are written together with its first body bytes (aiohttp's own
    `Response` does this; `StreamResponse` sends them alone, one more packet and one more wake-up of the
    client per response)."""

    _send_headers_immediately = False


class _Exchange:
    """One request/response between aiohttp and the ASGI app."""

    def __init__(self, request: web.Request, body: bytes | None = None) -> None:
        self.request = request
        self.body = body
        self.response: web.StreamResponse | None = None
        self.status: int | None = None
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.body_done = False
        self.completed = asyncio.Event()
        self.disconnected = False
        self.cancelled = False  # the bridge cancelled the app because the client went away
        self.kept_alive = False  # the response became a keep-alive event stream (see `keep_alive`)
        self._pinging: asyncio.Task[None] | None = None

    # -- receive ------------------------------------------------------------------------------------
    def _gone(self) -> bool:
        if not self.disconnected:
            transport = self.request.transport
            self.disconnected = transport is None or transport.is_closing()
        return self.disconnected

    async def receive(self) -> Message:
        if self.body is not None:  # read already by the handler
            body, self.body, self.body_done = self.body, None, True
            return {"type": "http.request", "body": body, "more_body": False}
        if not self.body_done:
            content = self.request.content
            try:
                chunk = await content.readany()
            except (ConnectionError, asyncio.IncompleteReadError):
                self.body_done = self.disconnected = True
                return {"type": "http.disconnect"}
            self.body_done = content.at_eof()
            return {"type": "http.request", "body": bytes(chunk), "more_body": not self.body_done}
        while not self.completed.is_set() and not self._gone():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DISCONNECT_POLL_SECONDS):
                    await self.completed.wait()
        return {"type": "http.disconnect"}

    # -- send ---------------------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self._pinging is not None:
            await self._pinging  # a ping being written goes out whole before anything else
        if self.kept_alive:
            await self._send_kept_alive(message)
            return
        if kind == "http.response.start":
            if self.status is not None:
                raise RuntimeError("http.response.start sent twice")
            self.status = int(message["status"])
            for name, value in message.get("headers", ()):
                if bytes(name).lower() not in _HOP_BY_HOP:
                    self.headers.add(bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
            if self.headers.get("Content-Type", "").startswith("text/event-stream"):
                # An event stream's headers go out with its first event when that comes soon (the priming
                # event does: one packet instead of two), else after `HEADERS_WAIT_SECONDS` on their own.
                await self._prepare()
                asyncio.get_running_loop().call_later(HEADERS_WAIT_SECONDS, self._send_headers)
            return
        if kind != "http.response.body":
            return
        if self.status is None:
            raise RuntimeError("http.response.body sent before http.response.start")
        if self.completed.is_set() or self.disconnected:
            return
        body = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        try:
            if self.response is None and not more and "Content-Length" not in self.headers:
                self.headers["Content-Length"] = str(len(body))
            response = await self._prepare()
            if body:
                await response.write(body)
            if not more:
                await response.write_eof()
                self.completed.set()
        except (ConnectionError, RuntimeError) as exc:
            log.debug("mcp http: client went away while writing: %s", exc)
            self.disconnected = True

    # -- keep-alive (`serve_asgi(keepalive=...)`) ----------------------------------------------------
    def watch(self, task: asyncio.Task[Any], keepalive: float) -> None:
        """Check the client every `DISCONNECT_POLL_SECONDS` until the response is complete: cancel `task` when
        it has gone, open the keep-alive stream when nothing has started after `keepalive` s, ping it."""
        loop = asyncio.get_running_loop()
        due = loop.time() + keepalive

        def check() -> None:
            nonlocal due
            if self.completed.is_set():
                return
            if self._gone():
                self.cancelled = True
                task.cancel()
                return
            if loop.time() >= due and (self.kept_alive or self.status is None) and self._pinging is None:
                due = loop.time() + keepalive
                self._pinging = loop.create_task(self._ping())
            loop.call_later(DISCONNECT_POLL_SECONDS, check)

        loop.call_later(DISCONNECT_POLL_SECONDS, check)

    async def _ping(self) -> None:
        try:
            if not self.kept_alive:
                self.kept_alive = True
                response = web.StreamResponse(status=200, headers=KEEPALIVE_HEADERS)
                await response.prepare(self.request)
                self.response = response
            assert self.response is not None
            await self.response.write(PING)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("mcp http: client went away during a keep-alive ping: %s", exc)
            self.disconnected = True
        finally:
            self._pinging = None

    async def _send_kept_alive(self, message: Message) -> None:
        """The app's one-piece answer, on the keep-alive stream: its body as one `message` event."""
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            return
        if message["type"] != "http.response.body" or self.completed.is_set() or self.disconnected:
            return
        body = bytes(message.get("body", b""))
        if message.get("more_body", False):
            raise RuntimeError("a kept-alive response must come in one piece")
        self.completed.set()
        event = b"event: message\r\n" + b"".join(b"data: " + line + b"\r\n" for line in body.splitlines()) + b"\r\n"
        assert self.response is not None
        try:
            await self.response.write(event)
            await self.response.write_eof()
        except (ConnectionError, RuntimeError) as exc:
            log.debug("mcp http: client went away before the answer: %s", exc)
            self.disconnected = True

    def _send_headers(self) -> None:
        """Send the buffered headers now if no body write has taken them along yet."""
        writer = getattr(self.response, "_payload_writer", None)
        send_headers = getattr(writer, "send_headers", None)
        if send_headers is not None and not self.disconnected:
            try:
                send_headers()
            except (ConnectionError, RuntimeError) as exc:
                log.debug("mcp http: client went away before the headers: %s", exc)
                self.disconnected = True

    async def _prepare(self) -> web.StreamResponse:
        if self.response is None:
            assert self.status is not None
            response = _CoalescingResponse(status=self.status, headers=self.headers)
            await response.prepare(self.request)
            self.response = response
        return self.response

    async def finish(self) -> web.StreamResponse:
        """The response aiohttp gets back once the app has returned."""
        if self._pinging is not None:
            await self._pinging
        if self.status is None and not self.kept_alive:
            if self.disconnected:
                return web.Response(status=499)
            log.error("mcp http: the ASGI app returned without a response")
            return web.Response(status=500, text="internal error")
        with contextlib.suppress(ConnectionError, RuntimeError):
            response = await self._prepare()
            if not self.completed.is_set():
                self.completed.set()
                await response.write_eof()
        return self.response if self.response is not None else web.Response(status=self.status or 500)


async def serve_asgi(
    app: ASGIApp,
    request: web.Request,
    extra_scope: Mapping[str, Any] | None = None,
    *,
    scope: Scope | None = None,
    body: bytes | None = None,
    keepalive: float | None = None,
) -> web.StreamResponse:
    """Run `app` for `request` in this handler task and return the (already streamed) response.

    `scope`: the request's scope when the caller already built it (`http_scope(request, extra_scope)`).
    `body`: the request body when the caller has read it already. `keepalive`: watch the client and keep
    a slow one-piece answer alive (see the module docstring).
    """
    exchange = _Exchange(request, body)
    task = asyncio.current_task()
    if keepalive is not None and task is not None:
        exchange.watch(task, keepalive)
    try:
        await app(scope if scope is not None else http_scope(request, extra_scope), exchange.receive, exchange.send)
    except asyncio.CancelledError:
        if exchange.cancelled and task is not None and task.uncancel() == 0:
            log.debug("mcp http: the client went away; its request was cancelled")
            exchange.completed.set()
            return exchange.response if exchange.response is not None else web.Response(status=499)
        raise
    except Exception:
        if exchange.status is not None or exchange.kept_alive:
            log.exception("mcp http: the ASGI app failed after starting its response")
            exchange.completed.set()
            return exchange.response if exchange.response is not None else web.Response(status=exchange.status or 500)
        log.exception("mcp http: the ASGI app failed")
        return web.Response(status=500, text="internal error")
    return await exchange.finish()
