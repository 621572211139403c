"""lsprotocol types <-> the core's analysis models. Pure functions: no I/O.

Positions: the core counts code points; an LSP peer counts units of the negotiated position encoding
(UTF-16 unless agreed otherwise). Converting a character offset needs the text of its line, which the
caller supplies as `line_text(path, line)`; when that returns None (text unknown) the offset is kept
as it is, which is exact for ASCII lines. URIs map to root-relative paths through `path_of_uri`
(None: outside the workspace) and back through `uri_of_path`; `uri_to_path`/`path_to_uri` are the
lexical defaults.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, get_args
from urllib.parse import unquote, urlparse

from lsprotocol import types as lsp

from gateway.analysis import models
from gateway.workspace import Position, Range, TextChange

from .positions import Encoding, from_code_points, to_code_points

LineText = Callable[[str, int], "str | None"]
"""`(path, line) -> text of that line without its break`, or None when the text is unknown."""

SYMBOL_KINDS: tuple[models.SymbolKind, ...] = get_args(models.SymbolKind)  # LSP value = index + 1
COMPLETION_KINDS: tuple[models.CompletionKind, ...] = get_args(models.CompletionKind)  # LSP value = index + 1
SEVERITIES: tuple[models.Severity, ...] = get_args(models.Severity)  # LSP value = index + 1

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

ContentChange = lsp.TextDocumentContentChangePartial | lsp.TextDocumentContentChangeWholeDocument


class UnsupportedEdit(ValueError):
    """A workspace edit the core cannot express (file create/rename/delete, or a file outside the root)."""


# -- text and paths ---------------------------------------------------------------------------------


def split_lines(text: str) -> list[str]:
    """The lines of `text` without their breaks; `\\r\\n`, `\\r` and `\\n` all end a line, as in LSP."""
    return _LINE_BREAK.split(text)


def line_starts(text: str) -> list[int]:
    """The string index where each line of `text` starts."""
    return [0, *(m.end() for m in _LINE_BREAK.finditer(text))]


@functools.lru_cache(maxsize=4096)
def path_to_uri(root: str | PurePosixPath, path: str) -> str:
    """The `file://` URI of the root-relative `path` (percent-encoded as `pathlib` does). Cached, like
    `uri_to_path`: every location of every answer goes out through it."""
    base = PurePosixPath(root)
    return (base if path in ("", ".") else base / path).as_uri()


@functools.lru_cache(maxsize=4096)
def uri_to_path(root: str | PurePosixPath, uri: str) -> str | None:
    """The root-relative POSIX path of a `file://` URI, or None for other schemes and paths outside `root`.

    Cached: a pure function of its arguments, asked about the same few URIs in every answer of a language
    server (parsing and relativising one costs more than the rest of converting a location)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    absolute = PurePosixPath(unquote(parsed.path))
    try:
        rel = absolute.relative_to(PurePosixPath(root))
    except ValueError:
        return None
    if ".." in rel.parts:
        return None
    return rel.as_posix()


# -- kinds --------------------------------------------------------------------------------------------


def symbol_kind_from_lsp(kind: int) -> models.SymbolKind:
    """The core's name for an LSP `SymbolKind` (unknown values read as `variable`)."""
    index = int(kind) - 1
    return SYMBOL_KINDS[index] if 0 <= index < len(SYMBOL_KINDS) else "variable"


def symbol_kind_to_lsp(kind: models.SymbolKind) -> lsp.SymbolKind:
    """The LSP `SymbolKind` of a core symbol kind."""
    return lsp.SymbolKind(SYMBOL_KINDS.index(kind) + 1)


def completion_kind_from_lsp(kind: int | None) -> models.CompletionKind | None:
    """The core's name for an LSP `CompletionItemKind` (None when absent or unknown)."""
    if kind is None:
        return None
    index = int(kind) - 1
    return COMPLETION_KINDS[index] if 0 <= index < len(COMPLETION_KINDS) else None


def completion_kind_to_lsp(kind: models.CompletionKind | None) -> lsp.CompletionItemKind | None:
    """The LSP `CompletionItemKind` of a core completion kind."""
    return None if kind is None else lsp.CompletionItemKind(COMPLETION_KINDS.index(kind) + 1)


def severity_from_lsp(severity: int | None) -> models.Severity:
    """The core's severity; an absent severity reads as `error`, as editors show it."""
    if severity is None:
        return "error"
    index = int(severity) - 1
    return SEVERITIES[index] if 0 <= index < len(SEVERITIES) else "error"


def severity_to_lsp(severity: models.Severity) -> lsp.DiagnosticSeverity:
    """The LSP `DiagnosticSeverity` of a core severity."""
    return lsp.DiagnosticSeverity(SEVERITIES.index(severity) + 1)


# -- markup -----------------------------------------------------------------------------------------


def _fence(text: str, language: str) -> str:
    longest = max((len(m.group(0)) for m in re.finditer(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def markup_to_markdown(contents: lsp.MarkupContent | lsp.MarkedStringWithLanguage | str | Sequence[Any]) -> str:
    """Hover contents as Markdown: markdown kept, plaintext and language-tagged strings fenced."""
    if isinstance(contents, lsp.MarkupContent):
        if contents.kind == lsp.MarkupKind.PlainText:
            return _fence(contents.value, "text") if contents.value else ""
        return contents.value
    if isinstance(contents, lsp.MarkedStringWithLanguage):
        return _fence(contents.value, contents.language)
    if isinstance(contents, str):
        return contents  # a bare MarkedString is Markdown
    parts = [markup_to_markdown(part) for part in contents]
    return "\n\n".join(part for part in parts if part)


def documentation_text(doc: str | lsp.MarkupContent | None) -> str | None:
    """The text of a documentation field (plain string or markup value); None when empty."""
    if doc is None:
        return None
    value = doc.value if isinstance(doc, lsp.MarkupContent) else doc
    return value or None


def snippet_to_text(snippet: str) -> str:
    """The plain text a snippet inserts with every placeholder at its default: `${1:x}` -> `x`,
    `${1|a,b|}` -> `a`; tabstops and variables insert nothing; escapes are unescaped."""
    out: list[str] = []
    _parse_snippet(snippet, 0, out, nested=False)
    return "".join(out)


_SNIPPET_OPEN = re.compile(r"\$\{(\d+|[A-Za-z_]\w*)")
_SNIPPET_SIMPLE = re.compile(r"\$(\d+|[A-Za-z_]\w*)")


def _parse_snippet(s: str, i: int, out: list[str], *, nested: bool) -> int:
    """Append the text of `s` from `i` to `out`; inside a placeholder, stop after its closing brace."""
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] in "$}\\,|":
            out.append(s[i + 1])
            i += 2
        elif c == "}" and nested:
            return i + 1
        elif c == "$" and (opened := _SNIPPET_OPEN.match(s, i)):
            j = opened.end()
            follow = s[j] if j < len(s) else ""
            if follow == ":":
                i = _parse_snippet(s, j + 1, out, nested=True)
            elif follow == "|":
                choice = re.match(r"\|((?:\\.|[^|\\])*)\|\}", s[j:])
                if choice:
                    first = re.split(r"(?<!\\),", choice.group(1))[0]
                    out.append(re.sub(r"\\(.)", r"\1", first))
                    i = j + choice.end()
                else:
                    i = j
            elif follow == "}":
                i = j + 1
            else:  # a transform or something malformed: skip to its closing brace
                close = s.find("}", j)
                i = len(s) if close < 0 else close + 1
        elif c == "$" and (simple := _SNIPPET_SIMPLE.match(s, i)):
            i = simple.end()
        else:
            out.append(c)
            i += 1
    return i


# -- text changes -----------------------------------------------------------------------------------


def _offset_at(text: str, starts: list[int], pos: Position) -> int:
    """The string index of `pos`, clamped exactly as `gateway.workspace.Document.offset_at` does."""
    if pos.line >= len(starts):
        return len(text)
    line_end = starts[pos.line + 1] if pos.line + 1 < len(starts) else len(text)
    line = text[starts[pos.line] : line_end].rstrip("\r\n")
    return starts[pos.line] + min(pos.character, len(line))


def _lsp_position_at(text: str, starts: list[int], offset: int, encoding: Encoding) -> lsp.Position:
    line = bisect.bisect_right(starts, offset) - 1
    line_end = starts[line + 1] if line + 1 < len(starts) else len(text)
    line_text = text[starts[line] : line_end].rstrip("\r\n")
    return lsp.Position(line=line, character=from_code_points(line_text, offset - starts[line], encoding))


def changes_to_lsp(
    previous_text: str, changes: Iterable[TextChange], encoding: Encoding
) -> tuple[list[ContentChange], str]:
    """Incremental LSP content changes for core `changes` applied in order to `previous_text`.

    Each change's code-point range is read against the text as it was before that change (as the
    workspace applies them) and converted to `encoding`. Returns the events and the resulting text."""
    text = previous_text
    events: list[ContentChange] = []
    for change in changes:
        if change.range is None:
            text = change.text
            events.append(lsp.TextDocumentContentChangeWholeDocument(text=text))
            continue
        starts = line_starts(text)
        start = _offset_at(text, starts, change.range.start)
        end = max(start, _offset_at(text, starts, change.range.end))
        events.append(
            lsp.TextDocumentContentChangePartial(
                range=lsp.Range(
                    start=_lsp_position_at(text, starts, start, encoding),
                    end=_lsp_position_at(text, starts, end, encoding),
                ),
                text=change.text,
            )
        )
        text = text[:start] + change.text + text[end:]
    return events, text


def edits_to_changes(edits: Sequence[models.TextEdit]) -> list[TextChange]:
    """Core text changes, to apply in order, equivalent to simultaneous edits (LSP semantics: every range
    refers to the original text; inserts at one place keep their order)."""
    ordered = sorted(
        enumerate(edits),
        key=lambda item: (item[1].range.start.line, item[1].range.start.character, item[0]),
        reverse=True,
    )
    return [TextChange(range=edit.range, text=edit.new_text) for _, edit in ordered]


# -- the converter ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LspConverter:
    """Converts between lsprotocol values and core models for one peer (its encoding) and one root."""

    encoding: Encoding
    line_text: LineText
    path_of_uri: Callable[[str], str | None]
    uri_of_path: Callable[[str], str]

    @classmethod
    def for_root(cls, root: str | PurePosixPath, encoding: Encoding, line_text: LineText) -> LspConverter:
        """A converter whose URIs map lexically under `root` (an absolute, already resolved path)."""
        base = PurePosixPath(root)
        return cls(
            encoding=encoding,
            line_text=line_text,
            path_of_uri=lambda uri: uri_to_path(base, uri),
            uri_of_path=lambda path: path_to_uri(base, path),
        )

    # -- positions ------------------------------------------------------------------------------------
    def position_from_lsp(self, path: str, pos: lsp.Position) -> Position:
        """An LSP position in `path` as code points."""
        if self.encoding == "utf-32":
            return Position(line=pos.line, character=pos.character)
        line = self.line_text(path, pos.line)
        character = pos.character if line is None else to_code_points(line, pos.character, self.encoding)
        return Position(line=pos.line, character=character)

    def position_to_lsp(self, path: str, pos: Position) -> lsp.Position:
        """A code-point position in `path` in the peer's encoding."""
        if self.encoding == "utf-32":
            return lsp.Position(line=pos.line, character=pos.character)
        line = self.line_text(path, pos.line)
        character = pos.character if line is None else from_code_points(line, pos.character, self.encoding)
        return lsp.Position(line=pos.line, character=character)

    def range_from_lsp(self, path: str, rng: lsp.Range) -> Range:
        """An LSP range in `path` as code points."""
        return Range(start=self.position_from_lsp(path, rng.start), end=self.position_from_lsp(path, rng.end))

    def range_to_lsp(self, path: str, rng: Range) -> lsp.Range:
        """A code-point range in `path` in the peer's encoding."""
        return lsp.Range(start=self.position_to_lsp(path, rng.start), end=self.position_to_lsp(path, rng.end))

    # -- locations ------------------------------------------------------------------------------------
    def location_from_lsp(self, loc: lsp.Location | lsp.LocationLink) -> models.Location | None:
        """A location (a link's target selection range); None when it lies outside the workspace."""
        uri, rng = (
            (loc.uri, loc.range) if isinstance(loc, lsp.Location) else (loc.target_uri, loc.target_selection_range)
        )
        path = self.path_of_uri(uri)
        if path is None:
            return None
        return models.Location(path=path, range=self.range_from_lsp(path, rng))

    def locations_from_lsp(self, result: Any) -> list[models.Location]:
        """A definition/references/implementation result (None, one location, or a list) as core locations
        inside the workspace, in the server's order without duplicates."""
        if result is None:
            return []
        items = [result] if isinstance(result, (lsp.Location, lsp.LocationLink)) else list(result)
        return models.unique_locations(self.location_from_lsp(item) for item in items)

    def location_to_lsp(self, loc: models.Location) -> lsp.Location:
        """A core location as an LSP location."""
        return lsp.Location(uri=self.uri_of_path(loc.path), range=self.range_to_lsp(loc.path, loc.range))

    # -- diagnostics ----------------------------------------------------------------------------------
    def diagnostic_from_lsp(self, path: str, diag: lsp.Diagnostic, default_source: str) -> models.Diagnostic:
        """An LSP diagnostic in `path`; `default_source` names the server when the diagnostic does not."""
        return models.Diagnostic(
            range=self.range_from_lsp(path, diag.range),
            severity=severity_from_lsp(diag.severity),
            message=diag.message,
            source=diag.source or default_source,
            code=None if diag.code is None else str(diag.code),
        )

    def diagnostic_to_lsp(self, path: str, diag: models.Diagnostic) -> lsp.Diagnostic:
        """A core diagnostic in `path` as an LSP diagnostic."""
        return lsp.Diagnostic(
            range=self.range_to_lsp(path, diag.range),
            message=diag.message,
            severity=severity_to_lsp(diag.severity),
            source=diag.source,
            code=diag.code,
        )

    # -- completion -----------------------------------------------------------------------------------
    def completion_items_from_lsp(self, path: str, result: Any) -> list[models.CompletionItem]:
        """A completion result (None, a list of items, or a `CompletionList` with item defaults)."""
        if result is None:
            return []
        defaults: lsp.CompletionItemDefaults | None = None
        items: Sequence[lsp.CompletionItem]
        if isinstance(result, lsp.CompletionList):
            items, defaults = result.items, result.item_defaults
        else:
            items = result
        return [self.completion_item_from_lsp(path, item, defaults) for item in items]

    def completion_item_from_lsp(
        self, path: str, item: lsp.CompletionItem, defaults: lsp.CompletionItemDefaults | None = None
    ) -> models.CompletionItem:
        """One completion item; snippets become the plain text they insert, an insert/replace edit its
        insert range, and a list's default edit range applies to items without their own edit."""
        text_format = item.insert_text_format or (defaults.insert_text_format if defaults else None)

        def plain(text: str) -> str:
            return snippet_to_text(text) if text_format == lsp.InsertTextFormat.Snippet else text

        edit: models.TextEdit | None = None
        if item.text_edit is not None:
            rng = item.text_edit.range if isinstance(item.text_edit, lsp.TextEdit) else item.text_edit.insert
            edit = models.TextEdit(range=self.range_from_lsp(path, rng), new_text=plain(item.text_edit.new_text))
        elif defaults is not None and defaults.edit_range is not None:
            default_range = defaults.edit_range
            rng = default_range if isinstance(default_range, lsp.Range) else default_range.insert
            new_text = item.text_edit_text or item.insert_text or item.label
            edit = models.TextEdit(range=self.range_from_lsp(path, rng), new_text=plain(new_text))
        return models.CompletionItem(
            label=item.label,
            kind=completion_kind_from_lsp(item.kind),
            detail=item.detail or (item.label_details.detail if item.label_details else None) or None,
            documentation=documentation_text(item.documentation),
            insert_text=None if item.insert_text is None else plain(item.insert_text),
            sort_text=item.sort_text,
            edit=edit,
        )

    def completion_item_to_lsp(self, path: str, item: models.CompletionItem) -> lsp.CompletionItem:
        """A core completion item as a plain-text LSP item."""
        return lsp.CompletionItem(
            label=item.label,
            kind=completion_kind_to_lsp(item.kind),
            detail=item.detail,
            documentation=(
                None
                if item.documentation is None
                else lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=item.documentation)
            ),
            insert_text=item.insert_text,
            insert_text_format=lsp.InsertTextFormat.PlainText,
            sort_text=item.sort_text,
            text_edit=(
                None
                if item.edit is None
                else lsp.TextEdit(range=self.range_to_lsp(path, item.edit.range), new_text=item.edit.new_text)
            ),
        )

    # -- hover and signature help ------------------------------------------------------------------
    def hover_from_lsp(self, path: str, hover: lsp.Hover) -> models.Hover:
        """A hover as Markdown plus its range."""
        return models.Hover(
            contents=markup_to_markdown(hover.contents),
            range=None if hover.range is None else self.range_from_lsp(path, hover.range),
        )

    def hover_to_lsp(self, path: str, hover: models.Hover) -> lsp.Hover:
        """A core hover as Markdown `MarkupContent`."""
        return lsp.Hover(
            contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=hover.contents),
            range=None if hover.range is None else self.range_to_lsp(path, hover.range),
        )

    def signature_help_from_lsp(self, help_: lsp.SignatureHelp) -> models.SignatureHelp:
        """Signature help; offset parameter labels become the substring of the signature label they span
        (offsets count units of the negotiated encoding), and the list-wide active parameter applies to
        signatures that name none."""
        signatures: list[models.SignatureInfo] = []
        active_signature = help_.active_signature or 0
        for index, sig in enumerate(help_.signatures):
            parameters = []
            for param in sig.parameters or ():
                if isinstance(param.label, str):
                    label = param.label
                else:
                    start = to_code_points(sig.label, param.label[0], self.encoding)
                    end = to_code_points(sig.label, param.label[1], self.encoding)
                    label = sig.label[start:end]
                parameters.append(
                    models.ParameterInfo(label=label, documentation=documentation_text(param.documentation))
                )
            active = sig.active_parameter
            if active is None and index == active_signature:
                active = help_.active_parameter
            signatures.append(
                models.SignatureInfo(
                    label=sig.label,
                    documentation=documentation_text(sig.documentation),
                    parameters=parameters,
                    active_parameter=active,
                )
            )
        if signatures and not 0 <= active_signature < len(signatures):
            active_signature = 0
        return models.SignatureHelp(signatures=signatures, active_signature=active_signature)

    def signature_help_to_lsp(self, help_: models.SignatureHelp) -> lsp.SignatureHelp:
        """Core signature help as LSP (string parameter labels)."""
        return lsp.SignatureHelp(
            signatures=[
                lsp.SignatureInformation(
                    label=sig.label,
                    documentation=(
                        None
                        if sig.documentation is None
                        else lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=sig.documentation)
                    ),
                    parameters=[
                        lsp.ParameterInformation(
                            label=param.label,
                            documentation=(
                                None
                                if param.documentation is None
                                else lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=param.documentation)
                            ),
                        )
                        for param in sig.parameters
                    ],
                    active_parameter=sig.active_parameter,
                )
                for sig in help_.signatures
            ],
            active_signature=help_.active_signature,
        )

    # -- symbols --------------------------------------------------------------------------------------
    def document_symbols_from_lsp(self, path: str, result: Any) -> list[models.DocumentSymbol]:
        """`DocumentSymbol[]` as the same tree; flat `SymbolInformation[]` nested by range containment."""
        if not result:
            return []
        if all(isinstance(item, lsp.DocumentSymbol) for item in result):
            return [self.document_symbol_from_lsp(path, item) for item in result]
        flat = [
            models.DocumentSymbol(
                name=item.name,
                kind=symbol_kind_from_lsp(item.kind),
                range=self.range_from_lsp(path, item.location.range),
                selection_range=self.range_from_lsp(path, item.location.range),
            )
            for item in result
            if isinstance(item, lsp.SymbolInformation)
        ]
        return nest_by_range(flat)

    def document_symbol_from_lsp(self, path: str, sym: lsp.DocumentSymbol) -> models.DocumentSymbol:
        """One `DocumentSymbol` and its children."""
        return models.DocumentSymbol(
            name=sym.name,
            kind=symbol_kind_from_lsp(sym.kind),
            range=self.range_from_lsp(path, sym.range),
            selection_range=self.range_from_lsp(path, sym.selection_range),
            detail=sym.detail,
            children=[self.document_symbol_from_lsp(path, child) for child in sym.children or ()],
        )

    def document_symbol_to_lsp(self, path: str, sym: models.DocumentSymbol) -> lsp.DocumentSymbol:
        """A core document symbol tree as LSP."""
        return lsp.DocumentSymbol(
            name=sym.name,
            kind=symbol_kind_to_lsp(sym.kind),
            range=self.range_to_lsp(path, sym.range),
            selection_range=self.range_to_lsp(path, sym.selection_range),
            detail=sym.detail,
            children=[self.document_symbol_to_lsp(path, child) for child in sym.children],
        )

    def symbol_info_from_lsp(self, sym: lsp.SymbolInformation | lsp.WorkspaceSymbol) -> models.SymbolInfo | None:
        """A workspace symbol; None outside the workspace. A location without a range reads as the file's
        start. A container that repeats the symbol's own name at its end (jedi-language-server sends the
        full dotted name) is cut back to the enclosing path."""
        path = self.path_of_uri(sym.location.uri)
        if path is None:
            return None
        if isinstance(sym.location, lsp.Location):
            rng = self.range_from_lsp(path, sym.location.range)
        else:
            origin = Position(line=0, character=0)
            rng = Range(start=origin, end=origin)
        container = sym.container_name or None
        if container == sym.name:
            container = None
        elif container is not None and container.endswith("." + sym.name):
            container = container[: -len(sym.name) - 1] or None
        return models.SymbolInfo(
            name=sym.name,
            kind=symbol_kind_from_lsp(sym.kind),
            location=models.Location(path=path, range=rng),
            container=container,
        )

    def symbol_info_to_lsp(self, info: models.SymbolInfo) -> lsp.SymbolInformation:
        """A core symbol as an LSP `SymbolInformation`."""
        return lsp.SymbolInformation(
            name=info.name,
            kind=symbol_kind_to_lsp(info.kind),
            location=self.location_to_lsp(info.location),
            container_name=info.container,
        )

    # -- edits ----------------------------------------------------------------------------------------
    def text_edit_from_lsp(
        self, path: str, edit: lsp.TextEdit | lsp.AnnotatedTextEdit | lsp.SnippetTextEdit
    ) -> models.TextEdit:
        """One text edit in `path` (a snippet edit inserts its plain text)."""
        new_text = snippet_to_text(edit.snippet.value) if isinstance(edit, lsp.SnippetTextEdit) else edit.new_text
        return models.TextEdit(range=self.range_from_lsp(path, edit.range), new_text=new_text)

    def workspace_edit_from_lsp(self, edit: lsp.WorkspaceEdit) -> models.WorkspaceEdit:
        """A workspace edit as per-file text edits; `versions` holds the versions the server named.

        Raises `UnsupportedEdit` for file operations and for files outside the workspace: dropping part of
        an edit (half a rename) would be worse than refusing it."""
        result = models.WorkspaceEdit()

        def target(uri: str) -> str:
            path = self.path_of_uri(uri)
            if path is None:
                raise UnsupportedEdit(f"the edit changes a file outside the workspace: {uri}")
            return path

        if edit.document_changes is not None:
            for change in edit.document_changes:
                if not isinstance(change, lsp.TextDocumentEdit):
                    raise UnsupportedEdit(f"the edit would {change.kind} files, which the gateway cannot express")
                path = target(change.text_document.uri)
                result.changes.setdefault(path, []).extend(self.text_edit_from_lsp(path, e) for e in change.edits)
                if change.text_document.version is not None:
                    result.versions[path] = change.text_document.version
        elif edit.changes:
            for uri, edits in edit.changes.items():
                path = target(uri)
                result.changes.setdefault(path, []).extend(self.text_edit_from_lsp(path, e) for e in edits)
        return result

    def workspace_edit_to_lsp(self, edit: models.WorkspaceEdit) -> lsp.WorkspaceEdit:
        """A core workspace edit as versioned `TextDocumentEdit`s."""
        return lsp.WorkspaceEdit(
            document_changes=[
                lsp.TextDocumentEdit(
                    text_document=lsp.OptionalVersionedTextDocumentIdentifier(
                        uri=self.uri_of_path(path), version=edit.versions.get(path)
                    ),
                    edits=[lsp.TextEdit(range=self.range_to_lsp(path, e.range), new_text=e.new_text) for e in edits],
                )
                for path, edits in edit.changes.items()
            ]
        )

    # -- call hierarchy -------------------------------------------------------------------------------
    def call_hierarchy_item_from_lsp(self, item: lsp.CallHierarchyItem) -> models.CallHierarchyItem | None:
        """A call hierarchy item; None outside the workspace."""
        path = self.path_of_uri(item.uri)
        if path is None:
            return None
        return models.CallHierarchyItem(
            name=item.name,
            kind=symbol_kind_from_lsp(item.kind),
            path=path,
            range=self.range_from_lsp(path, item.range),
            selection_range=self.range_from_lsp(path, item.selection_range),
            detail=item.detail,
        )

    def call_hierarchy_item_to_lsp(self, item: models.CallHierarchyItem) -> lsp.CallHierarchyItem:
        """A core call hierarchy item as LSP."""
        return lsp.CallHierarchyItem(
            name=item.name,
            kind=symbol_kind_to_lsp(item.kind),
            uri=self.uri_of_path(item.path),
            range=self.range_to_lsp(item.path, item.range),
            selection_range=self.range_to_lsp(item.path, item.selection_range),
            detail=item.detail,
        )

    def incoming_calls_from_lsp(
        self, calls: Sequence[lsp.CallHierarchyIncomingCall] | None
    ) -> list[models.CallHierarchyCall]:
        """Callers; each call's ranges lie in the caller's file."""
        out = []
        for call in calls or ():
            item = self.call_hierarchy_item_from_lsp(call.from_)
            if item is not None:
                ranges = [self.range_from_lsp(item.path, r) for r in call.from_ranges]
                out.append(models.CallHierarchyCall(item=item, from_ranges=ranges))
        return out

    def outgoing_calls_from_lsp(
        self, origin_path: str, calls: Sequence[lsp.CallHierarchyOutgoingCall] | None
    ) -> list[models.CallHierarchyCall]:
        """Callees; each call's ranges lie in the file of the item asked about (`origin_path`), not the callee's."""
        out = []
        for call in calls or ():
            item = self.call_hierarchy_item_from_lsp(call.to)
            if item is not None:
                ranges = [self.range_from_lsp(origin_path, r) for r in call.from_ranges]
                out.append(models.CallHierarchyCall(item=item, from_ranges=ranges))
        return out


def _contains(outer: Range, inner: Range) -> bool:
    def key(pos: Position) -> tuple[int, int]:
        return (pos.line, pos.character)

    return key(outer.start) <= key(inner.start) and key(inner.end) <= key(outer.end)


def nest_by_range(symbols: Sequence[models.DocumentSymbol]) -> list[models.DocumentSymbol]:
    """Nest flat symbols into a tree: each becomes a child of the innermost earlier symbol containing it."""
    ordered = sorted(
        symbols,
        key=lambda s: (s.range.start.line, s.range.start.character, -s.range.end.line, -s.range.end.character),
    )
    roots: list[models.DocumentSymbol] = []
    stack: list[models.DocumentSymbol] = []
    for sym in ordered:
        node = sym.model_copy(update={"children": list(sym.children)})
        while stack and not _contains(stack[-1].range, node.range):
            stack.pop()
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)
    return roots


__all__ = [
    "COMPLETION_KINDS",
    "SEVERITIES",
    "SYMBOL_KINDS",
    "ContentChange",
    "LineText",
    "LspConverter",
    "UnsupportedEdit",
    "changes_to_lsp",
    "completion_kind_from_lsp",
    "completion_kind_to_lsp",
    "documentation_text",
    "edits_to_changes",
    "line_starts",
    "markup_to_markdown",
    "nest_by_range",
    "path_to_uri",
    "severity_from_lsp",
    "severity_to_lsp",
    "snippet_to_text",
    "split_lines",
    "symbol_kind_from_lsp",
    "symbol_kind_to_lsp",
    "uri_to_path",
]
