"""2025-era HTTP sessions: the SDK's transport, answering a request in JSON when nothing but its answer comes.

A 2025-11-25 server may answer a POSTed request with `application/json` or with an SSE stream, its choice
per request. The SDK's transport makes that choice once per session (`is_json_response_enabled`): SSE for
every request, so that progress, log messages and server-to-client requests (elicitation, sampling) can
travel before the answer. That costs every call an event stream: a second task, a stream of events for the
client to parse, and, because the SDK client closes an SSE response before its end, a new TCP connection
per call.

`DeferringTransport` decides per request, the way the SDK's own 2026-07-28 entry does (it defers the
choice until a handler emits something or a time passes). A request is dispatched exactly as in SSE mode
(the same metadata: it may send requests to the client; its priming event is stored before dispatch, so
storage order stays wire order for resumption). Then:

- its answer comes first, within `DEFER_SECONDS`: the answer goes back as JSON (the event store keeps it
  as it does in the SDK's JSON mode);
- anything else comes first (a progress or log notification, an elicitation), or `DEFER_SECONDS` pass
  with nothing: the response becomes the event stream the SDK would have sent from the start, with the
  priming event, then what came, then the rest through the SDK's own SSE writer. A long call still gets
  its resumable stream after at most `DEFER_SECONDS`.

Everything else (initialize, notifications, malformed bodies, clients that do not accept both types, GET,
DELETE) goes to the SDK's code unchanged.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any
from uuid import uuid4

import anyio
import pydantic_core
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.streamable_http import (
    CONTENT_TYPE_SSE,
    MCP_SESSION_ID_HEADER,
    REQUEST_STREAM_BUFFER_SIZE,
    EventMessage,
    SSEEvent,
    StreamableHTTPServerTransport,
    check_accept_headers,
)
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types import (
    DEFAULT_NEGOTIATED_VERSION,
    INTERNAL_ERROR,
    JSONRPCError,
    JSONRPCRequest,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from .events import RETRY_MILLISECONDS, SessionEventStore

log = logging.getLogger("gateway.mcp")

DEFER_SECONDS = 1.0
"""How long a 2025-era request's response waits to be plain JSON before it becomes an event stream."""


class DeferringTransport(StreamableHTTPServerTransport):
    """The SDK's session transport in SSE mode, answering in JSON a request whose answer comes first."""

    defer_seconds: float = DEFER_SECONDS

    async def _handle_post_request(self, scope: Scope, request: Request, receive: Receive, send: Send) -> None:
        message = None if self.is_json_response_enabled else await self._deferrable(request)
        if message is None:
            await super()._handle_post_request(scope, request, receive, send)
            return
        writer = self._read_stream_writer
        if writer is None:  # pragma: no cover - connect() runs before any request is served
            raise RuntimeError("the transport is not connected")
        if not await self._validate_request_headers(request, send):
            return
        protocol_version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER, DEFAULT_NEGOTIATED_VERSION)
        request_id = str(message.id)
        try:
            # As in SSE mode: the priming row is stored before dispatch, so it precedes this stream's events.
            priming = await self._mint_priming_event(request_id, protocol_version)
            streams = anyio.create_memory_object_stream[EventMessage](REQUEST_STREAM_BUFFER_SIZE)
            self._request_streams[request_id] = streams
            reader = streams[1]
            await writer.send(self._create_session_message(message, request, request_id, protocol_version))
        except Exception as exc:
            log.exception("mcp http: could not dispatch request %s", request_id)
            await self._clean_up_memory_streams(request_id)
            error = self._create_error_response(
                "Error handling POST request", HTTPStatus.INTERNAL_SERVER_ERROR, INTERNAL_ERROR
            )
            await error(scope, receive, send)
            await writer.send(exc)
            return

        first: EventMessage | None = None
        closed = False
        with anyio.move_on_after(self.defer_seconds):
            try:
                first = await reader.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                closed = True
        if first is not None and isinstance(first.message, JSONRPCResponse | JSONRPCError):
            await self._clean_up_memory_streams(request_id)
            await self._create_json_response(first.message)(scope, receive, send)
            return
        if closed and (priming is None or self._terminated):
            # The session ended with the request in flight (the SDK's JSON mode answers the same).
            await self._clean_up_memory_streams(request_id)
            error = self._create_error_response(
                "Session terminated before the request completed", HTTPStatus.INTERNAL_SERVER_ERROR, INTERNAL_ERROR
            )
            await error(scope, receive, send)
            return
        await self._stream(scope, receive, send, request_id, reader, priming, first, closed)

    async def _deferrable(self, request: Request) -> JSONRPCRequest | None:
        """The request this POST carries when its response may be deferred; None leaves it all to the SDK.

        Only a well-formed JSON-RPC request other than `initialize`, from a client that accepts both JSON and
        SSE, qualifies: everything else gets the SDK's own answers, errors included. The body is read once
        (Starlette keeps it for the SDK's second look).
        """
        has_json, has_sse = check_accept_headers(request)
        if not (has_json and has_sse and self._check_content_type(request)):
            return None
        try:
            raw = pydantic_core.from_json(await request.body())
            message = jsonrpc_message_adapter.validate_python(raw, by_name=False)
        except (ValueError, ValidationError):
            return None
        if not isinstance(message, JSONRPCRequest) or message.method == "initialize":
            return None
        return message

    async def _stream(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        reader: Any,
        priming: SSEEvent | None,
        first: EventMessage | None,
        closed: bool,
    ) -> None:
        """Answer with the event stream: the priming event, what came so far, then the SDK's SSE writer."""
        sse_writer, sse_reader = anyio.create_memory_object_stream[SSEEvent](0)
        self._sse_stream_writers[request_id] = sse_writer
        lead = [event for event in (priming,) if event is not None]
        if first is not None:
            lead.append(self._create_event_data(first))

        async def forward() -> None:
            if closed:  # the stream was closed for polling (close_sse_stream) before anything came
                async with sse_writer:
                    for event in lead:
                        await sse_writer.send(event)
                self._sse_stream_writers.pop(request_id, None)
                return
            try:
                for event in lead:
                    await sse_writer.send(event)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                log.debug("mcp http: the stream of %s closed before its first events", request_id)
            await self._run_sse_writer(request_id, sse_writer, reader, None)

        headers = {
            "Cache-Control": "no-cache, no-transform",
            "Connection": "keep-alive",
            "Content-Type": CONTENT_TYPE_SSE,
            **({MCP_SESSION_ID_HEADER: self.mcp_session_id} if self.mcp_session_id else {}),
        }
        response = EventSourceResponse(content=sse_reader, data_sender_callable=forward, headers=headers)
        try:
            await response(scope, receive, send)
        except Exception:
            log.exception("mcp http: SSE response error")
            await sse_writer.aclose()
            await self._clean_up_memory_streams(request_id)
        finally:
            await sse_reader.aclose()


class SessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager, with `DeferringTransport` sessions that each keep a `SessionEventStore`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("retry_interval", RETRY_MILLISECONDS)
        super().__init__(*args, **kwargs)

    def _admit_session(self, requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        """Register a new session for `requestor` (as the SDK does) with the gateway's transport and store."""
        if self.max_sessions is not None and len(self._server_instances) >= self.max_sessions:
            return None
        transport = DeferringTransport(
            mcp_session_id=uuid4().hex,
            is_json_response_enabled=self.json_response,
            event_store=SessionEventStore(),
            security_settings=self.security_settings,
            retry_interval=self.retry_interval,
            idle_timeout=self.session_idle_timeout,
        )
        session_id = transport.mcp_session_id
        assert session_id is not None
        if requestor is not None:
            self._session_owners[session_id] = requestor
        self._server_instances[session_id] = transport
        log.debug("mcp http: new session %s", session_id)
        return transport
