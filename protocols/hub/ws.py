"""The workspace hub at `/ws`: one JSON message per text frame, everyone in the workspace sees everything.

Client to server (`id` is echoed on the reply):

    {"type": "join", "workspace": "<name>"?, "watch": ["documents", "presence", ...]?}   -> welcome
    {"type": "open", "path": "src/app.py"}                      -> snapshot, then changed/diagnostics
    {"type": "close", "path": "src/app.py"}
    {"type": "edit", "id": 1, "path": ..., "changes": [TextChange, ...]}   -> result | error
    {"type": "presence", "path": ..., "cursor": Position?, "selection": Range?, "state": {...}?}
    {"type": "call", "id": 2, "capability": "hover", "params": {...}}     -> progress*, result | error
    {"type": "ping"}                                             -> pong

Server to client: welcome, snapshot, changed (with the changes, in code points), diagnostics, presence,
event (execution and agent-run lifecycle with who started it, document opened/closed), result, error.

Every edit and call is a core execution, so roles are the core's: a viewer's `edit` gets a `forbidden`
error. Each connection has a bounded queue; one that falls behind is closed with code 4008 (it reconnects
and opens its documents again, getting fresh snapshots), and never slows anyone else. Frames larger than
`max_message_bytes` close with 1009; a connection silent for `idle_seconds` is closed with 4002.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from gateway.errors import GatewayError, InvalidParams
from gateway.events import Event
from gateway.execution import CallContext, ProgressReport
from gateway.identity import Identity
from gateway.registry import Door
from gateway.workspace import DocumentSnapshot, TextChange

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.hub")

CLOSE_FELL_BEHIND = 4008
CLOSE_IDLE = 4002
CLOSE_NOT_FOUND = 4004
DEFAULT_WATCH = ("documents", "presence", "executions", "runs")
WATCHABLE = frozenset({*DEFAULT_WATCH, "diagnostics"})
DIAGNOSTICS_DEBOUNCE = 0.15


def error_body(exc: GatewayError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "data": exc.data}


class HubConnection:
    """One client of the hub: its identity, its open documents and its bounded outgoing queue."""

    def __init__(self, door: HubDoor, ws: web.WebSocketResponse, identity: Identity) -> None:
        self.door = door
        self.ws = ws
        self.identity = identity
        self.client_id = f"hub-{id(self):x}"
        self.paths: set[str] = set()
        self.watch: frozenset[str] = frozenset(DEFAULT_WATCH)
        self.joined = False
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(door.gw.config.hub.queue_size)
        self.fell_behind = False
        self.tasks: set[asyncio.Task[Any]] = set()

    def push(self, message: dict[str, Any]) -> None:
        """Queue `message`; a full queue means the client fell behind: it is closed, nobody waits."""
        if self.fell_behind:
            return
        try:
            self.queue.put_nowait(json.dumps(message, separators=(",", ":")))
        except asyncio.QueueFull:
            self.fell_behind = True
            log.warning("hub: %s fell behind (%d queued); closing it", self.client_id, self.queue.qsize())
            self.door._spawn(self, self.ws.close(code=CLOSE_FELL_BEHIND, message=b"fell behind; reconnect and reopen"))

    async def writer(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None or self.ws.closed:
                return
            await self.ws.send_str(item)


class HubDoor:
    """Every hub connection of this instance; told about document changes and bus events."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.connections: set[HubConnection] = set()
        self._pump: asyncio.Task[None] | None = None
        self._diagnostics: dict[str, asyncio.Task[None]] = {}
        gw.workspace.listeners.append(self)

    @property
    def workspace_name(self) -> str:
        return self.gw.workspace.root.name

    # -- DocumentListener: every change, whichever door or instance made it -------------------------------
    def document_opened(self, snapshot: DocumentSnapshot) -> None:
        for conn in self._watchers(snapshot.path):
            conn.push(self._snapshot(snapshot.path, snapshot.text, snapshot.version))

    def document_changed(self, snapshot: DocumentSnapshot, changes: Sequence[TextChange], previous_text: str) -> None:
        watchers = self._watchers(snapshot.path)
        if not watchers:
            return
        message = {
            "type": "changed",
            "path": snapshot.path,
            "version": snapshot.version,
            "changes": [c.model_dump() for c in changes],
        }
        for conn in watchers:
            conn.push(message)
        if any("diagnostics" in c.watch for c in watchers):
            self._schedule_diagnostics(snapshot.path)

    def document_closed(self, path: str) -> None:
        return None

    def _watchers(self, path: str) -> list[HubConnection]:
        return [c for c in self.connections if path in c.paths]

    @staticmethod
    def _snapshot(path: str, text: str, version: int | None) -> dict[str, Any]:
        return {"type": "snapshot", "path": path, "text": text, "version": version}

    def _schedule_diagnostics(self, path: str) -> None:
        old = self._diagnostics.get(path)
        if old is not None:
            old.cancel()
        self._diagnostics[path] = asyncio.get_running_loop().create_task(self._publish_diagnostics(path))

    async def _publish_diagnostics(self, path: str) -> None:
        await asyncio.sleep(DIAGNOSTICS_DEBOUNCE)
        try:
            result = await self.gw.core.execute(CallContext(door=Door.HUB), "diagnostics", {"path": path})
        except GatewayError as exc:
            log.debug("hub: diagnostics of %s failed: %s", path, exc.message)
            return
        message = {"type": "diagnostics", "path": path, **result.model_dump(mode="json")}
        for conn in self._watchers(path):
            if "diagnostics" in conn.watch:
                conn.push(message)

    # -- bus events ------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._pump_events())

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        for task in self._diagnostics.values():
            task.cancel()
        if self in self.gw.workspace.listeners:
            self.gw.workspace.listeners.remove(self)

    async def _pump_events(self) -> None:
        with self.gw.bus.subscribe("*", maxsize=10_000) as sub:
            async for event in sub:
                if event.topic not in WATCHABLE or not self.connections:
                    continue
                kind = "presence" if event.topic == "presence" else "event"
                message = {"type": kind, "topic": event.topic, "event": event.type, "data": event.data}
                for conn in list(self.connections):
                    if conn.joined and event.topic in conn.watch:
                        conn.push(message)

    # -- one connection ----------------------------------------------------------------------------------
    async def handle(self, request: web.Request, identity: Identity) -> web.StreamResponse:
        hub = self.gw.config.hub
        ws = web.WebSocketResponse(heartbeat=hub.ping_seconds, max_msg_size=hub.max_message_bytes)
        await ws.prepare(request)
        self.start()
        conn = HubConnection(self, ws, identity)
        writer = asyncio.create_task(conn.writer())
        self.connections.add(conn)
        self.gw.metrics.connection_opened("hub")
        log.info("hub: %s connected as %s (%s)", conn.client_id, identity.subject, identity.role.name.lower())
        try:
            while not ws.closed:
                try:
                    msg = await ws.receive(timeout=hub.idle_seconds)
                except TimeoutError:
                    await ws.close(code=CLOSE_IDLE, message=b"idle")
                    break
                if msg.type == WSMsgType.TEXT:
                    await self._on_text(conn, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    conn.push({"type": "error", "error": {"code": "invalid_request", "message": "send JSON text"}})
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        finally:
            self.connections.discard(conn)
            self.gw.metrics.connection_closed("hub")
            with contextlib.suppress(asyncio.QueueFull):
                conn.queue.put_nowait(None)
            writer.cancel()
            for task in list(conn.tasks):
                task.cancel()
            if conn.joined:
                self._presence(conn, {"left": True}, "presence.left")
            log.info("hub: %s disconnected (close code %s)", conn.client_id, ws.close_code)
        return ws

    async def _on_text(self, conn: HubConnection, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            conn.push({"type": "error", "error": {"code": "parse_error", "message": "not JSON"}})
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            conn.push({"type": "error", "error": {"code": "invalid_request", "message": "need an object with a type"}})
            return
        kind = message["type"]
        msg_id = message.get("id")
        try:
            if kind == "ping":
                conn.push({"type": "pong", "id": msg_id})
            elif kind == "join":
                await self._join(conn, message)
            elif not conn.joined:
                raise InvalidParams("join the workspace first")
            elif kind == "open":
                await self._open(conn, message)
            elif kind == "close":
                conn.paths.discard(self._path(message))
            elif kind == "edit":
                self._spawn(conn, self._call(conn, msg_id, "change_document", self._edit_params(message)))
            elif kind == "call":
                name = message.get("capability")
                params = message.get("params") or {}
                if not isinstance(name, str) or not isinstance(params, dict):
                    raise InvalidParams("call needs a capability name and params object")
                self._spawn(conn, self._call(conn, msg_id, name, params))
            elif kind == "presence":
                self._presence(conn, message, "presence.updated")
            else:
                raise InvalidParams(f"unknown message type {kind!r}")
        except GatewayError as exc:
            conn.push({"type": "error", "id": msg_id, "error": error_body(exc)})
        except ValidationError as exc:
            conn.push({"type": "error", "id": msg_id, "error": {"code": "invalid_params", "message": str(exc)}})

    def _spawn(self, conn: HubConnection, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    @staticmethod
    def _path(message: dict[str, Any]) -> str:
        path = message.get("path")
        if not isinstance(path, str) or not path:
            raise InvalidParams("path is required")
        return path

    def _edit_params(self, message: dict[str, Any]) -> dict[str, Any]:
        params = {"path": self._path(message), "changes": message.get("changes")}
        if message.get("version") is not None:
            params["version"] = message["version"]
        return params

    async def _join(self, conn: HubConnection, message: dict[str, Any]) -> None:
        name = message.get("workspace")
        if name not in (None, "", self.workspace_name):
            conn.push({"type": "error", "error": {"code": "not_found", "message": f"no workspace {name!r}"}})
            await conn.ws.close(code=CLOSE_NOT_FOUND, message=b"no such workspace")
            return
        watch = message.get("watch")
        if watch is not None:
            if not isinstance(watch, list) or not all(isinstance(w, str) and w in WATCHABLE for w in watch):
                raise InvalidParams(f"watch must list topics among {sorted(WATCHABLE)}")
            conn.watch = frozenset(watch)
        conn.joined = True
        documents = [
            {"path": d.path, "version": d.version, "language_id": d.language_id}
            for d in self.gw.workspace.documents.values()
        ]
        conn.push(
            {
                "type": "welcome",
                "workspace": self.workspace_name,
                "you": {
                    "subject": conn.identity.subject,
                    "role": conn.identity.role.name.lower(),
                    "client": conn.client_id,
                },
                "documents": documents,
                "instance": self.gw.bus.instance_id,
            }
        )
        self._presence(conn, {}, "presence.joined")

    async def _open(self, conn: HubConnection, message: dict[str, Any]) -> None:
        path = self.gw.workspace.relative(self._path(message))
        if self.gw.collab is not None:
            await (await self.gw.collab.get()).shared(path)  # the shared text, opened in the store
        text, version = self.gw.workspace.text_of(path)
        conn.paths.add(path)
        conn.push(self._snapshot(path, text, version))

    async def _call(self, conn: HubConnection, msg_id: Any, name: str, params: dict[str, Any]) -> None:
        def progress(report: ProgressReport) -> None:
            conn.push({"type": "progress", "id": msg_id, **report.model_dump(exclude_none=True)})

        call = CallContext(
            identity=conn.identity, door=Door.HUB, on_progress=progress, meta={"session": conn.client_id}
        )
        try:
            result = await self.gw.core.execute(call, name, params)
        except GatewayError as exc:
            conn.push({"type": "error", "id": msg_id, "error": error_body(exc)})
            return
        conn.push({"type": "result", "id": msg_id, "result": result.model_dump(mode="json")})

    def _presence(self, conn: HubConnection, message: dict[str, Any], kind: str) -> None:
        data: dict[str, Any] = {"who": conn.identity.subject, "client": conn.client_id}
        for key in ("path", "cursor", "selection", "state"):
            if key in message:
                data[key] = message[key]
        self.gw.bus.publish_nowait(Event(topic="presence", type=kind, data=data))
