"""pygls' JSON-RPC message dispatch without its per-message `runtime_checkable` Protocol checks.

pygls' `JsonRPCProtocol.handle_message` tells requests, notifications, replies and error replies apart with
`isinstance` against four `typing.Protocol` classes. On Python 3.11 each such check walks the protocol's
attributes through `typing._get_protocol_attrs`: up to four checks a message, ~30 µs together, on every
message both the gateway's LSP door and its language-server client receive. A message's kind depends only
on its class (attrs classes: every instance has the same attributes), so it is decided once per class with
pygls' own checks and looked up afterwards. Everything else is pygls' dispatch, unchanged.
"""

from __future__ import annotations

import contextvars
import logging
from enum import Enum
from typing import Any

from lsprotocol.types import EXIT
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.json_rpc import JsonRPCProtocol, RPCNotification, RPCRequest, RPCResponse

log = logging.getLogger("pygls.protocol.json_rpc")  # pygls' own messages keep their logger


class Kind(Enum):
    REQUEST = "request"
    NOTIFICATION = "notification"
    RESPONSE = "response"
    ERROR = "error"


_KINDS: dict[type[Any], Kind] = {}


def message_kind(message: Any) -> Kind:
    """What `message` is, by pygls' rules (the same order of checks), cached per class."""
    cls = type(message)
    kind = _KINDS.get(cls)
    if kind is None:
        if isinstance(message, RPCRequest):
            kind = Kind.REQUEST
        elif isinstance(message, RPCNotification):
            kind = Kind.NOTIFICATION
        elif isinstance(message, RPCResponse):
            kind = Kind.RESPONSE
        else:
            kind = Kind.ERROR
        _KINDS[cls] = kind
    return kind


class FastDispatch(LanguageServerProtocol):
    """`handle_message` as pygls has it, with the message kind looked up instead of re-derived."""

    def handle_message(self, message: Any) -> None:
        if message.jsonrpc != JsonRPCProtocol.VERSION:
            log.warning('Unknown message "%s"', message)
            return
        if self._shutdown and getattr(message, "method", "") != EXIT:
            log.warning("Server shutting down. No more requests!")
            return
        ctx = contextvars.copy_context()  # each handler runs in its own context, as in pygls
        kind = message_kind(message)
        if kind is Kind.REQUEST:
            ctx.run(self._handle_request, message.id, message.method, message.params)
        elif kind is Kind.NOTIFICATION:
            ctx.run(self._handle_notification, message.method, message.params)
        elif kind is Kind.RESPONSE:
            ctx.run(self._handle_response, message.id, message.result)
        else:
            ctx.run(self._handle_response, message.id, None, message.error)


__all__ = ["FastDispatch", "Kind", "message_kind"]
