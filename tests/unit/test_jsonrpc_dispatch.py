"""The gateway's JSON-RPC dispatch (protocols.jsonrpc) classifies messages exactly as pygls does."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from lsprotocol import types as lsp
from pygls.protocol import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage, default_converter
from pygls.protocol.json_rpc import RPCNotification, RPCRequest, RPCResponse

from protocols.jsonrpc import FastDispatch, Kind, message_kind


def pygls_kind(message: Any) -> Kind:
    if isinstance(message, RPCRequest):
        return Kind.REQUEST
    if isinstance(message, RPCNotification):
        return Kind.NOTIFICATION
    if isinstance(message, RPCResponse):
        return Kind.RESPONSE
    return Kind.ERROR


MESSAGES: list[Any] = [
    lsp.HoverRequest(id=1, params=lsp.HoverParams(lsp.TextDocumentIdentifier("file:///a.py"), lsp.Position(0, 0))),
    lsp.DidOpenTextDocumentNotification(
        params=lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem("file:///a.py", "python", 1, "x = 1\n"))
    ),
    lsp.HoverResponse(id=1, result=None),
    lsp.ResponseErrorMessage(id=1, error=lsp.ResponseError(code=-32601, message="no")),
    JsonRPCRequestMessage(id=2, method="custom/request", jsonrpc="2.0", params=None),
    JsonRPCNotification(method="custom/notification", jsonrpc="2.0", params=None),
    JsonRPCResponseMessage(id=3, jsonrpc="2.0", result={"any": 1}),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_message_kind_matches_pygls(message: Any) -> None:
    expected = pygls_kind(message)
    assert message_kind(message) is expected
    assert message_kind(message) is expected  # from the per-class cache the second time


class Recorder(FastDispatch):
    def __init__(self) -> None:
        super().__init__(server=SimpleNamespace(name="test", version="0"), converter=default_converter())
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _handle_request(self, *args: Any) -> None:
        self.calls.append(("request", args))

    def _handle_notification(self, *args: Any) -> None:
        self.calls.append(("notification", args))

    def _handle_response(self, *args: Any) -> None:
        self.calls.append(("response", args))


def test_fast_dispatch_routes_each_kind_to_pygls_handlers() -> None:
    proto = Recorder()
    for message in MESSAGES[:4]:
        proto.handle_message(message)
    kinds = [kind for kind, _ in proto.calls]
    assert kinds == ["request", "notification", "response", "response"]
    assert proto.calls[0][1][:2] == (1, "textDocument/hover")
    assert proto.calls[3][1][2].code == -32601  # an error reply passes its error on
    # A message of another JSON-RPC version, and anything but `exit` after shutdown, are dropped.
    proto.calls.clear()
    proto.handle_message(JsonRPCNotification(method="x", jsonrpc="1.0", params=None))
    proto._shutdown = True
    proto.handle_message(MESSAGES[0])
    proto.handle_message(lsp.ExitNotification())
    assert [kind for kind, _ in proto.calls] == ["notification"]
