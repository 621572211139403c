"""The calling MCP client's back channel for a running execution (`gateway.execution.ClientPeer`).

One `SessionPeer` is made per `tools/call`, bound to that request, so what it sends rides the request's
own stream (the POST's SSE response over HTTP). What the client can do comes from the capabilities it
declared; on a 2026-07-28 connection the server may send no requests at all (input is asked for with an
`InputRequiredResult` instead), so elicitation and sampling are unsupported there, and log messages are
sent only at the levels the request opted in to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import mcp_types as types
from mcp.server.connection import allowed_log_levels
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.errors import Unsupported, UpstreamFailure

log = logging.getLogger("gateway.mcp")

LOG_LEVELS: tuple[types.LoggingLevel, ...] = get_args(types.LoggingLevel)
DEFAULT_LOG_LEVEL: types.LoggingLevel = "info"
_ALIASES: dict[str, types.LoggingLevel] = {"warn": "warning", "fatal": "critical", "trace": "debug"}


def log_level(name: str) -> types.LoggingLevel:
    """An MCP logging level for `name` (Python's names and common aliases included; unknown -> info)."""
    lowered = name.lower()
    for level in LOG_LEVELS:
        if level == lowered:
            return level
    return _ALIASES.get(lowered, DEFAULT_LOG_LEVEL)


@dataclass
class SessionState:
    """What the door keeps per handshake-era connection (stdio, or one HTTP session)."""

    key: int
    log_level: types.LoggingLevel = DEFAULT_LOG_LEVEL
    subscriptions: set[str] = field(default_factory=set)

    def wants(self, level: types.LoggingLevel) -> bool:
        """Whether a message at `level` passes the level the client set with `logging/setLevel`."""
        return LOG_LEVELS.index(level) >= LOG_LEVELS.index(self.log_level)


class SessionPeer:
    """`ClientPeer` for one request of one MCP client connection."""

    def __init__(self, ctx: ServerRequestContext[Any, Any], state: SessionState | None) -> None:
        self._ctx = ctx
        self._state = state
        self._modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        self._log_levels = allowed_log_levels(ctx.protocol_version, ctx.meta)

    def supports(self, feature: Literal["elicitation", "sampling", "logging"]) -> bool:
        """Whether the client declared `feature` and this request can carry it."""
        if feature == "logging":
            return bool(self._log_levels) if self._modern else True
        if self._modern or not self._ctx.session.can_send_request:
            return False
        caps = self._ctx.session.client_capabilities
        if caps is None:
            return False
        return (caps.elicitation if feature == "elicitation" else caps.sampling) is not None

    def _metadata(self) -> ServerMessageMetadata:
        return ServerMessageMetadata(related_request_id=self._ctx.request_id)

    async def elicit(self, message: str, requested_schema: dict[str, Any]) -> dict[str, Any]:
        """`elicitation/create` (form mode) to the client; its answer as a plain dict."""
        if not self.supports("elicitation"):
            raise Unsupported("the MCP client does not support elicitation on this request")
        request = types.ElicitRequest(
            params=types.ElicitRequestFormParams(
                message=message,
                requested_schema=dict(requested_schema),
            )
        )
        try:
            result = await self._ctx.session.send_request(request, types.ElicitResult, metadata=self._metadata())
        except MCPError as exc:
            raise UpstreamFailure(f"the MCP client refused elicitation: {exc.error.message}") from None
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)

    async def create_message(self, params: dict[str, Any]) -> dict[str, Any]:
        """`sampling/createMessage` to the client; plain-dict params and result."""
        if not self.supports("sampling"):
            raise Unsupported("the MCP client does not support sampling on this request")
        request_params = types.CreateMessageRequestParams.model_validate(params, by_name=False)
        result_type: type[types.CreateMessageResult] | type[types.CreateMessageResultWithTools]
        result_type = types.CreateMessageResultWithTools if request_params.tools else types.CreateMessageResult
        try:
            result = await self._ctx.session.send_request(
                types.CreateMessageRequest(params=request_params), result_type, metadata=self._metadata()
            )
        except MCPError as exc:
            raise UpstreamFailure(f"the MCP client refused sampling: {exc.error.message}") from None
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)

    async def log(self, level: str, data: Any, logger: str | None = None) -> None:
        """`notifications/message` on this request's stream, when the client's level lets it through."""
        mcp_level = log_level(level)
        if mcp_level not in self._log_levels:
            return
        if self._state is not None and not self._state.wants(mcp_level):
            return
        notification = types.LoggingMessageNotification(
            params=types.LoggingMessageNotificationParams(level=mcp_level, data=data, logger=logger)
        )
        await self._ctx.session.send_notification(notification, related_request_id=self._ctx.request_id)
