"""The y-websocket endpoint: `/yjs/<path>` speaks the standard Yjs sync and awareness protocol.

An unmodified y-websocket client (`new WebsocketProvider(url + '/yjs', path, ydoc)`, text in
`ydoc.getText('content')`) joins the shared document of `path` and stays in step with LSP editors and
every other door. Sync step 1 / step 2 and updates follow y-protocols; awareness is relayed to the other
connections of the document (on every instance); a viewer's updates are refused with a y-protocols auth
message (permission denied) and the connection stays open for reading.

Fan-out: an update is framed once (the server's frames are unmasked, so every subscriber gets the same
bytes) and written to each connection's transport. Each connection may hold `send_buffer_bytes` unsent;
one that holds more is lagging: it gets no more updates until its buffer drains, then one update with
everything it missed (computed from the state vector when it fell behind). One that stays behind for
`lag_seconds` is closed with code 4008. Nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from pycrdt import Decoder, Encoder, create_awareness_message, write_message, write_var_uint
from websockets.frames import Frame, Opcode

from gateway.collab import EMPTY_UPDATE
from gateway.errors import Forbidden, GatewayError
from gateway.events import Event
from gateway.execution import CallContext
from gateway.identity import Identity
from gateway.registry import Door

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.collab import CollabService, SharedDoc

log = logging.getLogger("gateway.hub")

MSG_SYNC, MSG_AWARENESS, MSG_AUTH, MSG_QUERY_AWARENESS = 0, 1, 2, 3
SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE = 0, 1, 2


def sync_message(kind: int, payload: bytes) -> bytes:
    return write_var_uint(MSG_SYNC) + write_var_uint(kind) + write_message(payload)


def permission_denied_message(reason: str) -> bytes:
    return write_var_uint(MSG_AUTH) + write_var_uint(0) + write_message(reason.encode())


def binary_frame(payload: bytes) -> bytes:
    """One unmasked binary WebSocket frame, as a server sends it (built by the websockets library)."""
    return Frame(Opcode.BINARY, payload).serialize(mask=False, extensions=[])


def parse_awareness(update: bytes) -> list[tuple[int, int, str]]:
    """The (client id, clock, JSON state) entries of an awareness update; 'null' means gone."""
    decoder = Decoder(update)
    count = decoder.read_var_uint()
    entries = []
    for _ in range(count):
        client = decoder.read_var_uint()
        clock = decoder.read_var_uint()
        state = decoder.read_var_string()
        entries.append((client, clock, state or "null"))
    return entries


def encode_awareness(entries: list[tuple[int, int, str]]) -> bytes:
    encoder = Encoder()
    encoder.write_var_uint(len(entries))
    for client, clock, state in entries:
        encoder.write_var_uint(client)
        encoder.write_var_uint(clock)
        encoder.write_var_string(state)
    return encoder.to_bytes()


def _awareness_of(doc: SharedDoc) -> bytes:
    """The awareness message of every state `doc` knows."""
    entries = [(c, clock, state) for c, (clock, state) in doc.awareness_states.items()]
    return create_awareness_message(encode_awareness(entries))


class YjsConnection:
    """One y-websocket client on one shared document."""

    def __init__(self, door: YjsDoor, transport: Any, identity: Identity, doc: SharedDoc) -> None:
        self.door = door
        self.transport = transport
        self.identity = identity
        self.doc = doc
        self.session_id = f"yjs-{id(self):x}"
        self.lag_vector: bytes | None = None  # the state vector when it fell behind; None: in step
        self._lag_task: asyncio.Task[None] | None = None
        self.closed = False

    # -- CollabPeer -----------------------------------------------------------------------------------------
    def send_update(self, doc: SharedDoc, update: bytes) -> None:
        if self.lag_vector is not None or self.closed:
            return
        self.write_frame(self.door.update_frame(update))

    def write_frame(self, frame: bytes) -> None:
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return
        transport.write(frame)
        if transport.get_write_buffer_size() > self.door.high_water:
            self._fall_behind()

    def send(self, payload: bytes) -> None:
        self.write_frame(binary_frame(payload))

    # -- backpressure ---------------------------------------------------------------------------------------
    def _fall_behind(self) -> None:
        if self.lag_vector is not None:
            return
        # Everything after this state vector is what it will miss: sent as one update once it drains.
        self.lag_vector = self.doc.state_vector()
        self._lag_task = asyncio.get_running_loop().create_task(self._catch_up())

    async def _catch_up(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.door.lag_seconds
        while not self.closed:
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            if transport.get_write_buffer_size() <= self.door.low_water:
                vector, self.lag_vector = self.lag_vector, None
                if vector is not None:
                    self.send(sync_message(SYNC_STEP2, self.doc.missing(vector)))
                return
            if loop.time() > deadline:
                log.warning("yjs: %s fell behind for %.0f s; closing it", self.session_id, self.door.lag_seconds)
                self.closed = True
                with contextlib.suppress(Exception):
                    transport.abort()  # its buffer is full: a polite close frame would queue behind it
                return
            await asyncio.sleep(0.02)

    def stop(self) -> None:
        self.closed = True
        if self._lag_task is not None:
            self._lag_task.cancel()


class YjsDoor:
    """All y-websocket connections of one gateway."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.connections: dict[str, set[YjsConnection]] = {}
        hub = gw.config.hub
        self.high_water = hub.send_buffer_bytes
        self.low_water = hub.send_buffer_bytes // 4
        self.lag_seconds = hub.lag_seconds
        self._frame_of: tuple[bytes, bytes] | None = None
        self._hooked: CollabService | None = None

    def update_frame(self, update: bytes) -> bytes:
        """The frame of a sync update message; built once per update for all subscribers."""
        cached = self._frame_of
        if cached is not None and cached[0] is update:
            return cached[1]
        frame = binary_frame(sync_message(SYNC_UPDATE, update))
        self._frame_of = (update, frame)
        return frame

    async def handle(self, request: web.Request, identity: Identity) -> web.StreamResponse:
        path = request.match_info["path"]
        service = await self._service()
        doc = await service.shared(path)  # NotFound, PathOutsideRoot: answered before the upgrade
        hub = self.gw.config.hub
        ws = web.WebSocketResponse(
            heartbeat=hub.ping_seconds, max_msg_size=hub.max_message_bytes, compress=False, autoping=True
        )
        await ws.prepare(request)
        conn = YjsConnection(self, request.transport, identity, doc)
        peers = self.connections.setdefault(doc.path, set())
        peers.add(conn)
        doc.peers.add(conn)
        self.gw.metrics.connection_opened("yjs")
        log.info("yjs: %s joined %s as %s", conn.session_id, doc.path, identity.subject)
        try:
            conn.send(sync_message(SYNC_STEP1, doc.state_vector()))
            if doc.awareness_states:
                conn.send(_awareness_of(doc))
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await self._on_message(conn, msg.data)
                elif msg.type == WSMsgType.TEXT:
                    log.info("yjs: %s sent a text frame; the protocol is binary", conn.session_id)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            conn.stop()
            peers.discard(conn)
            doc.peers.discard(conn)
            self.gw.metrics.connection_closed("yjs")
            self._leave_awareness(conn)
            log.info("yjs: %s left %s (close code %s)", conn.session_id, doc.path, ws.close_code)
        return ws

    async def _service(self) -> CollabService:
        assert self.gw.collab is not None
        service = await self.gw.collab.get()
        if self._hooked is not service:
            service.awareness_hooks.append(self._remote_awareness)
            self._hooked = service
        return service

    async def _on_message(self, conn: YjsConnection, data: bytes) -> None:
        try:
            decoder = Decoder(data)
            kind = decoder.read_var_uint()
            if kind == MSG_SYNC:
                step = decoder.read_var_uint()
                payload = decoder.read_message() or b""
                if step == SYNC_STEP1:
                    conn.send(sync_message(SYNC_STEP2, conn.doc.missing(payload)))
                elif step in (SYNC_STEP2, SYNC_UPDATE):
                    await self._merge(conn, payload)
            elif kind == MSG_AWARENESS:
                self._on_awareness(conn, decoder.read_message() or b"")
            elif kind == MSG_QUERY_AWARENESS:
                conn.send(_awareness_of(conn.doc))
        except Exception as exc:  # a malformed message: say so in the log, keep the connection
            log.info("yjs: malformed message from %s ignored: %s", conn.session_id, exc)

    async def _merge(self, conn: YjsConnection, update: bytes) -> None:
        if update == EMPTY_UPDATE:
            return
        call = CallContext(
            identity=conn.identity,
            door=Door.HUB,
            meta={"session": conn.session_id, "collab_peer": conn},
        )
        try:
            await self.gw.core.execute(
                call, "collab_update", {"path": conn.doc.path, "update": base64.b64encode(update).decode()}
            )
        except Forbidden as exc:
            conn.send(permission_denied_message(exc.message))
        except GatewayError as exc:
            log.info("yjs: update from %s refused: %s", conn.session_id, exc.message)

    # -- awareness -------------------------------------------------------------------------------------------
    def _on_awareness(self, conn: YjsConnection, update: bytes) -> None:
        entries = parse_awareness(update)
        doc = conn.doc
        mine = doc.awareness_clients.setdefault(conn, set())
        for client, clock, state in entries:
            if state == "null":
                doc.awareness_states.pop(client, None)
                mine.discard(client)
            else:
                doc.awareness_states[client] = (clock, state)
                mine.add(client)
        self._announce_awareness(conn, update, entries)

    def _announce_awareness(self, conn: YjsConnection, update: bytes, entries: list[tuple[int, int, str]]) -> None:
        """A change of `conn`'s awareness: to the document's other connections, the other instances and the
        hub's presence watchers."""
        doc = conn.doc
        self._relay_awareness(doc, update, exclude=conn)
        if self._hooked is not None:
            self._hooked.publish_awareness(doc.path, update)
        self._publish_presence(doc.path, conn.identity.subject, entries)

    def _relay_awareness(self, doc: SharedDoc, update: bytes, exclude: YjsConnection | None) -> None:
        frame = binary_frame(create_awareness_message(update))
        for other in list(self.connections.get(doc.path, ())):
            if other is not exclude:
                other.write_frame(frame)

    def _leave_awareness(self, conn: YjsConnection) -> None:
        doc = conn.doc
        clients = doc.awareness_clients.pop(conn, set())
        if not clients:
            return
        entries = []
        for client in clients:
            clock, _state = doc.awareness_states.pop(client, (0, "null"))
            entries.append((client, clock + 1, "null"))
        self._announce_awareness(conn, encode_awareness(entries), entries)

    def _remote_awareness(self, path: str, update: bytes) -> None:
        """Awareness from another instance: remember it and pass it to this instance's connections."""
        service = self._hooked
        doc = service.peek(path) if service is not None else None
        if doc is None:
            return
        with contextlib.suppress(Exception):
            for client, clock, state in parse_awareness(update):
                if state == "null":
                    doc.awareness_states.pop(client, None)
                else:
                    doc.awareness_states[client] = (clock, state)
        self._relay_awareness(doc, update, exclude=None)

    def _publish_presence(self, path: str, subject: str, entries: list[tuple[int, int, str]]) -> None:
        """Yjs awareness as hub presence, so JSON hub clients see browser editors' cursors too."""
        if not self.gw.bus.wants("presence"):
            return
        for client, _clock, state in entries:
            try:
                parsed = json.loads(state)
            except ValueError:
                parsed = None
            self.gw.bus.publish_nowait(
                Event(
                    topic="presence",
                    type="presence.left" if parsed is None else "presence.updated",
                    data={"who": subject, "path": path, "client": f"yjs:{client}", "state": parsed},
                )
            )
