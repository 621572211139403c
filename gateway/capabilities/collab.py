"""Collaborative editing capabilities: merge a CRDT update, read a document's CRDT state, save to disk.

Every CRDT edit goes through `collab_update`, so the core checks roles the same way for every door: a
viewer's update is refused whether it came from a y-websocket client, an LSP editor or the JSON hub.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from ..errors import GatewayError, InvalidParams
from ..execution import ExecutionContext
from ..identity import Role
from ..registry import Door, Registry
from .workspace_write import _os_failure, _sha256, _write_atomically

if TYPE_CHECKING:
    from ..collab import CollabService

CollabGetter = Callable[[], Awaitable["CollabService"]]
CRDT_DOORS = frozenset({Door.HUB, Door.LSP, Door.REST, Door.INTERNAL})


class CollabUpdateParams(BaseModel):
    path: str = Field(min_length=1, max_length=4096, description="Path relative to the workspace root")
    update: str = Field(description="A Yjs v1 update, base64")


class CollabUpdateResult(BaseModel):
    path: str
    version: int = Field(description="The document's version in the store after the merge")
    length: int = Field(description="Length of the merged text in code points")


class CollabStateParams(BaseModel):
    path: str = Field(min_length=1, max_length=4096)
    state_vector: str | None = Field(None, description="The caller's Yjs state vector, base64; absent: everything")


class CollabStateResult(BaseModel):
    path: str
    update: str = Field(description="What the caller is missing, as one Yjs v1 update, base64")
    state_vector: str = Field(description="The gateway's state vector, base64")
    text: str


class SaveParams(BaseModel):
    path: str = Field(min_length=1, max_length=4096, description="Path relative to the workspace root")


class SaveResult(BaseModel):
    path: str
    bytes: int
    sha256: str


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParams(f"{what} is not valid base64") from None


def register(registry: Registry, collab: CollabGetter) -> None:
    """Register `collab_update`, `collab_state` and `save_document`."""

    @registry.register(
        "collab_update",
        CollabUpdateParams,
        CollabUpdateResult,
        doors=CRDT_DOORS,
        required_role=Role.MEMBER,
        read_only=False,
        idempotent=True,
    )
    async def collab_update(ctx: ExecutionContext, params: CollabUpdateParams) -> CollabUpdateResult:
        """Merge a Yjs update into a shared document; every copy of it converges on the merged text."""
        service = await collab()
        update = _b64(params.update, "update")
        doc = await service.shared(params.path)
        try:
            service.apply_update(doc.path, update, ctx.call.meta.get("collab_peer"), by=ctx.identity.subject)
        except GatewayError:
            raise
        except Exception as exc:  # pycrdt raises plain exceptions for malformed updates
            raise InvalidParams(f"not a Yjs update: {exc}") from None
        stored = ctx.workspace.documents.get(doc.path)
        return CollabUpdateResult(path=doc.path, version=stored.version if stored else 0, length=len(doc.text))

    @registry.register("collab_state", CollabStateParams, CollabStateResult, doors=CRDT_DOORS)
    async def collab_state(ctx: ExecutionContext, params: CollabStateParams) -> CollabStateResult:
        """A shared document's CRDT state: what a caller with the given state vector is missing."""
        service = await collab()
        doc = await service.shared(params.path)
        vector = _b64(params.state_vector, "state_vector") if params.state_vector else b"\x00"
        try:
            missing = doc.missing(vector)
        except Exception as exc:
            raise InvalidParams(f"not a Yjs state vector: {exc}") from None
        return CollabStateResult(
            path=doc.path,
            update=base64.b64encode(missing).decode(),
            state_vector=base64.b64encode(doc.state_vector()).decode(),
            text=doc.text,
        )

    @registry.register(
        "save_document",
        SaveParams,
        SaveResult,
        required_role=Role.MEMBER,
        read_only=False,
        idempotent=True,
    )
    async def save_document(ctx: ExecutionContext, params: SaveParams) -> SaveResult:
        """Write a document's current text (unsaved and collaborative edits included) to its file."""
        rel, target = ctx.workspace.locate(params.path)
        try:
            text, _version = ctx.workspace.text_of(rel)
            data = text.encode("utf-8")
            await asyncio.to_thread(_write_atomically, ctx.workspace, rel, target, data, True)
        except OSError as exc:
            raise _os_failure(rel, exc) from None
        return SaveResult(path=rel, bytes=len(data), sha256=_sha256(data))
