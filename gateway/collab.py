"""Collaborative documents: every shared document is a pycrdt `Y.Text`, and its text is the store's text.

Edits reach a shared document two ways and both end in the same CRDT:

- as text changes (REST, MCP, the JSON hub, `apply_edit`, managed servers): the workspace tells its
  listeners, and `CollabService` replays the change on the `Y.Text` as local CRDT operations;
- as CRDT updates (y-websocket clients, LSP editors through their replica, other instances through the
  bus): `CollabService.apply_update` merges the update and replays the resulting text delta on the
  workspace document, so every door reads the merged text.

Every resulting update is sent to the document's peers (y-websocket connections, LSP replicas), appended
to the store (the state directory, or Redis) and published on the bus for the other instances. A late
joiner, a restarted instance or a reconnecting client catches up from the stored updates by state vector.

pycrdt counts `Y.Text` offsets in UTF-8 bytes; the core counts code points. The conversions live here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from pycrdt import Doc, Text

from .capabilities.documents import DOCUMENT_TOPIC
from .errors import InvalidParams, NotFound
from .events import Event, EventBus
from .workspace import Document, DocumentSnapshot, Range, TextChange, Workspace

log = logging.getLogger("gateway.collab")

TEXT_NAME = "content"  # the name of the shared Y.Text in every document: `ydoc.getText('content')`
COLLAB_TOPIC = "collab"


# -- text and deltas --------------------------------------------------------------------------------------
def utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def byte_offset(text: str, index: int) -> int:
    """The UTF-8 byte offset of code point `index` of `text`."""
    return index if text.isascii() else len(text[:index].encode("utf-8"))


def chars_in_bytes(text: str, start: int, nbytes: int) -> int:
    """How many code points of `text` starting at code point `start` fill `nbytes` UTF-8 bytes."""
    if text.isascii():
        return nbytes
    count = 0
    index = start
    while nbytes > 0 and index < len(text):
        nbytes -= len(text[index].encode("utf-8"))
        index += 1
        count += 1
    return count


OffsetEdit = tuple[int, int, str]  # replace code points [start, end) with text, against the text before it


def apply_delta(text: str, delta: Sequence[dict[str, Any]]) -> tuple[list[OffsetEdit], str]:
    """A Y.Text delta (UTF-8 byte counts) as sequential code-point edits on `text`, and the result."""
    edits: list[OffsetEdit] = []
    cursor = 0
    for op in delta:
        if "retain" in op:
            cursor += chars_in_bytes(text, cursor, int(op["retain"]))
        elif "insert" in op:
            inserted = op["insert"]
            if not isinstance(inserted, str):  # an embed: not text, nothing in the store can hold it
                continue
            edits.append((cursor, cursor, inserted))
            text = text[:cursor] + inserted + text[cursor:]
            cursor += len(inserted)
        elif "delete" in op:
            count = chars_in_bytes(text, cursor, int(op["delete"]))
            edits.append((cursor, cursor + count, ""))
            text = text[:cursor] + text[cursor + count :]
    return edits, text


def diff_edit(old: str, new: str) -> OffsetEdit | None:
    """One edit turning `old` into `new`: the differing middle between the common prefix and suffix."""
    if old == new:
        return None
    limit = min(len(old), len(new))
    start = 0
    while start < limit and old[start] == new[start]:
        start += 1
    end_old, end_new = len(old), len(new)
    while end_old > start and end_new > start and old[end_old - 1] == new[end_new - 1]:
        end_old -= 1
        end_new -= 1
    return start, end_old, new[start:end_new]


def offset_edits_to_changes(path: str, text: str, edits: Sequence[OffsetEdit]) -> list[TextChange]:
    """Sequential code-point edits as the core's line/character `TextChange`s."""
    scratch = Document(path, text, 0, "")
    changes: list[TextChange] = []
    for start, end, new_text in edits:
        change = TextChange(range=Range(start=scratch.position_at(start), end=scratch.position_at(end)), text=new_text)
        scratch.apply([change])
        changes.append(change)
    return changes


def changes_to_offset_edits(text: str, changes: Sequence[TextChange]) -> list[OffsetEdit]:
    """The core's sequential `TextChange`s as code-point edits (a full replacement becomes one edit)."""
    scratch = Document("", text, 0, "")
    edits: list[OffsetEdit] = []
    for change in changes:
        if change.range is None:
            edits.append((0, len(scratch.text), change.text))
        else:
            start = scratch.offset_at(change.range.start)
            end = max(start, scratch.offset_at(change.range.end))
            edits.append((start, end, change.text))
        scratch.apply([change])
    return edits


def apply_offset_edits(ytext: Text, current: str, edits: Sequence[OffsetEdit]) -> str:
    """Replay code-point edits on `ytext` (whose text is `current`); returns the new text."""
    for start, end, new_text in edits:
        b_start = byte_offset(current, start)
        if end > start:
            b_end = b_start + utf8_len(current[start:end])
            del ytext[b_start:b_end]
        if new_text:
            ytext.insert(b_start, new_text)
        current = current[:start] + new_text + current[end:]
    return current


def seed_client_id(path: str, text: str) -> int:
    """A client id derived from the path and the seed text (below 2**53, as Yjs in JavaScript needs).

    Two instances that seed the same document from the same file produce byte-identical seed updates,
    which the CRDT recognises as one: nobody's copy of the file ever appears twice.
    """
    digest = hashlib.blake2b(f"{path}\x00{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 12


def seed_update(path: str, text: str) -> bytes:
    seed: Doc[Any] = Doc(client_id=seed_client_id(path, text))
    ytext = seed.get(TEXT_NAME, type=Text)
    if text:
        ytext.insert(0, text)
    return seed.get_update()


def fork(ydoc: Doc[Any]) -> Doc[Any]:
    """An independent copy of `ydoc` (its own client id) holding the same state."""
    copy: Doc[Any] = Doc()
    copy.get(TEXT_NAME, type=Text)
    copy.apply_update(ydoc.get_update())
    return copy


EMPTY_UPDATE = b"\x00\x00"


# -- peers and stores ---------------------------------------------------------------------------------------
class CollabPeer(Protocol):
    """Someone who holds a copy of a shared document and wants every update it did not send."""

    def send_update(self, doc: SharedDoc, update: bytes) -> None: ...


class CollabStore(Protocol):
    """Where the updates of shared documents outlive the process."""

    async def load(self, path: str) -> list[bytes]: ...

    def append(self, path: str, update: bytes) -> None: ...

    def bind(self, path: str, merged: Callable[[], bytes]) -> None:
        """Tell the store how to get the whole state of `path`, for stores that compact from it."""

    async def paths(self) -> list[str]: ...

    def discard(self, path: str) -> None: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...


_PATH_RECORD = b"\x00gateway-path:"  # never the start of a Yjs update (those start with a client count)


def _record(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class FileStore:
    """Embedded persistence: one append-only file of length-prefixed updates per document.

    Appends are written at once (small writes, no thread hop); a file that grows past `compact_after`
    updates is rewritten as one merged update.
    """

    def __init__(self, directory: Path, compact_after: int = 500) -> None:
        self.directory = directory
        self.compact_after = compact_after
        self._counts: dict[str, int] = {}
        self._merged: dict[str, Callable[[], bytes]] = {}
        self._files: dict[str, Path] = {}
        self._handles: dict[str, BinaryIO] = {}  # open for appending: one write call per update

    def _file(self, path: str) -> Path:
        target = self._files.get(path)
        if target is None:
            target = self._files[path] = self.directory / f"{hashlib.sha256(path.encode()).hexdigest()[:40]}.yupdates"
        return target

    def _close_handle(self, path: str) -> None:
        handle = self._handles.pop(path, None)
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()

    @staticmethod
    def _records(data: bytes) -> tuple[list[bytes], int]:
        """The length-prefixed records of `data`, and how many trailing bytes a torn write left."""
        records: list[bytes] = []
        offset = 0
        while offset + 4 <= len(data):
            (size,) = struct.unpack_from(">I", data, offset)
            if offset + 4 + size > len(data):
                break
            records.append(data[offset + 4 : offset + 4 + size])
            offset += 4 + size
        return records, len(data) - offset

    async def load(self, path: str) -> list[bytes]:
        target = self._file(path)
        if not target.exists():
            return []
        records, torn = self._records(target.read_bytes())
        if torn:
            log.warning("collab: %s ends in a torn record; ignoring its last %d bytes", target, torn)
        updates = [r for r in records if not r.startswith(_PATH_RECORD)]
        self._counts[path] = len(updates)
        return updates

    def bind(self, path: str, merged: Callable[[], bytes]) -> None:
        """Tell the store how to get the whole state of `path` when it compacts."""
        self._merged[path] = merged

    def append(self, path: str, update: bytes) -> None:
        target = self._file(path)
        count = self._counts.get(path, 0) + 1
        merged = self._merged.get(path)
        header = _PATH_RECORD + path.encode()
        if count > self.compact_after and merged is not None:
            self._close_handle(path)
            state = merged()
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(_record(header) + _record(state))
            os.replace(tmp, target)
            self._counts[path] = 1
            return
        handle = self._handles.get(path)
        if handle is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = self._handles[path] = open(target, "ab", buffering=0)  # noqa: SIM115 (kept open)
            if handle.tell() == 0:
                handle.write(_record(header))  # the file's first record names its document
        handle.write(_record(update))
        self._counts[path] = count

    def discard(self, path: str) -> None:
        self._close_handle(path)
        self._counts.pop(path, None)
        self._merged.pop(path, None)
        with contextlib.suppress(FileNotFoundError):
            self._file(path).unlink()

    async def paths(self) -> list[str]:
        return self._scan()

    def _scan(self) -> list[str]:
        """The documents with stored state: each file's first record names its document."""
        if not self.directory.is_dir():
            return []
        out = []
        for entry in sorted(self.directory.glob("*.yupdates")):
            with open(entry, "rb") as fh:
                head = fh.read(4 + 4 + 4096 * 4)
            records, _torn = self._records(head)
            if records and records[0].startswith(_PATH_RECORD):
                with contextlib.suppress(UnicodeDecodeError):
                    out.append(records[0][len(_PATH_RECORD) :].decode())
        return out

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        for path in list(self._handles):
            self._close_handle(path)


# -- one shared document ------------------------------------------------------------------------------------
class SharedDoc:
    """A document's CRDT: the Y doc, its text, and who holds a copy."""

    def __init__(self, path: str, ydoc: Doc[Any]) -> None:
        self.path = path
        self.ydoc = ydoc
        self.ytext = ydoc.get(TEXT_NAME, type=Text)
        self.text = str(self.ytext)
        self.peers: set[CollabPeer] = set()
        self.unstored_seed: bytes | None = None
        self._edits: list[OffsetEdit] = []
        self._updates: list[bytes] = []
        ydoc.observe(self._on_transaction)
        self.ytext.observe(self._on_text)
        self.awareness_clients: dict[object, set[int]] = {}  # y-websocket connection -> awareness client ids
        self.awareness_states: dict[int, tuple[int, str]] = {}  # client id -> (clock, JSON state)

    def _on_transaction(self, event: Any) -> None:
        update: bytes = event.update
        if update != EMPTY_UPDATE:
            self._updates.append(update)

    def _on_text(self, event: Any) -> None:
        edits, self.text = apply_delta(self.text, event.delta)
        self._edits.extend(edits)

    def merge(self, update: bytes) -> tuple[str, list[OffsetEdit], list[bytes]]:
        """Apply a remote update; returns the text before, the text edits and the updates it produced."""
        before = self.text
        self._edits, self._updates = [], []
        self.ydoc.apply_update(update)
        edits, updates = self._edits, self._updates
        self._edits, self._updates = [], []
        return before, edits, updates

    def edit(self, edits: Sequence[OffsetEdit]) -> list[bytes]:
        """Apply code-point edits as local CRDT operations; returns the updates they produced."""
        self._edits, self._updates = [], []
        with self.ydoc.transaction():
            apply_offset_edits(self.ytext, self.text, edits)
        updates = self._updates
        self._edits, self._updates = [], []
        return updates

    def state_vector(self) -> bytes:
        return self.ydoc.get_state()

    def missing(self, state_vector: bytes) -> bytes:
        return self.ydoc.get_update(state_vector)


# -- the service ----------------------------------------------------------------------------------------------
class _Remote:
    """The origin of updates that came from another instance through the bus."""


REMOTE = _Remote()


class CollabService:
    """All shared documents of the workspace, kept in step with the document store, the store and the bus."""

    def __init__(self, workspace: Workspace, bus: EventBus, store: CollabStore) -> None:
        self.workspace = workspace
        self.bus = bus
        self.store = store
        self.docs: dict[str, SharedDoc] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._applying = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listen: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        # Told about y-websocket awareness updates from other instances: (path, update).
        self.awareness_hooks: list[Callable[[str, bytes], None]] = []
        workspace.listeners.append(self)

    # -- life cycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bring back every persisted document (unsaved collaborative state survives a restart)."""
        if self.bus.spans_instances:  # with one process there are no other instances to hear or tell
            self._listen = asyncio.create_task(self._listen_bus())
            self._watch = asyncio.create_task(self._watch_bus_health())
        for path in await self.store.paths():
            try:
                await self.shared(path)
            except Exception:
                log.exception("collab: cannot restore %s", path)

    async def close(self) -> None:
        for task in (self._listen, self._watch, *self._tasks):
            if task is not None:
                task.cancel()
        for task in (self._listen, self._watch, *self._tasks):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.store.flush()
        await self.store.close()
        if self in self.workspace.listeners:
            self.workspace.listeners.remove(self)

    # -- getting a shared document --------------------------------------------------------------------------------
    async def shared(self, path: str) -> SharedDoc:
        """The shared document of `path`, loaded from the store or seeded from the file on disk."""
        rel = self.workspace.relative(path)
        doc = self.docs.get(rel)
        if doc is not None:
            return doc
        lock = self._locks.setdefault(rel, asyncio.Lock())
        async with lock:
            doc = self.docs.get(rel)
            if doc is not None:
                return doc
            updates = await self.store.load(rel)
            ydoc: Doc[Any] = Doc()
            ydoc.get(TEXT_NAME, type=Text)
            seed: bytes | None = None
            if not updates:
                try:
                    disk = self.workspace.read_disk_text(rel)
                except NotFound:
                    if rel not in self.workspace.documents:
                        raise
                    disk = ""
                except OSError as exc:  # a name too long, a folder where a file should be, ...
                    raise InvalidParams(f"cannot read {rel!r}: {exc.strerror or exc}", data={"path": rel}) from None
                seed = seed_update(rel, disk)
                updates = [seed]
            for update in updates:
                ydoc.apply_update(update)
            doc = SharedDoc(rel, ydoc)
            doc.unstored_seed = seed  # stored with the first edit: a document only opened leaves no state
            self.store.bind(rel, ydoc.get_update)
            self.docs[rel] = doc
            open_doc = self.workspace.documents.get(rel)
            if open_doc is None:
                self._apply_to_workspace(rel, None, doc.text)
            elif open_doc.text != doc.text:
                # Edits made before the document was shared (or on this instance while it was apart): the
                # store's text is the newest; it enters the CRDT as one local edit.
                edit = diff_edit(doc.text, open_doc.text)
                if edit is not None:
                    self._fan_out(doc, doc.edit([edit]), None)
            return doc

    def peek(self, path: str) -> SharedDoc | None:
        return self.docs.get(path)

    # -- updates from CRDT peers ---------------------------------------------------------------------------------
    def apply_update(self, path: str, update: bytes, origin: object, by: str = "") -> SharedDoc:
        """Merge a CRDT update from `origin` into the shared document and the document store."""
        doc = self.docs.get(path)
        if doc is None:
            raise NotFound(f"document {path!r} is not shared", data={"path": path})
        before, edits, updates = doc.merge(update)
        if edits:
            self._apply_to_workspace(path, (before, edits), doc.text, by=by, origin=origin)
        self._fan_out(doc, updates, origin)
        return doc

    @contextlib.contextmanager
    def _quietly(self) -> Iterator[None]:
        """Change the store without hearing it back as a text edit to replay on the CRDT."""
        self._applying = True
        try:
            yield
        finally:
            self._applying = False

    def _apply_to_workspace(
        self,
        path: str,
        change: tuple[str, list[OffsetEdit]] | None,
        text: str,
        *,
        by: str = "",
        origin: object = None,
    ) -> None:
        """Replay a merge on the workspace document (opening it when nobody had it open)."""
        with self._quietly():
            current = self.workspace.documents.get(path)
            if current is None:
                self.workspace.open(path, text)
            elif change is not None and current.text == change[0]:
                self.workspace.change(path, offset_edits_to_changes(path, change[0], change[1]))
            elif current.text != text:
                self.workspace.change(path, [TextChange(text=text)])
        doc = self.workspace.documents.get(path)
        if doc is not None and self.bus.wants(DOCUMENT_TOPIC):
            self.bus.publish_nowait(
                Event(
                    topic=DOCUMENT_TOPIC,
                    type="document.changed",
                    data={
                        "path": path,
                        "version": doc.version,
                        "by": by,
                        "door": "collab",
                        "session": getattr(origin, "session_id", None),
                    },
                )
            )

    def _fan_out(self, doc: SharedDoc, updates: list[bytes], origin: object) -> None:
        for update in updates:
            for peer in list(doc.peers):
                if peer is not origin:
                    try:
                        peer.send_update(doc, update)
                    except Exception:
                        log.exception("collab: peer %r failed", peer)
            if doc.unstored_seed is not None:
                self.store.append(doc.path, doc.unstored_seed)
                doc.unstored_seed = None
            self.store.append(doc.path, update)
            if origin is not REMOTE:
                self._publish("collab.update", doc.path, update)

    def _publish(self, kind: str, path: str, payload: bytes) -> None:
        """Send a CRDT or awareness update to the other instances (if the bus reaches any)."""
        if not self.bus.spans_instances:
            return
        self.bus.publish_nowait(
            Event(topic=COLLAB_TOPIC, type=kind, data={"path": path, "update": base64.b64encode(payload).decode()})
        )

    # -- DocumentListener: edits from text doors ----------------------------------------------------------------
    def document_opened(self, snapshot: DocumentSnapshot) -> None:
        if self._applying:
            return
        doc = self.docs.get(snapshot.path)
        if doc is None:
            self._spawn(self._share_quietly(snapshot.path))
        elif doc.text != snapshot.text:
            # Someone opened a document that is already shared: the shared text wins.
            with self._quietly():
                self.workspace.change(snapshot.path, [TextChange(text=doc.text)])

    def document_changed(self, snapshot: DocumentSnapshot, changes: Sequence[TextChange], previous_text: str) -> None:
        if self._applying:
            return
        doc = self.docs.get(snapshot.path)
        if doc is None:
            self._spawn(self._share_quietly(snapshot.path))
            return
        if doc.text == previous_text:
            edits = changes_to_offset_edits(previous_text, changes)
        else:
            edit = diff_edit(doc.text, snapshot.text)
            edits = [edit] if edit is not None else []
        if edits:
            self._fan_out(doc, doc.edit(edits), None)

    def document_closed(self, path: str) -> None:
        """Closed by its last holder: forget its unsaved state (a later open starts from the file again)."""
        doc = self.docs.get(path)
        if doc is None or self._applying or doc.peers:
            return
        del self.docs[path]
        self.store.discard(path)

    async def _share_quietly(self, path: str) -> None:
        with contextlib.suppress(NotFound):
            await self.shared(path)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- presence (y-websocket awareness) travels with the same bus ---------------------------------------------
    def publish_awareness(self, path: str, update: bytes) -> None:
        self._publish("collab.awareness", path, update)

    # -- across instances ---------------------------------------------------------------------------------------------
    async def _listen_bus(self) -> None:
        with self.bus.subscribe(COLLAB_TOPIC, maxsize=10_000) as sub:
            dropped = 0
            async for event in sub:
                if event.origin == self.bus.instance_id:
                    continue
                if sub.dropped != dropped:  # we fell behind and lost updates: catch up from the store
                    dropped = sub.dropped
                    self._spawn(self.resync_all())
                path = event.data.get("path")
                payload = event.data.get("update")
                if not isinstance(path, str) or not isinstance(payload, str):
                    continue
                try:
                    update = base64.b64decode(payload)
                except ValueError:
                    continue
                if event.type == "collab.update":
                    doc = self.docs.get(path)
                    if doc is None:
                        continue  # not shared here: the store has it for when it is
                    try:
                        self.apply_update(path, update, REMOTE)
                    except Exception:
                        log.exception("collab: bad update for %s from %s", path, event.origin)
                elif event.type == "collab.awareness":
                    for listener in list(self.awareness_hooks):
                        listener(path, update)

    async def _watch_bus_health(self) -> None:
        """When the bus comes back after an outage, exchange whole states with the store and the others."""
        healthy = self.bus.healthy
        while True:
            await asyncio.sleep(0.25)
            now = self.bus.healthy
            if now and not healthy:
                log.info("collab: bus is back; resynchronising %d documents", len(self.docs))
                await self.resync_all()
            healthy = now

    async def resync_all(self) -> None:
        """Merge what the store holds and offer our whole state to the store and the other instances."""
        for path, doc in list(self.docs.items()):
            try:
                for update in await self.store.load(path):
                    self.apply_update(path, update, REMOTE)
                state = doc.ydoc.get_update()
                self.store.append(path, state)
                self._publish("collab.update", path, state)
            except Exception:
                log.exception("collab: resync of %s failed", path)
