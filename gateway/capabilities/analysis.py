"""Code intelligence capabilities: one registration each, every door exposes them."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from ..analysis.engine import Direction, Engine
from ..analysis.models import (
    CallHierarchyCall,
    CompletionItem,
    Diagnostic,
    DocumentSymbol,
    EmptyReason,
    Hover,
    Location,
    SignatureHelp,
    SymbolInfo,
    SymbolKind,
    TextEdit,
    WorkspaceEdit,
)
from ..analysis.service import AnalysisService, Answer
from ..errors import ContentModified, GatewayError, InvalidParams
from ..execution import ExecutionContext
from ..identity import Role
from ..pagination import PageParams, paginate
from ..registry import Registry
from ..workspace import Document, Position, TextChange

T = TypeVar("T")


# -- params -------------------------------------------------------------------------------------------
class DocumentParams(BaseModel):
    path: str = Field(description="Path relative to the workspace root")


class PositionParams(DocumentParams):
    line: int = Field(ge=0, description="0-based line")
    character: int = Field(ge=0, description="0-based character, in code points")

    @property
    def position(self) -> Position:
        return Position(line=self.line, character=self.character)


class PagedPositionParams(PositionParams, PageParams):
    pass


class ReferencesParams(PagedPositionParams):
    include_declaration: bool = True


class RenameParams(PositionParams):
    new_name: str = Field(min_length=1, max_length=500)


class CallHierarchyParams(PagedPositionParams):
    direction: Direction = "incoming"


class PagedDocumentParams(DocumentParams, PageParams):
    pass


class WorkspaceSymbolsParams(PageParams):
    query: str = Field("", max_length=500)
    language_id: str | None = None


class FindSymbolParams(PageParams):
    name_path: str = Field(min_length=1, max_length=500, description="A name or dotted path: `Class.method`")
    kind: SymbolKind | None = None


class ApplyEditParams(BaseModel):
    edit: WorkspaceEdit


# -- results ------------------------------------------------------------------------------------------
class AnswerInfo(BaseModel):
    """Which engine answered, or why the answer is empty."""

    engine: str | None = Field(None, description="The engine that answered")
    reason: EmptyReason | None = Field(None, description="Why the answer is empty, when it is")
    message: str | None = None


class PageAnswer(AnswerInfo, Generic[T]):
    items: list[T] = Field(default_factory=list)
    next_cursor: str | None = None
    total: int | None = None
    truncated: bool = Field(False, description="The engine found more than the cap; refine the query")


class DiagnosticsResult(PageAnswer[Diagnostic]):
    path: str
    version: int | None


class CompletionResult(PageAnswer[CompletionItem]):
    pass


class LocationsResult(PageAnswer[Location]):
    pass


class DocumentSymbolsResult(PageAnswer[DocumentSymbol]):
    pass


class SymbolsResult(PageAnswer[SymbolInfo]):
    pass


class CallHierarchyResult(PageAnswer[CallHierarchyCall]):
    pass


class HoverResult(AnswerInfo):
    hover: Hover | None = None


class SignatureHelpResult(AnswerInfo):
    signature_help: SignatureHelp | None = None


class RenameResult(AnswerInfo):
    edit: WorkspaceEdit | None = None


class ApplyEditResult(BaseModel):
    applied: bool
    files: list[str] = Field(description="Files changed: open documents in the store, others on disk")


# -- helpers --------------------------------------------------------------------------------------------
def _info(answer: Answer[Any], empty: bool) -> dict[str, Any]:
    if not empty:
        return {"engine": answer.engine}
    if answer.value is None:
        return {"engine": None, "reason": answer.reason, "message": answer.message}
    return {"engine": answer.engine, "reason": "no_symbol", "message": "the engine found nothing there"}


def _page(answer: Answer[list[T]], params: PageParams, cap: int, key: str) -> dict[str, Any]:
    items = answer.value or []
    truncated = len(items) > cap
    items = items[:cap]
    page, nxt = paginate(items, params, key)
    return {"items": page, "next_cursor": nxt, "total": len(items), "truncated": truncated, **_info(answer, not items)}


def _key(*parts: object) -> str:
    return "|".join(str(p) for p in parts)


def register(registry: Registry, service: AnalysisService, max_results: int) -> None:
    """Register the code intelligence capabilities, answered by `service`."""
    cap = max_results

    @registry.register("diagnostics", PagedDocumentParams, DiagnosticsResult, lsp_method="textDocument/diagnostic")
    async def diagnostics(ctx: ExecutionContext, params: PagedDocumentParams) -> DiagnosticsResult:
        """Problems in a document: syntax errors, undefined names, unused imports, the servers' diagnostics.

        Computed on the document's current text, unsaved edits included.
        """
        doc = ctx.workspace.snapshot(params.path)
        answer = await service.ask(doc, lambda e: e.diagnostics(doc))
        page = _page(answer, params, cap, _key("diagnostics", doc.path, doc.version))
        if answer.value == []:
            page.update(reason=None, message="no problems found")
        return DiagnosticsResult(path=doc.path, version=doc.version, **page)

    @registry.register("complete", PagedPositionParams, CompletionResult, lsp_method="textDocument/completion")
    async def complete(ctx: ExecutionContext, params: PagedPositionParams) -> CompletionResult:
        """Completions at a position."""
        doc = ctx.workspace.snapshot(params.path)
        answer = await service.ask(doc, lambda e: e.complete(doc, params.position))
        key = _key("complete", doc.path, doc.version, params.line, params.character)
        return CompletionResult(**_page(answer, params, cap, key))

    @registry.register("hover", PositionParams, HoverResult, lsp_method="textDocument/hover")
    async def hover(ctx: ExecutionContext, params: PositionParams) -> HoverResult:
        """Documentation and type of the symbol at a position (Markdown)."""
        doc = ctx.workspace.snapshot(params.path)
        answer: Answer[Hover | Literal[False]] = await service.ask(doc, lambda e: e.hover(doc, params.position))
        value = answer.value if answer.value else None
        return HoverResult(hover=value, **_info(answer, value is None))

    def locations(name: str, method: str, summary: str, op: str) -> None:
        async def handler(ctx: ExecutionContext, params: PagedPositionParams) -> LocationsResult:
            doc = ctx.workspace.snapshot(params.path)
            include_declaration = params.include_declaration if isinstance(params, ReferencesParams) else True

            async def call(engine: Engine) -> list[Location] | None:
                if op == "definition":
                    return await engine.definition(doc, params.position)
                if op == "references":
                    return await engine.references(doc, params.position, include_declaration)
                return await engine.implementations(doc, params.position)

            answer = await service.ask(doc, call)
            key = _key(op, doc.path, doc.version, params.line, params.character, include_declaration)
            return LocationsResult(**_page(answer, params, cap, key))

        handler.__doc__ = summary
        model: type[PagedPositionParams] = ReferencesParams if op == "references" else PagedPositionParams
        registry.register(name, model, LocationsResult, lsp_method=method)(handler)

    locations("definition", "textDocument/definition", "Where the symbol at a position is defined.", "definition")
    locations(
        "references",
        "textDocument/references",
        "Every reference to the symbol at a position, across the workspace, in pages.",
        "references",
    )
    locations(
        "implementations",
        "textDocument/implementation",
        "Implementations of the interface or abstract member at a position.",
        "implementations",
    )

    @registry.register(
        "document_symbols", PagedDocumentParams, DocumentSymbolsResult, lsp_method="textDocument/documentSymbol"
    )
    async def document_symbols(ctx: ExecutionContext, params: PagedDocumentParams) -> DocumentSymbolsResult:
        """The outline of a document: its symbols, nested (pages count top-level symbols)."""
        doc = ctx.workspace.snapshot(params.path)
        answer = await service.ask(doc, lambda e: e.document_symbols(doc))
        return DocumentSymbolsResult(**_page(answer, params, cap, _key("symbols", doc.path, doc.version)))

    @registry.register("workspace_symbols", WorkspaceSymbolsParams, SymbolsResult, lsp_method="workspace/symbol")
    async def workspace_symbols(ctx: ExecutionContext, params: WorkspaceSymbolsParams) -> SymbolsResult:
        """Symbols across the workspace whose names match a query, best matches first."""
        answer = await service.ask_all(lambda e: e.workspace_symbols(params.query, params.language_id))
        answer.value = _dedupe(answer.value)
        key = _key("wsymbols", params.query, params.language_id)
        return SymbolsResult(**_page(answer, params, cap, key))

    @registry.register("find_symbol", FindSymbolParams, SymbolsResult)
    async def find_symbol(ctx: ExecutionContext, params: FindSymbolParams) -> SymbolsResult:
        """Look a symbol up by name or dotted name path (`Class.method`), without a position.

        Returns each match's location, kind and container: the way agents ask.
        """
        answer = await service.ask_all(lambda e: e.find_symbol(params.name_path, params.kind))
        answer.value = _dedupe(answer.value)
        return SymbolsResult(**_page(answer, params, cap, _key("find", params.name_path, params.kind)))

    @registry.register("signature_help", PositionParams, SignatureHelpResult, lsp_method="textDocument/signatureHelp")
    async def signature_help(ctx: ExecutionContext, params: PositionParams) -> SignatureHelpResult:
        """The signature of the call around a position and the parameter being typed."""
        doc = ctx.workspace.snapshot(params.path)
        answer: Answer[SignatureHelp | Literal[False]] = await service.ask(
            doc, lambda e: e.signature_help(doc, params.position)
        )
        value = answer.value if answer.value else None
        return SignatureHelpResult(signature_help=value, **_info(answer, value is None))

    @registry.register("rename", RenameParams, RenameResult, lsp_method="textDocument/rename")
    async def rename(ctx: ExecutionContext, params: RenameParams) -> RenameResult:
        """Compute the workspace edit that renames the symbol at a position; `apply_edit` applies it.

        The edit pins the document versions it was computed against.
        """
        doc = ctx.workspace.snapshot(params.path)
        answer = await service.ask(doc, lambda e: e.rename(doc, params.position, params.new_name))
        if answer.value is not None:
            pin_disk_files(ctx, answer.value)
        empty = answer.value is None or not answer.value.changes
        return RenameResult(edit=answer.value, **_info(answer, empty))

    @registry.register(
        "call_hierarchy", CallHierarchyParams, CallHierarchyResult, lsp_method="textDocument/prepareCallHierarchy"
    )
    async def call_hierarchy(ctx: ExecutionContext, params: CallHierarchyParams) -> CallHierarchyResult:
        """Callers (incoming) or callees (outgoing) of the function at a position."""
        doc = ctx.workspace.snapshot(params.path)
        answer = await service.ask(doc, lambda e: e.call_hierarchy(doc, params.position, params.direction))
        key = _key("calls", doc.path, doc.version, params.line, params.character, params.direction)
        return CallHierarchyResult(**_page(answer, params, cap, key))

    @registry.register(
        "apply_edit",
        ApplyEditParams,
        ApplyEditResult,
        required_role=Role.MEMBER,
        read_only=False,
        idempotent=False,
        lsp_method="workspace/applyEdit",
    )
    async def apply_edit(ctx: ExecutionContext, params: ApplyEditParams) -> ApplyEditResult:
        """Apply a workspace edit: open documents change in the store, other files on disk.

        All or nothing: when any file's version differs from the one the edit pins, nothing is applied.
        """
        return ApplyEditResult(applied=True, files=apply_workspace_edit(ctx, params.edit))


def _dedupe(items: list[SymbolInfo] | None) -> list[SymbolInfo] | None:
    if items is None:
        return None
    seen: set[tuple[str, str, int]] = set()
    unique = []
    for item in items:
        key = (item.name, item.location.path, item.location.range.start.line)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def _ordered_changes(edits: Sequence[TextEdit]) -> list[TextChange]:
    """Edits as changes applied last-first, so earlier ranges stay valid; overlaps are refused."""

    def key(edit: TextEdit) -> tuple[int, int, int, int]:
        r = edit.range
        return (r.start.line, r.start.character, r.end.line, r.end.character)

    ordered = sorted(edits, key=key)
    for before, after in itertools.pairwise(ordered):
        end, start = before.range.end, after.range.start
        if (end.line, end.character) > (start.line, start.character):
            raise InvalidParams("the edit has overlapping ranges")
    return [TextChange(range=e.range, text=e.new_text) for e in reversed(ordered)]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def pin_disk_files(ctx: ExecutionContext, edit: WorkspaceEdit) -> None:
    """Record the hash of each file the edit changes on disk, so a stale edit is refused later."""
    for path in edit.changes:
        rel = ctx.workspace.relative(path)
        if rel in ctx.workspace.documents or path in edit.hashes:
            continue
        with contextlib.suppress(GatewayError):
            edit.hashes[path] = text_hash(ctx.workspace.read_disk_text(rel))


def apply_workspace_edit(ctx: ExecutionContext, edit: WorkspaceEdit) -> list[str]:
    """Check every file's version first, then apply; returns the root-relative paths changed."""
    workspace = ctx.workspace
    plan: list[tuple[str, Document | None, Path, list[TextChange]]] = []
    for path, edits in edit.changes.items():
        rel, target = workspace.locate(path)
        doc = workspace.documents.get(rel)
        expected = edit.versions.get(path, edit.versions.get(rel))
        current = doc.version if doc is not None else None
        if (path in edit.versions or rel in edit.versions) and expected != current:
            raise ContentModified(
                f"{rel} is at version {current}, the edit expects {expected}",
                data={"path": rel, "current_version": current, "expected_version": expected},
            )
        if doc is None and not target.is_file():
            raise InvalidParams(f"{rel} does not exist", data={"path": rel})
        pinned = edit.hashes.get(path, edit.hashes.get(rel))
        if doc is None and pinned is not None and text_hash(workspace.read_disk_text(rel)) != pinned:
            raise ContentModified(f"{rel} changed on disk since the edit was computed", data={"path": rel})
        plan.append((rel, doc, target, _ordered_changes(edits)))
    for rel, doc, target, changes in plan:
        if doc is not None:
            workspace.change(rel, changes)
        else:
            _write_edited(target, workspace.read_disk_text(rel), changes)
    return [rel for rel, *_ in plan]


def _write_edited(target: Path, text: str, changes: list[TextChange]) -> None:
    """Apply `changes` to `text` and replace `target` atomically; line endings stay as they were."""
    scratch = Document("scratch", text, 0, "plaintext")
    scratch.apply(changes)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(scratch.text)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
