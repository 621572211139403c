"""An LSP editor as a collaborator: a CRDT replica of what the editor's buffer holds.

Each LSP session keeps, per open document, a pycrdt replica that mirrors the editor's text exactly. The
editor's `didChange` is replayed on the replica as local CRDT operations and the resulting update is
merged into the shared document through the core (`collab_update`, so roles apply). Edits from everyone
else reach the editor as `workspace/applyEdit` against the editor's current version: the gateway forks
the replica, applies what the replica is missing, and sends the resulting text edits. The echo of that
edit (the `didChange` the editor sends after applying it) is recognised by the text it produces, so the
edit is merged into the replica once and never sent back as the editor's own.

Because the replica only takes the missing update when the echo arrives, edits the user typed before the
applyEdit landed are still relative to the replica's text, and merge correctly: the editor then refuses
the stale applyEdit (its version moved on) and gets a fresh one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lsprotocol import types as lsp

from gateway.collab import EMPTY_UPDATE, OffsetEdit, SharedDoc, diff_edit, fork
from gateway.errors import Forbidden, GatewayError
from gateway.workspace import Document
from translators.lsp import LspConverter

if TYPE_CHECKING:
    from .session import GatewaySession

log = logging.getLogger("gateway.lsp")


@dataclass
class _Pending:
    expected: str  # the editor's text once it has applied the edit
    update: bytes | None  # what the replica takes when the echo arrives (None: a resync, nothing to merge)
    version: int  # the editor version the edit was sent against


def _lsp_edits(conv: LspConverter, scratch: Document, edits: list[OffsetEdit]) -> list[lsp.TextEdit]:
    """Sequential left-to-right code-point edits as LSP text edits against the original text `scratch`."""
    path = scratch.path
    merged: list[list[Any]] = []  # [start, end, new_text] in offsets of the original text
    shift = 0
    for start, end, new_text in edits:
        o_start, o_end = start - shift, end - shift
        if merged and merged[-1][1] == o_start:
            merged[-1][1] = o_end
            merged[-1][2] += new_text
        else:
            merged.append([o_start, o_end, new_text])
        shift += len(new_text) - (end - start)
    out = []
    for o_start, o_end, new_text in merged:
        start_pos = conv.position_to_lsp(path, scratch.position_at(o_start))
        end_pos = conv.position_to_lsp(path, scratch.position_at(o_end))
        out.append(lsp.TextEdit(range=lsp.Range(start=start_pos, end=end_pos), new_text=new_text))
    return out


class LspReplica:
    """The CRDT replica of one document in one LSP editor."""

    def __init__(self, session: GatewaySession, shared: SharedDoc, uri: str, text: str, version: int) -> None:
        self.session = session
        self.session_id = session.session_id
        self.shared = shared
        self.path = shared.path
        self.uri = uri
        self.client_text = text
        self.client_version = version
        self.mirror = SharedDoc(shared.path, fork(shared.ydoc))
        self.pending: _Pending | None = None
        self.live = session.supports_apply_edit()
        self._push: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        shared.peers.add(self)
        if text != self.mirror.text:
            self._resync()

    def close(self) -> None:
        self.shared.peers.discard(self)
        for task in [self._push, *self._tasks]:
            if task is not None:
                task.cancel()

    # -- CollabPeer: someone else changed the document ---------------------------------------------------
    def send_update(self, doc: SharedDoc, update: bytes) -> None:
        self.schedule_push()

    def schedule_push(self) -> None:
        if self._push is None or self._push.done():
            self._push = asyncio.get_running_loop().create_task(self._push_missing())

    async def _push_missing(self) -> None:
        await asyncio.sleep(0)  # gather the updates of this loop turn into one applyEdit
        if not self.live or self.pending is not None or self.client_text != self.mirror.text:
            return
        missing = self.shared.missing(self.mirror.state_vector())
        if missing == EMPTY_UPDATE:
            return
        probe = SharedDoc(self.path, fork(self.mirror.ydoc))
        before, edits, _updates = probe.merge(missing)
        if not edits:  # only metadata (deletions already seen, other types): take it quietly
            self.mirror.merge(missing)
            return
        self._send(before, edits, _Pending(probe.text, missing, self.client_version))

    def _resync(self) -> None:
        """Bring the editor to the replica's text with one edit (on open with other text, after a refusal)."""
        edit = diff_edit(self.client_text, self.mirror.text)
        if edit is None or not self.live:
            return
        self._send(self.client_text, [edit], _Pending(self.mirror.text, None, self.client_version))

    def _send(self, text: str, edits: list[OffsetEdit], pending: _Pending) -> None:
        scratch = Document(self.path, text, 0, "")
        document_edit = lsp.TextDocumentEdit(
            text_document=lsp.OptionalVersionedTextDocumentIdentifier(uri=self.uri, version=pending.version),
            edits=_lsp_edits(self.session.converter_for(scratch), scratch, edits),
        )
        self.pending = pending
        task = asyncio.get_running_loop().create_task(self._apply_edit(document_edit, pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _apply_edit(self, edit: lsp.TextDocumentEdit, pending: _Pending) -> None:
        params = lsp.ApplyWorkspaceEditParams(
            edit=lsp.WorkspaceEdit(document_changes=[edit]), label="collaborator's edit"
        )
        try:
            result = await asyncio.wait_for(self.session.workspace_apply_edit_async(params), 30)
        except (TimeoutError, Exception) as exc:  # no answer, or the client cannot apply edits at all
            log.info("lsp session %s: applyEdit failed (%s); no more live edits for it", self.session_id, exc)
            if self.pending is pending:
                self.pending = None
            self.live = False
            return
        if result.applied:
            return  # the echo (didChange) settles it, if it has not already
        if self.pending is pending:
            self.pending = None
            log.debug("lsp session %s: applyEdit refused (%s); retrying", self.session_id, result.failure_reason)
            if self.client_text == self.mirror.text:
                self.schedule_push()
            else:
                self._resync()

    # -- the editor changed the document -------------------------------------------------------------------
    def editor_changed(self, version: int, changes: list[OffsetEdit]) -> bytes | None:
        """Replay the editor's edits (code points, sequential); returns the CRDT update to merge, if any."""
        self.client_version = version
        pending = self.pending
        rest = changes
        if pending is not None:
            text = self.client_text
            for index, (start, end, new_text) in enumerate(changes):
                text = text[:start] + new_text + text[end:]
                if text == pending.expected:  # the echo of our applyEdit (maybe followed by typing)
                    self.pending = None
                    if pending.update is not None:
                        self.mirror.merge(pending.update)
                    self.client_text = text
                    rest = changes[index + 1 :]
                    break
            else:
                if pending.update is None:  # typed during a resync: the resync's edit will be refused
                    self.client_text = text
                    return None
        if not rest:
            self.schedule_push()
            return None
        if self.client_text != self.mirror.text:  # lost step (should not happen): realign by one diff
            edit = diff_edit(self.mirror.text, self.client_text)
            rest = [edit, *rest] if edit is not None else rest
        vector = self.mirror.state_vector()
        self.mirror.edit(rest)
        self.client_text = self.mirror.text  # the replica was in step before, so it is after
        self.schedule_push()
        return self.mirror.missing(vector)

    async def merge(self, update: bytes) -> None:
        """Merge the editor's update into the shared document (through the core, which checks roles)."""
        session = self.session
        call = session.call()
        call.meta["collab_peer"] = self
        try:
            await session.gw.core.execute(
                call, "collab_update", {"path": self.path, "update": base64.b64encode(update).decode()}
            )
        except Forbidden as exc:
            session.window_log_message(
                lsp.LogMessageParams(type=lsp.MessageType.Warning, message=f"edit not shared: {exc.message}")
            )
            self._roll_back()
        except GatewayError as exc:
            log.warning("lsp session %s: update refused: %s", self.session_id, exc.message)
            self._roll_back()

    def _roll_back(self) -> None:
        """The editor's edit was refused: start over from the shared document and bring the editor back."""
        self.mirror = SharedDoc(self.path, fork(self.shared.ydoc))
        self.pending = None
        with contextlib.suppress(Exception):
            self._resync()
