"""Real collaborators for the shared-workspace tests: an LSP editor, a node Yjs client, a pycrdt client.

Each one keeps its own copy of the document and a `Signal` that fires on every change, so tests wait on
events with timeouts instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websockets
from lsprotocol import types as lsp
from pycrdt import Doc, Text, create_sync_message, create_update_message, handle_sync_message
from pygls.lsp.client import LanguageClient

YJS_DIR = Path(__file__).resolve().parent.parent / "yjs"


class Signal:
    """Fires whenever something changed; `wait_for` re-checks a predicate after each firing."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), min(remaining, 0.5))


def ensure_node_modules() -> None:
    """`npm ci` in tests/yjs when node_modules is missing or older than the lock file."""
    modules = YJS_DIR / "node_modules"
    lock = YJS_DIR / "package-lock.json"
    marker = modules / ".package-lock.json"
    if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=YJS_DIR, check=True, capture_output=True)


def utf16_position(text: str, offset: int) -> lsp.Position:
    before = text[:offset]
    line = before.count("\n")
    start = before.rfind("\n") + 1
    return lsp.Position(line=line, character=len(before[start:].encode("utf-16-le")) // 2)


def offset_of(text: str, pos: lsp.Position) -> int:
    lines = text.split("\n")
    offset = sum(len(line) + 1 for line in lines[: pos.line])
    line = lines[pos.line] if pos.line < len(lines) else ""
    units = 0
    index = 0
    while index < len(line) and units < pos.character:
        units += len(line[index].encode("utf-16-le")) // 2
        index += 1
    return offset + index


class EditorClient(LanguageClient):
    """An LSP editor (UTF-16 positions) that applies `workspace/applyEdit` like VS Code does."""

    def __init__(self, name: str = "editor") -> None:
        super().__init__(name, "1.0")
        self.texts: dict[str, str] = {}
        self.versions: dict[str, int] = {}
        self.signal = Signal()
        self.applied: list[lsp.ApplyWorkspaceEditParams] = []
        self.messages: list[str] = []

        @self.feature(lsp.WORKSPACE_APPLY_EDIT)
        def apply_edit(params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
            return self._apply(params)

        @self.feature(lsp.WINDOW_LOG_MESSAGE)
        def log_message(params: lsp.LogMessageParams) -> None:
            self.messages.append(params.message)
            self.signal.fire()

    async def connect(self, host: str, port: int, root: Path, token: str | None = None) -> None:
        await self.start_tcp(host, port)
        caps = lsp.ClientCapabilities(
            workspace=lsp.WorkspaceClientCapabilities(
                apply_edit=True, workspace_edit=lsp.WorkspaceEditClientCapabilities(document_changes=True)
            )
        )
        options = {"token": token} if token else None
        await self.initialize_async(
            lsp.InitializeParams(capabilities=caps, root_uri=root.as_uri(), initialization_options=options)
        )
        self.initialized(lsp.InitializedParams())

    async def close(self) -> None:
        """Shut the session down as an editor does: shutdown, exit, then the connection."""
        await self.shutdown_async(None)
        self.exit(None)
        await self.stop()

    def open(self, uri: str, text: str) -> None:
        self.texts[uri] = text
        self.versions[uri] = 1
        self.text_document_did_open(
            lsp.DidOpenTextDocumentParams(
                text_document=lsp.TextDocumentItem(uri=uri, language_id="plaintext", version=1, text=text)
            )
        )

    def edit(self, uri: str, start: int, end: int, new_text: str) -> None:
        """Replace code points [start, end) as the user typing would."""
        text = self.texts[uri]
        change = lsp.TextDocumentContentChangePartial(
            range=lsp.Range(start=utf16_position(text, start), end=utf16_position(text, end)), text=new_text
        )
        self.texts[uri] = text[:start] + new_text + text[end:]
        self.versions[uri] += 1
        self.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
                content_changes=[change],
            )
        )
        self.signal.fire()

    def _apply(self, params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
        self.applied.append(params)
        for change in params.edit.document_changes or []:
            assert isinstance(change, lsp.TextDocumentEdit)
            uri = change.text_document.uri
            if change.text_document.version != self.versions.get(uri):
                return lsp.ApplyWorkspaceEditResult(applied=False, failure_reason="version mismatch")
            text = self.texts[uri]
            edits = sorted(
                change.edits,
                key=lambda e: (e.range.start.line, e.range.start.character),
                reverse=True,
            )
            content_changes = []
            for e in edits:  # from the end, so earlier ranges stay valid; sent in the same order
                start = offset_of(text, e.range.start)
                end = offset_of(text, e.range.end)
                content_changes.append(
                    lsp.TextDocumentContentChangePartial(
                        range=lsp.Range(start=utf16_position(text, start), end=utf16_position(text, end)),
                        text=e.new_text,
                    )
                )
                text = text[:start] + e.new_text + text[end:]
            self.texts[uri] = text
            self.versions[uri] += 1
            self.text_document_did_change(
                lsp.DidChangeTextDocumentParams(
                    text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
                    content_changes=content_changes,  # type: ignore[arg-type]
                )
            )
        self.signal.fire()
        return lsp.ApplyWorkspaceEditResult(applied=True)


class NodeYjsClient:
    """An unmodified Yjs client (yjs 13, y-websocket 3) in a node process (tests/yjs/client.mjs)."""

    def __init__(self) -> None:
        self.text = ""
        self.synced = False
        self.events: list[dict[str, Any]] = []
        self.signal = Signal()
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, server_url: str, room: str, token: str | None = None) -> None:
        args = [str(YJS_DIR / "client.mjs"), server_url, room, *([token] if token else [])]
        self.proc = await asyncio.create_subprocess_exec(
            "node", *args, cwd=YJS_DIR, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            event = json.loads(line)
            self.events.append(event)
            if "text" in event:
                self.text = event["text"]
            if event.get("event") == "synced":
                self.synced = True
            self.signal.fire()

    def send(self, **command: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())

    def insert(self, index: int, text: str) -> None:
        self.send(op="insert", index=index, text=text)

    def delete(self, index: int, length: int) -> None:
        self.send(op="delete", index=index, length=length)

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(Exception):
                self.send(op="quit")
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()


class PyYjsClient:
    """A Python y-websocket client on pycrdt and websockets."""

    def __init__(self) -> None:
        self.doc: Doc[Any] = Doc()
        self.ytext = self.doc.get("content", type=Text)
        self.signal = Signal()
        self.ws: Any = None
        self.synced = False
        self.denied: list[bytes] = []
        self.awareness: list[bytes] = []
        self.received = 0
        self._reader: asyncio.Task[None] | None = None
        self._remote = False
        self.doc.observe(self._on_update)

    @property
    def text(self) -> str:
        return str(self.ytext)

    def _on_update(self, event: Any) -> None:
        if not self._remote and self.ws is not None and self.synced:
            asyncio.get_running_loop().create_task(self._send(create_update_message(event.update)))
        self.signal.fire()

    async def _send(self, message: bytes) -> None:
        with contextlib.suppress(Exception):
            await self.ws.send(message)

    async def connect(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.ws = await websockets.connect(url, additional_headers=headers or {}, max_size=None)
        await self.ws.send(create_sync_message(self.doc))
        self._reader = asyncio.create_task(self._read())
        await self.signal.wait_for(lambda: self.synced, 10, "sync step 2")
        # What was edited while apart goes up now (the server's step 1 asked for it, too).
        await self._send(create_update_message(self.doc.get_update()))

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                assert isinstance(message, bytes)
                self.received += 1
                if message[0] == 0:  # sync
                    self._remote = True
                    try:
                        reply = handle_sync_message(message[1:], self.doc)
                    finally:
                        self._remote = False
                    if reply is not None:
                        await self.ws.send(reply)
                    if message[1] == 1:
                        self.synced = True
                elif message[0] == 1:
                    self.awareness.append(message)
                elif message[0] == 2:
                    self.denied.append(message)
                self.signal.fire()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.signal.fire()

    def insert(self, index: int, text: str) -> None:
        self.ytext.insert(len(self.text[:index].encode()), text)

    def delete(self, index: int, length: int) -> None:
        current = self.text
        start = len(current[:index].encode())
        del self.ytext[start : start + len(current[index : index + length].encode())]

    async def disconnect(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self.ws = None
        self.synced = False
