"""The gateway's JSON-RPC dispatch (protocols.jsonrpc) classifies messages exactly as pygls does."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException
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


class Replies(FastDispatch):
    """A protocol whose replies are collected; requests to `slow/*` wait until released."""

    def __init__(self) -> None:
        server = SimpleNamespace(name="test", version="0", _report_server_error=lambda *a: None)
        super().__init__(server=server, converter=default_converter())
        self.replies: dict[Any, tuple[Any, Any]] = {}
        self.release = asyncio.Event()
        self.started: list[Any] = []

        async def echo(params: Any) -> Any:
            self.started.append(self.msg_id)
            return {"echo": params}

        async def slow(params: Any) -> Any:
            self.started.append(self.msg_id)
            await self.release.wait()
            return "late"

        async def fails(params: Any) -> Any:
            raise ValueError("internal detail")

        async def refuses(params: Any) -> Any:
            raise JsonRpcException(message="nope", code=-32001)

        def sync(params: Any) -> Any:
            return "sync"

        for name, handler in {"echo": echo, "slow": slow, "fails": fails, "refuses": refuses, "sync": sync}.items():
            self.fm.feature(f"test/{name}")(handler)

    def _send_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:
        self.replies[msg_id] = (result, error)


def request(proto: Replies, msg_id: int, method: str, params: Any = None) -> None:
    proto.handle_message(JsonRPCRequestMessage(id=msg_id, method=method, jsonrpc="2.0", params=params))


async def settle(proto: Replies, *ids: int) -> None:
    async with asyncio.timeout(5):
        while not all(i in proto.replies for i in ids):
            await asyncio.sleep(0)


async def test_coroutine_requests_are_answered_from_their_task() -> None:
    proto = Replies()
    request(proto, 1, "test/echo", [1])
    request(proto, 2, "test/fails")
    request(proto, 3, "test/refuses")
    request(proto, 4, "test/sync")
    request(proto, 5, "test/unknown")
    await settle(proto, 1, 2, 3, 4, 5)
    assert proto.started == [1]  # the handler saw its own request id
    assert proto.replies[1] == ({"echo": [1]}, None)
    assert proto.replies[2][1].code == -32603  # pygls' internal error (the door's handlers never let one through)
    assert proto.replies[3][1].code == -32001 and proto.replies[3][1].message == "nope"
    assert proto.replies[4] == ("sync", None)
    assert proto.replies[5][1].code == -32601
    assert proto._request_futures == {}


async def test_cancelled_requests_get_a_cancelled_reply_whether_or_not_they_started() -> None:
    proto = Replies()
    request(proto, 1, "test/slow")
    proto._handle_cancel_notification(1)  # before its task ever ran
    request(proto, 2, "test/slow")
    async with asyncio.timeout(5):
        while proto.started != [2]:
            await asyncio.sleep(0)
    proto._handle_cancel_notification(2)  # while it waits
    request(proto, 3, "test/slow")
    await asyncio.sleep(0)
    proto.release.set()
    await settle(proto, 1, 2, 3)
    assert proto.replies[1][1].code == proto.replies[2][1].code == -32800  # RequestCancelled
    assert proto.replies[3] == ("late", None)
    assert 1 not in proto.started
