"""Core models of code intelligence. Positions count code points, 0-based lines and characters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, Field

from ..workspace import Position, Range

SymbolKind = Literal[
    "file",
    "module",
    "namespace",
    "package",
    "class",
    "method",
    "property",
    "field",
    "constructor",
    "enum",
    "interface",
    "function",
    "variable",
    "constant",
    "string",
    "number",
    "boolean",
    "array",
    "object",
    "key",
    "null",
    "enum_member",
    "struct",
    "event",
    "operator",
    "type_parameter",
]

CompletionKind = Literal[
    "text",
    "method",
    "function",
    "constructor",
    "field",
    "variable",
    "class",
    "interface",
    "module",
    "property",
    "unit",
    "value",
    "enum",
    "keyword",
    "snippet",
    "color",
    "file",
    "reference",
    "folder",
    "enum_member",
    "constant",
    "struct",
    "event",
    "operator",
    "type_parameter",
]

Severity = Literal["error", "warning", "information", "hint"]

EmptyReason = Literal[
    "no_symbol",  # the engine answered: nothing at that position / for that name
    "language_not_configured",  # no engine handles this language for this operation
    "server_starting",  # a language server is starting or indexing; ask again shortly
    "server_restarting",  # a language server crashed and is being restarted
    "unsupported",  # engines for this language exist but none offers this operation
]


class Location(BaseModel):
    path: str = Field(description="Path relative to the workspace root")
    range: Range


def unique_locations(locations: Iterable[Location | None]) -> list[Location]:
    """`locations` in order, without the Nones and without repeats of the same path and range."""
    seen: set[tuple[str, int, int, int, int]] = set()
    result: list[Location] = []
    for loc in locations:
        if loc is None:
            continue
        r = loc.range
        key = (loc.path, r.start.line, r.start.character, r.end.line, r.end.character)
        if key not in seen:
            seen.add(key)
            result.append(loc)
    return result


class TextEdit(BaseModel):
    range: Range
    new_text: str


class WorkspaceEdit(BaseModel):
    """Edits per file; `versions` pins the document versions the edits were computed against."""

    changes: dict[str, list[TextEdit]] = Field(default_factory=dict)
    versions: dict[str, int | None] = Field(
        default_factory=dict, description="Document version each file's edits expect (null: the file on disk)"
    )
    hashes: dict[str, str] = Field(
        default_factory=dict, description="sha256 of the on-disk text each file's edits expect (files not open)"
    )


class Diagnostic(BaseModel):
    range: Range
    severity: Severity = "error"
    message: str
    source: str
    code: str | None = None


class CompletionItem(BaseModel):
    label: str
    kind: CompletionKind | None = None
    detail: str | None = None
    documentation: str | None = None
    insert_text: str | None = None
    sort_text: str | None = None
    edit: TextEdit | None = Field(None, description="Replace this range with new_text instead of inserting")


class Hover(BaseModel):
    contents: str = Field(description="Markdown")
    range: Range | None = None


class ParameterInfo(BaseModel):
    label: str
    documentation: str | None = None


class SignatureInfo(BaseModel):
    label: str
    documentation: str | None = None
    parameters: list[ParameterInfo] = Field(default_factory=list)
    active_parameter: int | None = None


class SignatureHelp(BaseModel):
    signatures: list[SignatureInfo]
    active_signature: int = 0


class DocumentSymbol(BaseModel):
    name: str
    kind: SymbolKind
    range: Range
    selection_range: Range
    detail: str | None = None
    children: list[DocumentSymbol] = Field(default_factory=list)


class SymbolInfo(BaseModel):
    """A symbol found by name: where it is, what it is, what contains it."""

    name: str
    kind: SymbolKind
    location: Location
    container: str | None = Field(None, description="Dotted path of the enclosing symbols, e.g. `Class`")


class CallHierarchyItem(BaseModel):
    name: str
    kind: SymbolKind
    path: str
    range: Range
    selection_range: Range
    detail: str | None = None


class CallHierarchyCall(BaseModel):
    """One caller (incoming) or callee (outgoing) and where the calls are."""

    item: CallHierarchyItem
    from_ranges: list[Range] = Field(default_factory=list)


__all__ = [
    "CallHierarchyCall",
    "CallHierarchyItem",
    "CompletionItem",
    "CompletionKind",
    "Diagnostic",
    "DocumentSymbol",
    "EmptyReason",
    "Hover",
    "Location",
    "ParameterInfo",
    "Position",
    "Range",
    "Severity",
    "SignatureHelp",
    "SignatureInfo",
    "SymbolInfo",
    "SymbolKind",
    "TextEdit",
    "WorkspaceEdit",
    "unique_locations",
]
