"""Open, change, close and read documents: the shared document store every door edits."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..events import Event
from ..execution import ExecutionContext
from ..identity import Role
from ..registry import Registry
from ..workspace import Document, TextChange

DOCUMENT_TOPIC = "documents"


class DocumentInfo(BaseModel):
    """Where a document stands after an operation."""

    path: str
    version: int
    language_id: str
    line_count: int
    length: int = Field(description="Length of the text in code points")


class OpenDocumentParams(BaseModel):
    path: str = Field(description="Path relative to the workspace root")
    text: str | None = Field(None, description="Initial text; read from disk when absent")
    version: int = Field(0, ge=0)
    language_id: str | None = Field(None, description="Guessed from the file name when absent")


class ChangeDocumentParams(BaseModel):
    path: str
    version: int | None = Field(None, ge=0, description="The new version; must grow. Absent: current + 1")
    changes: list[TextChange] = Field(min_length=1)


class PathParams(BaseModel):
    path: str


class DocumentText(BaseModel):
    path: str
    version: int
    language_id: str
    text: str


def _info(doc: Document) -> DocumentInfo:
    return DocumentInfo(
        path=doc.path,
        version=doc.version,
        language_id=doc.language_id,
        line_count=doc.line_count,
        length=len(doc.text),
    )


async def _announce(ctx: ExecutionContext, kind: str, doc: Document) -> None:
    await ctx.core.bus.publish(
        Event(
            topic=DOCUMENT_TOPIC,
            type=f"document.{kind}",
            data={
                "path": doc.path,
                "version": doc.version,
                "by": ctx.identity.subject,
                "door": ctx.call.door,
                "session": ctx.call.meta.get("session"),
            },
        )
    )


def register(registry: Registry) -> None:
    """Register the document capabilities on `registry`."""

    @registry.register(
        "open_document",
        OpenDocumentParams,
        DocumentInfo,
        required_role=Role.VIEWER,
        read_only=False,
        lsp_method="textDocument/didOpen",
    )
    async def open_document(ctx: ExecutionContext, params: OpenDocumentParams) -> DocumentInfo:
        """Open a document so that edits live in the gateway's store until saved.

        Every door sees the open document's text, unsaved edits included.
        """
        doc = ctx.workspace.open(params.path, params.text, params.version, params.language_id)
        await _announce(ctx, "opened", doc)
        return _info(doc)

    @registry.register(
        "change_document",
        ChangeDocumentParams,
        DocumentInfo,
        required_role=Role.MEMBER,
        read_only=False,
        idempotent=False,
        lsp_method="textDocument/didChange",
    )
    async def change_document(ctx: ExecutionContext, params: ChangeDocumentParams) -> DocumentInfo:
        """Apply full or incremental edits to an open document.

        Ranges count code points; changes apply in order, each to the result of the one before.
        """
        doc = ctx.workspace.change(params.path, params.changes, params.version)
        await _announce(ctx, "changed", doc)
        return _info(doc)

    @registry.register(
        "close_document",
        PathParams,
        DocumentInfo,
        read_only=False,
        lsp_method="textDocument/didClose",
    )
    async def close_document(ctx: ExecutionContext, params: PathParams) -> DocumentInfo:
        """Close an open document; unsaved edits are dropped."""
        doc = ctx.workspace.close(params.path)
        await _announce(ctx, "closed", doc)
        return _info(doc)

    @registry.register("read_document", PathParams, DocumentText)
    async def read_document(ctx: ExecutionContext, params: PathParams) -> DocumentText:
        """Read an open document's current text and version, unsaved edits included."""
        doc = ctx.workspace.get(params.path)
        return DocumentText(path=doc.path, version=doc.version, language_id=doc.language_id, text=doc.text)
