"""Property: whatever concurrent edits Yjs clients and text doors make, delivered in any interleaving,
every copy ends identical, and the document store holds that same text."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from gateway.collab import TEXT_NAME, CollabService, FileStore, SharedDoc, apply_delta, diff_edit
from gateway.events import InMemoryBus
from gateway.workspace import Range, TextChange, Workspace

ALPHABET = st.sampled_from(["a", "b", "é", "😀", "中", "\n", " ", "z"])
PIECE = st.text(ALPHABET, min_size=1, max_size=4)


class Client:
    """A Yjs client whose messages to and from the gateway wait in queues until the script delivers them."""

    def __init__(self, service: CollabService, doc: SharedDoc) -> None:
        self.doc: Doc[Any] = Doc()
        self.ytext = self.doc.get(TEXT_NAME, type=Text)
        self.doc.apply_update(doc.ydoc.get_update())
        self.outbox: list[bytes] = []
        self.inbox: list[bytes] = []
        self._remote = False
        self.doc.observe(self._on_update)
        doc.peers.add(self)

    def _on_update(self, event: Any) -> None:
        if not self._remote:
            self.outbox.append(event.update)

    def send_update(self, doc: SharedDoc, update: bytes) -> None:
        self.inbox.append(update)

    def receive(self, update: bytes) -> None:
        self._remote = True
        try:
            self.doc.apply_update(update)
        finally:
            self._remote = False

    @property
    def text(self) -> str:
        return str(self.ytext)

    def edit(self, where: float, delete: int, insert: str) -> None:
        text = self.text
        start = int(where * len(text))
        end = min(len(text), start + delete)
        b_start = len(text[:start].encode())
        with self.doc.transaction():
            if end > start:
                del self.ytext[b_start : b_start + len(text[start:end].encode())]
            if insert:
                self.ytext.insert(b_start, insert)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("edit"), st.integers(0, 3), st.floats(0, 1), st.integers(0, 3), PIECE),
        st.tuples(st.just("deliver"), st.integers(0, 2), st.booleans()),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(initial=st.text(ALPHABET, max_size=12), ops=OPS)
def test_random_concurrent_edit_scripts_converge(tmp_path: Path, initial: str, ops: list[Any]) -> None:
    asyncio.run(_run(tmp_path, initial, ops))


async def _run(tmp_path: Path, initial: str, ops: list[Any]) -> None:
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    (root / "doc.txt").write_text(initial)
    workspace = Workspace(root)
    service = CollabService(workspace, InMemoryBus(), FileStore(root / ".state"))
    shared = await service.shared("doc.txt")
    clients = [Client(service, shared) for _ in range(3)]
    for op in ops:
        if op[0] == "edit":
            _, actor, where, delete, insert = op
            if actor < 3:
                clients[actor].edit(where, delete, insert)
            else:  # a text door (REST, MCP, the JSON hub): a line/character change on the store
                doc = workspace.documents["doc.txt"]
                start = int(where * len(doc.text))
                end = min(len(doc.text), start + delete)
                rng = Range(start=doc.position_at(start), end=doc.position_at(end))
                workspace.change("doc.txt", [TextChange(range=rng, text=insert)])
        else:
            _, actor, upstream = op
            client = clients[actor]
            queue = client.outbox if upstream else client.inbox
            if queue:
                # Each connection is a FIFO (a WebSocket, a Redis channel); only the channels interleave.
                # (yrs 0.14 loses text when one source's updates arrive out of order, which no transport
                # here does.)
                update = queue.pop(0)
                if upstream:
                    service.apply_update("doc.txt", update, client)
                else:
                    client.receive(update)
    # deliver everything left, upstream first, then downstream
    for client in clients:
        while client.outbox:
            service.apply_update("doc.txt", client.outbox.pop(0), client)
    for client in clients:
        while client.inbox:
            client.receive(client.inbox.pop(0))
    final = workspace.documents["doc.txt"].text
    assert (shared.text, str(shared.ytext)) == (final, final), (initial, ops)
    for client in clients:
        assert client.text == final, (initial, ops)
    await service.close()


@given(old=st.text(ALPHABET, max_size=20), new=st.text(ALPHABET, max_size=20))
def test_diff_edit_turns_old_into_new(old: str, new: str) -> None:
    edit = diff_edit(old, new)
    if edit is None:
        assert old == new
    else:
        start, end, text = edit
        assert old[:start] + text + old[end:] == new


@given(text=st.text(ALPHABET, max_size=20), where=st.floats(0, 1), delete=st.integers(0, 5), insert=PIECE)
def test_a_yjs_delta_in_utf8_bytes_replays_as_code_point_edits(
    text: str, where: float, delete: int, insert: str
) -> None:
    doc: Doc[Any] = Doc()
    ytext = doc.get(TEXT_NAME, type=Text)
    ytext.insert(0, text)
    deltas: list[Any] = []
    ytext.observe(lambda event: deltas.append(event.delta))
    start = int(where * len(text))
    end = min(len(text), start + delete)
    b_start = len(text[:start].encode())
    with doc.transaction():
        if end > start:
            del ytext[b_start : b_start + len(text[start:end].encode())]
        ytext.insert(b_start, insert)
    edits, result = apply_delta(text, deltas[0])
    assert result == str(ytext) == text[:start] + insert + text[end:]
    replay = text
    for e_start, e_end, e_text in edits:
        replay = replay[:e_start] + e_text + replay[e_end:]
    assert replay == result
