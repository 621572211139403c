"""pygls' JSON-RPC message dispatch, minus two costs it has on every message.

pygls' `JsonRPCProtocol.handle_message` tells requests, notifications, replies and error replies apart with
`isinstance` against four `typing.Protocol` classes. On Python 3.11 each such check walks the protocol's
attributes through `typing._get_protocol_attrs`: up to four checks a message, ~30 µs together, on every
message both the gateway's LSP door and its language-server client receive. A message's kind depends only
on its class (attrs classes: every instance has the same attributes), so it is decided once per class with
pygls' own checks and looked up afterwards.

pygls answers a request whose handler is a coroutine from a done-callback of the handler's task: one more
turn of the event loop after the handler returned, behind whatever that turn runs first (the access lines
the handler's execution queued, `gateway.middleware`). Here the task answers as its last step instead.
Everything else is pygls' dispatch, unchanged: same handlers, same error replies, same cancellation.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine
from enum import Enum
from typing import Any, cast

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

    def _handle_request(self, msg_id: Any, method_name: str, params: Any) -> None:
        try:
            handler = self._get_handler(method_name)
        except Exception:
            handler = None  # pygls' own path answers an unknown method (or a failing lookup) as it does
        if handler is None or not asyncio.iscoroutinefunction(handler):
            super()._handle_request(msg_id, method_name, params)
            return
        self._ctx_msg_id.set(msg_id)
        answered: list[bool] = []
        task = asyncio.ensure_future(self._answer(msg_id, handler, params, answered))
        self._request_futures[msg_id] = cast(Any, task)  # pygls types these as concurrent futures; it too stores tasks
        task.add_done_callback(lambda done: self._answer_unstarted(done, msg_id, answered))

    async def _answer(
        self, msg_id: Any, handler: Callable[[Any], Coroutine[Any, Any, Any]], params: Any, answered: list[bool]
    ) -> None:
        """Run the handler and send its reply (result, error, or cancelled) from this same task."""
        outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            outcome.set_result(await handler(params))
        except asyncio.CancelledError:
            outcome.cancel()
            answered.append(True)
            self._reply(outcome, msg_id)
            raise
        except Exception as exc:
            outcome.set_exception(exc)
        answered.append(True)
        self._reply(outcome, msg_id)  # pygls' reply for a result or an exception

    def _reply(self, future: asyncio.Future[Any], msg_id: Any) -> None:
        self._send_handler_result(cast(Any, future), msg_id=msg_id)

    def _answer_unstarted(self, task: asyncio.Future[Any], msg_id: Any, answered: list[bool]) -> None:
        """A request cancelled before its task ever ran still gets its (cancelled) reply."""
        if not answered and task.cancelled():
            self._reply(task, msg_id)


__all__ = ["FastDispatch", "Kind", "message_kind"]
