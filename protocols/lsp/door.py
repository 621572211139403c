"""The LSP door: TCP (many editors at once), stdio (`gateway lsp`) and WebSocket (`/lsp`).

Each connection gets its own `GatewaySession` (a pygls server object); all of them run in the gateway's
one event loop. A client that leaves or crashes ends only its own session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from gateway.app import Gateway
from gateway.errors import GatewayError
from gateway.execution import CallContext
from gateway.identity import ANONYMOUS, LOCAL_OWNER, LOCAL_PROCESS, Identity
from gateway.registry import Door

from .session import GatewaySession

if TYPE_CHECKING:
    from gateway.collab import SharedDoc
from .transport import MessageWriterAdapter, StreamWriterAdapter, dispatch, serve_stream

log = logging.getLogger("gateway.lsp")


class LspDoor:
    """Shared state of all LSP sessions of one gateway: who has which document open."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.sessions: set[GatewaySession] = set()
        self._holders: dict[str, set[str]] = {}
        self._server: asyncio.Server | None = None

    def auth_required(self, transport: str) -> bool:
        """stdio is the user's own process; network transports authenticate when auth is configured."""
        return transport != "stdio" and self.gw.authenticator.enabled

    def new_session(self, transport: str, identity: Identity | None = None) -> GatewaySession:
        if identity is None:
            if transport == "stdio":
                identity = LOCAL_PROCESS
            else:
                identity = LOCAL_OWNER if not self.auth_required(transport) else ANONYMOUS
        session = GatewaySession(self, identity, transport)
        self.sessions.add(session)
        self.gw.metrics.connection_opened("lsp")
        return session

    async def finish_session(self, session: GatewaySession) -> None:
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        self.gw.metrics.connection_closed("lsp")
        session.end(session.exit_code if session.exit_code is not None else 1)
        await session.cleanup()

    # -- shared documents ---------------------------------------------------------------------------
    async def acquire_document(
        self, session: GatewaySession, path: str, text: str, version: int, language_id: str
    ) -> SharedDoc | None:
        """Open `path` for `session` and return its shared document; the shared text wins over the editor's.

        The first editor's text opens the document in the store (unsaved text included); an editor that
        opens a document already shared is brought to the shared text by its replica.
        """
        holders = self._holders.setdefault(path, set())
        call = CallContext(identity=session.identity, door=Door.LSP, meta={"session": session.session_id})
        try:
            if path not in self.gw.workspace.documents:
                await self.gw.core.execute(
                    call, "open_document", {"path": path, "text": text, "version": 0, "language_id": language_id}
                )
            shared = await (await self.gw.collab.get()).shared(path) if self.gw.collab is not None else None
        except GatewayError as exc:
            log.warning("lsp: cannot open %s: %s", path, exc.message)
            return None
        holders.add(session.session_id)
        session.open_paths.add(path)
        return shared

    async def release_document(self, session: GatewaySession, path: str) -> None:
        """Let go of `path` for `session`; the last one out closes it (unsaved edits dropped, as before)."""
        holders = self._holders.get(path)
        session.open_paths.discard(path)
        if holders is None:
            return
        holders.discard(session.session_id)
        if holders:
            return
        del self._holders[path]
        service = self.gw.collab.service if self.gw.collab is not None else None
        shared = service.peek(path) if service is not None else None
        if shared is not None and shared.peers:
            return  # others (other editors, browser clients) still edit it: keep it in the store
        call = CallContext(identity=session.identity, door=Door.LSP, meta={"session": session.session_id})
        with contextlib.suppress(GatewayError):
            await self.gw.core.execute(call, "close_document", {"path": path})

    # -- transports -----------------------------------------------------------------------------------
    async def handle_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transport: str = "tcp"
    ) -> GatewaySession:
        """Serve one stream connection until the client exits or goes away."""
        session = self.new_session(transport)
        session.protocol.set_writer(StreamWriterAdapter(writer))
        peer = writer.get_extra_info("peername")
        log.info("lsp session %s opened (%s %s)", session.session_id, transport, peer)
        reading = asyncio.create_task(serve_stream(session.protocol, reader, session.ended.is_set))
        ended = asyncio.create_task(session.ended.wait())
        try:
            await asyncio.wait({reading, ended}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            for task in (reading, ended):
                task.cancel()
            for task in (reading, ended):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.finish_session(session)
            with contextlib.suppress(Exception):
                writer.close()
            log.info("lsp session %s closed", session.session_id)
        return session

    async def start_tcp(self, host: str, port: int) -> int:
        """Listen for editors on TCP; returns the bound port."""

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.handle_stream(reader, writer, "tcp")

        self._server = await asyncio.start_server(on_connect, host, port, limit=2**20)
        sock = self._server.sockets[0]
        bound: int = sock.getsockname()[1]
        return bound

    async def stop_tcp(self) -> None:
        if self._server is not None:
            self._server.close()
            for session in list(self.sessions):
                session.end(0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 3)

    async def handle_websocket(self, ws: Any, identity: Identity) -> None:
        """Serve one aiohttp WebSocket: each text or binary frame is one JSON-RPC message."""
        from aiohttp import WSMsgType

        session = self.new_session("websocket", identity)
        session.protocol.set_writer(MessageWriterAdapter(ws.send_str, ws.close), include_headers=False)
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    dispatch(session.protocol, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
                if session.ended.is_set():
                    break
        finally:
            await self.finish_session(session)
            with contextlib.suppress(Exception):
                await ws.close()


async def run_stdio(gw: Gateway) -> int:
    """`gateway lsp`: one session over this process's stdin/stdout; returns the exit code."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    stdout = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, stdout)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    door = LspDoor(gw)
    session = await door.handle_stream(reader, writer, "stdio")
    return session.exit_code if session.exit_code is not None else 1
