"""Moving LSP messages on and off a byte stream or a WebSocket, with clear errors for bad input.

pygls' own read loop drops a malformed message without answering, so a client that sent bad JSON or
params for a request waits forever. This loop answers instead: a missing or invalid Content-Length and
invalid JSON get -32700 (parse error), a message that is not a JSON-RPC 2.0 object gets -32600, a
request whose params do not match the method's schema gets -32602 with the request's id. Dispatching
stays pygls' (`protocol.handle_message`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from lsprotocol.types import ResponseError
from pygls.exceptions import JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol

log = logging.getLogger("gateway.lsp")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
MAX_CONTENT_LENGTH = 32 * 1024 * 1024
MAX_HEADER_LINE = 8 * 1024


class LineReader(Protocol):
    async def readline(self) -> bytes: ...

    async def readexactly(self, n: int) -> bytes: ...


class TooLarge(Exception):
    """A message exceeds the size limit; the connection cannot be trusted to stay in frame."""


def send_error(protocol: LanguageServerProtocol, msg_id: Any, code: int, message: str) -> None:
    """Answer `msg_id` (None when unknown) with a JSON-RPC error; never includes a traceback."""
    protocol._send_response(msg_id, None, ResponseError(code=code, message=message))


def dispatch(protocol: LanguageServerProtocol, body: bytes | str) -> None:
    """Parse one message body, answer it with an error if it is bad, else hand it to pygls."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning("lsp: invalid JSON: %s", exc)
        send_error(protocol, None, PARSE_ERROR, f"Parse error: invalid JSON ({exc})")
        return
    if not isinstance(raw, dict) or raw.get("jsonrpc") != "2.0":
        msg_id = raw.get("id") if isinstance(raw, dict) else None
        send_error(protocol, msg_id, INVALID_REQUEST, "Invalid Request: expected a JSON-RPC 2.0 object")
        return
    method = raw.get("method")
    if "method" in raw and not isinstance(method, str):
        send_error(protocol, raw.get("id"), INVALID_REQUEST, "Invalid Request: method must be a string")
        return
    try:
        message = protocol.structure_message(raw)
    except JsonRpcInvalidParams:
        if "id" in raw and method is not None:
            send_error(protocol, raw["id"], INVALID_PARAMS, f"Invalid params for {method}")
        else:
            log.warning("lsp: dropping notification %s with invalid params", method)
        return
    except Exception:
        log.exception("lsp: cannot read message %s", method)
        if "id" in raw:
            send_error(protocol, raw["id"], INTERNAL_ERROR, "Internal error reading the message")
        return
    protocol.handle_message(message)


async def read_headers(reader: LineReader) -> dict[str, str] | None:
    """The header block of the next message (lower-case names), or None at the end of the stream."""
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if not line:
            return None
        if len(line) > MAX_HEADER_LINE:
            raise TooLarge("header line too long")
        text = line.decode("ascii", errors="replace").strip()
        if not text:
            if headers:
                return headers
            continue  # stray blank line between messages
        name, sep, value = text.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
        else:
            headers.setdefault("x-malformed", text)


async def serve_stream(
    protocol: LanguageServerProtocol,
    reader: LineReader,
    should_stop: Callable[[], bool],
) -> None:
    """Read Content-Length framed messages until the stream ends or `should_stop()`."""
    while not should_stop():
        try:
            headers = await read_headers(reader)
        except (TooLarge, ValueError, asyncio.LimitOverrunError):
            send_error(protocol, None, PARSE_ERROR, "Parse error: header line too long; closing")
            return
        if headers is None:
            return
        raw_length = headers.get("content-length")
        try:
            length = int(raw_length) if raw_length is not None else -1
        except ValueError:
            length = -1
        if length < 0:
            send_error(protocol, None, PARSE_ERROR, "Parse error: missing or invalid Content-Length header")
            continue
        if length > MAX_CONTENT_LENGTH:
            send_error(protocol, None, PARSE_ERROR, f"Parse error: message over {MAX_CONTENT_LENGTH} bytes; closing")
            return
        try:
            body = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            return
        dispatch(protocol, body)


class StreamWriterAdapter:
    """pygls writer over an asyncio StreamWriter (TCP, stdout pipe)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def write(self, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)

    def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()


class MessageWriterAdapter:
    """pygls writer over a message-oriented socket (a WebSocket): one JSON message per frame."""

    def __init__(self, send: Callable[[str], Awaitable[None]], close: Callable[[], Awaitable[Any]]) -> None:
        self._send = send
        self._close = close
        self.closed = False

    async def write(self, data: bytes) -> None:
        if not self.closed:
            await self._send(data.decode("utf-8"))

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self._close()
