"""The engine interface every analysis engine implements.

An operation returns `None` when this engine does not offer it for this document (the service then
tries the next engine), an empty list or empty result when it did answer and found nothing, and raises
`EngineUnavailable` when it would answer but cannot right now (starting, indexing, restarting).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ..workspace import DocumentSnapshot, TextChange
from .models import (
    CallHierarchyCall,
    CompletionItem,
    Diagnostic,
    DocumentSymbol,
    Hover,
    Location,
    Position,
    SignatureHelp,
    SymbolInfo,
    WorkspaceEdit,
)


class EngineUnavailable(Exception):
    """The engine would answer but cannot now; `reason` is shown to the caller."""

    def __init__(self, reason: Literal["server_starting", "server_restarting"], message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


Direction = Literal["incoming", "outgoing"]


class Engine:
    """Base class: every operation is unsupported until an engine overrides it."""

    name: str = "engine"

    def handles(self, path: str, language_id: str) -> bool:
        """True when this engine analyses documents of this path and language."""
        return False

    async def start(self) -> None:
        """Begin background work (indexing, watching); must return quickly."""

    async def close(self) -> None:
        """Stop background work and child processes."""

    # -- document sync (the workspace's listener calls these) ---------------------------------------
    def document_opened(self, snapshot: DocumentSnapshot) -> None:
        """A document was opened in the gateway's store."""

    def document_changed(self, snapshot: DocumentSnapshot, changes: Sequence[TextChange], previous_text: str) -> None:
        """An open document changed (any door): `changes` (code-point ranges) turned `previous_text` into
        `snapshot.text`, applied in order."""

    def document_closed(self, path: str) -> None:
        """A document was closed; the file on disk is the truth again."""

    # -- operations ----------------------------------------------------------------------------------
    async def diagnostics(self, doc: DocumentSnapshot) -> list[Diagnostic] | None:
        return None

    async def complete(self, doc: DocumentSnapshot, pos: Position) -> list[CompletionItem] | None:
        return None

    async def hover(self, doc: DocumentSnapshot, pos: Position) -> Hover | Literal[False] | None:
        """A hover, `False` for "answered: nothing here", or None for "not offered"."""
        return None

    async def definition(self, doc: DocumentSnapshot, pos: Position) -> list[Location] | None:
        return None

    async def references(
        self, doc: DocumentSnapshot, pos: Position, include_declaration: bool
    ) -> list[Location] | None:
        return None

    async def implementations(self, doc: DocumentSnapshot, pos: Position) -> list[Location] | None:
        return None

    async def document_symbols(self, doc: DocumentSnapshot) -> list[DocumentSymbol] | None:
        return None

    async def workspace_symbols(self, query: str, language_id: str | None) -> list[SymbolInfo] | None:
        return None

    async def signature_help(self, doc: DocumentSnapshot, pos: Position) -> SignatureHelp | Literal[False] | None:
        return None

    async def rename(self, doc: DocumentSnapshot, pos: Position, new_name: str) -> WorkspaceEdit | None:
        return None

    async def call_hierarchy(
        self, doc: DocumentSnapshot, pos: Position, direction: Direction
    ) -> list[CallHierarchyCall] | None:
        return None

    async def find_symbol(self, name_path: str, kind: str | None) -> list[SymbolInfo] | None:
        """Symbols whose dotted name path ends with `name_path` (`Class.method` or `method`)."""
        return None


__all__ = ["Direction", "DocumentSnapshot", "Engine", "EngineUnavailable"]
