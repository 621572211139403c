"""Table tests for lsprotocol <-> core conversions, position encodings (emoji, CJK) included."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lsprotocol import types as lsp
from pygls.workspace import PositionCodec, TextDocument

from gateway.analysis import models
from gateway.workspace import Document, Position, Range, TextChange
from translators.lsp import (
    LineText,
    LspConverter,
    UnsupportedEdit,
    changes_to_lsp,
    completion_kind_from_lsp,
    completion_kind_to_lsp,
    edits_to_changes,
    markup_to_markdown,
    nest_by_range,
    path_to_uri,
    severity_from_lsp,
    snippet_to_text,
    split_lines,
    symbol_kind_from_lsp,
    symbol_kind_to_lsp,
    uri_to_path,
)
from translators.positions import Encoding

ROOT = "/work space/proj"
FILES = {
    "a.py": "x = '😀😀'; name = 1\n中文 = name\nplain\n",
    "b.py": "def f():\n    return '👩\u200d💻' + g()\n",
}


def lines_of(files: dict[str, str]) -> LineText:
    split = {path: split_lines(text) for path, text in files.items()}

    def line_text(path: str, line: int) -> str | None:
        lines = split.get(path)
        return lines[line] if lines is not None and 0 <= line < len(lines) else None

    return line_text


def conv(encoding: Encoding = "utf-16") -> LspConverter:
    return LspConverter.for_root(ROOT, encoding, lines_of(FILES))


def uri(path: str) -> str:
    return path_to_uri(ROOT, path)


def P(line: int, character: int) -> Position:
    return Position(line=line, character=character)


def R(sl: int, sc: int, el: int, ec: int) -> Range:
    return Range(start=P(sl, sc), end=P(el, ec))


def LR(sl: int, sc: int, el: int, ec: int) -> lsp.Range:
    return lsp.Range(start=lsp.Position(line=sl, character=sc), end=lsp.Position(line=el, character=ec))


# -- positions ------------------------------------------------------------------------------------------

# (path, line, code points, utf-16, utf-8): `name` on line 0 comes after two emoji
POSITIONS = [
    ("a.py", 0, 0, 0, 0),
    ("a.py", 0, 6, 7, 9),  # between the two emoji
    ("a.py", 0, 10, 12, 16),  # the `n` of `name`
    ("a.py", 1, 2, 2, 6),  # after 中文
    ("a.py", 1, 5, 5, 9),
    ("b.py", 1, 15, 17, 23),  # after the ZWJ sequence (three code points, 5 UTF-16 units, 11 bytes)
]


@pytest.mark.parametrize(("path", "line", "cp", "u16", "u8"), POSITIONS)
def test_positions_convert_by_the_negotiated_encoding(path: str, line: int, cp: int, u16: int, u8: int) -> None:
    for encoding, units in (("utf-16", u16), ("utf-8", u8), ("utf-32", cp)):
        c = conv(encoding)  # type: ignore[arg-type]
        assert c.position_to_lsp(path, P(line, cp)) == lsp.Position(line=line, character=units)
        assert c.position_from_lsp(path, lsp.Position(line=line, character=units)) == P(line, cp)


def test_positions_in_unknown_text_are_kept_and_past_the_line_end_clamp() -> None:
    c = conv("utf-16")
    assert c.position_from_lsp("unknown.py", lsp.Position(line=3, character=17)) == P(3, 17)
    assert c.position_from_lsp("a.py", lsp.Position(line=9, character=4)) == P(9, 4)  # no such line
    assert c.position_from_lsp("a.py", lsp.Position(line=2, character=99)) == P(2, 5)
    assert c.position_from_lsp("a.py", lsp.Position(line=0, character=6)) == P(0, 5)  # inside a surrogate pair


@pytest.mark.parametrize(
    ("uri_", "path"),
    [
        ("file:///work%20space/proj/a.py", "a.py"),
        ("file:///work%20space/proj/d/%E4%B8%AD.py", "d/中.py"),
        ("file:///work%20space/proj", "."),
        ("file://localhost/work%20space/proj/a.py", "a.py"),
        ("file:///work%20space/other/a.py", None),
        ("file:///work%20space/proj/../other/a.py", None),
        ("untitled:Untitled-1", None),
        ("https://example.com/work%20space/proj/a.py", None),
    ],
)
def test_uris_map_to_root_relative_paths(uri_: str, path: str | None) -> None:
    assert uri_to_path(ROOT, uri_) == path


def test_paths_map_to_uris_and_back() -> None:
    for path in ("a.py", "d/中 文.py", "x#y?.py"):
        assert uri_to_path(ROOT, path_to_uri(ROOT, path)) == path
    assert path_to_uri(ROOT, ".") == "file:///work%20space/proj"


# -- locations ------------------------------------------------------------------------------------------


def test_locations_links_lists_none_and_outside_root() -> None:
    c = conv()
    loc = lsp.Location(uri=uri("a.py"), range=LR(0, 12, 0, 16))
    link = lsp.LocationLink(
        target_uri=uri("b.py"), target_range=LR(0, 0, 1, 20), target_selection_range=LR(1, 21, 1, 22)
    )
    outside = lsp.Location(uri="file:///usr/lib/python3/os.py", range=LR(0, 0, 0, 1))
    assert c.locations_from_lsp(None) == []
    assert c.locations_from_lsp(loc) == [models.Location(path="a.py", range=R(0, 10, 0, 14))]
    assert c.locations_from_lsp([loc, outside, link, loc]) == [
        models.Location(path="a.py", range=R(0, 10, 0, 14)),
        models.Location(path="b.py", range=R(1, 19, 1, 20)),
    ]
    assert c.location_to_lsp(models.Location(path="a.py", range=R(0, 10, 0, 14))) == loc


# -- diagnostics ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "expected"),
    [(None, "error"), (1, "error"), (2, "warning"), (3, "information"), (4, "hint"), (9, "error")],
)
def test_severities(severity: int | None, expected: str) -> None:
    assert severity_from_lsp(severity) == expected


def test_diagnostics_both_ways() -> None:
    c = conv("utf-8")
    wire = lsp.Diagnostic(range=LR(0, 16, 0, 20), message="unused", code=7)
    core = c.diagnostic_from_lsp("a.py", wire, "srv")
    assert core == models.Diagnostic(range=R(0, 10, 0, 14), severity="error", message="unused", source="srv", code="7")
    back = c.diagnostic_to_lsp("a.py", core)
    assert (back.range, back.severity, back.code, back.source) == (wire.range, lsp.DiagnosticSeverity.Error, "7", "srv")


# -- completion -----------------------------------------------------------------------------------------


def test_completion_items_edits_defaults_and_snippets() -> None:
    c = conv("utf-16")
    items = [
        lsp.CompletionItem(label="name", kind=lsp.CompletionItemKind.Variable, sort_text="a"),
        lsp.CompletionItem(label="te", text_edit=lsp.TextEdit(range=LR(0, 12, 0, 14), new_text="name")),
        lsp.CompletionItem(
            label="ir",
            text_edit=lsp.InsertReplaceEdit(new_text="name", insert=LR(0, 12, 0, 13), replace=LR(0, 12, 0, 16)),
        ),
        lsp.CompletionItem(
            label="snip", insert_text="f(${1:x}, $2)$0", insert_text_format=lsp.InsertTextFormat.Snippet, kind=99
        ),
        lsp.CompletionItem(label="dflt", documentation=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value="*d*")),
    ]
    result = lsp.CompletionList(
        is_incomplete=False, items=items, item_defaults=lsp.CompletionItemDefaults(edit_range=LR(0, 12, 0, 13))
    )
    out = c.completion_items_from_lsp("a.py", result)
    assert [i.label for i in out] == ["name", "te", "ir", "snip", "dflt"]
    assert out[0].kind == "variable" and out[0].sort_text == "a"
    assert out[0].edit == models.TextEdit(range=R(0, 10, 0, 11), new_text="name")  # the list's default range
    assert out[1].edit == models.TextEdit(range=R(0, 10, 0, 12), new_text="name")
    assert out[2].edit == models.TextEdit(range=R(0, 10, 0, 11), new_text="name")  # the insert range
    assert out[3].insert_text == "f(x, )" and out[3].kind is None
    assert out[4].documentation == "*d*"
    assert c.completion_items_from_lsp("a.py", None) == []
    assert [i.label for i in c.completion_items_from_lsp("a.py", items[:1])] == ["name"]
    back = c.completion_item_to_lsp("a.py", out[1])
    assert back.text_edit == lsp.TextEdit(range=LR(0, 12, 0, 14), new_text="name")


@pytest.mark.parametrize("kind", list(range(1, 26)))
def test_completion_and_symbol_kinds_round_trip(kind: int) -> None:
    name = completion_kind_from_lsp(kind)
    assert name is not None and completion_kind_to_lsp(name) == kind
    symbol = symbol_kind_from_lsp(kind)
    assert symbol_kind_to_lsp(symbol) == kind


def test_kind_names_follow_the_lsp_order() -> None:
    assert completion_kind_from_lsp(lsp.CompletionItemKind.EnumMember) == "enum_member"
    assert symbol_kind_from_lsp(lsp.SymbolKind.TypeParameter) == "type_parameter"
    assert symbol_kind_from_lsp(lsp.SymbolKind.Method) == "method"
    assert symbol_kind_from_lsp(99) == "variable"


@pytest.mark.parametrize(
    ("snippet", "text"),
    [
        ("plain", "plain"),
        ("foo(${1:a}, ${2:b})$0", "foo(a, b)"),
        ("${1:outer ${2:inner}}!", "outer inner!"),
        ("x${1|one,two|}y", "xoney"),
        (r"cost \$5 \} \\", "cost $5 } \\"),
        ("${TM_FILENAME}z$VAR", "z"),
        ("a}b", "a}b"),
        ("${1/(.*)/x/}q", "q"),
    ],
)
def test_snippets_become_their_plain_text(snippet: str, text: str) -> None:
    assert snippet_to_text(snippet) == text


# -- hover and signature help ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("contents", "markdown"),
    [
        (lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value="**b**"), "**b**"),
        (lsp.MarkupContent(kind=lsp.MarkupKind.PlainText, value="a_b"), "```text\na_b\n```"),
        (lsp.MarkupContent(kind=lsp.MarkupKind.PlainText, value="x ``` y"), "````text\nx ``` y\n````"),
        ("*md*", "*md*"),
        (lsp.MarkedStringWithLanguage(language="python", value="def f(): ..."), "```python\ndef f(): ...\n```"),
        (["one", lsp.MarkedStringWithLanguage(language="py", value="x"), ""], "one\n\n```py\nx\n```"),
    ],
)
def test_hover_contents_become_markdown(contents: object, markdown: str) -> None:
    assert markup_to_markdown(contents) == markdown  # type: ignore[arg-type]


def test_hover_both_ways() -> None:
    c = conv("utf-16")
    hover = c.hover_from_lsp("a.py", lsp.Hover(contents="doc", range=LR(0, 12, 0, 16)))
    assert hover == models.Hover(contents="doc", range=R(0, 10, 0, 14))
    back = c.hover_to_lsp("a.py", hover)
    assert back.range == LR(0, 12, 0, 16) and back.contents == lsp.MarkupContent(kind="markdown", value="doc")


def test_signature_help_offset_labels_count_in_the_encoding() -> None:
    label = "f(😀: int, b: str)"
    for encoding, first, second in (("utf-16", (2, 9), (11, 17)), ("utf-8", (2, 11), (13, 19))):
        help_ = lsp.SignatureHelp(
            signatures=[
                lsp.SignatureInformation(
                    label=label,
                    documentation="Doc.",
                    parameters=[
                        lsp.ParameterInformation(label=first),
                        lsp.ParameterInformation(label=second, documentation="the b"),
                    ],
                ),
                lsp.SignatureInformation(label="g()", active_parameter=0),
            ],
            active_signature=0,
            active_parameter=1,
        )
        out = conv(encoding).signature_help_from_lsp(help_)  # type: ignore[arg-type]
        assert [p.label for p in out.signatures[0].parameters] == ["😀: int", "b: str"]
        assert out.signatures[0].active_parameter == 1  # the list-wide one applies to the active signature
        assert out.signatures[0].parameters[1].documentation == "the b"
        assert out.signatures[1].active_parameter == 0
    back = conv().signature_help_to_lsp(out)
    assert back.signatures[0].parameters is not None and back.signatures[0].parameters[0].label == "😀: int"


# -- symbols --------------------------------------------------------------------------------------------


def test_document_symbols_keep_their_tree() -> None:
    c = conv("utf-16")
    child = lsp.DocumentSymbol(
        name="m", kind=lsp.SymbolKind.Method, range=LR(1, 4, 1, 20), selection_range=LR(1, 8, 1, 9)
    )
    parent = lsp.DocumentSymbol(
        name="C", kind=lsp.SymbolKind.Class, range=LR(0, 0, 1, 20), selection_range=LR(0, 6, 0, 7), children=[child]
    )
    [out] = c.document_symbols_from_lsp("b.py", [parent])
    assert (out.name, out.kind, [ch.name for ch in out.children]) == ("C", "class", ["m"])
    assert out.children[0].kind == "method"
    assert c.document_symbol_to_lsp("b.py", out) == lsp.DocumentSymbol(
        name="C",
        kind=lsp.SymbolKind.Class,
        range=LR(0, 0, 1, 20),
        selection_range=LR(0, 6, 0, 7),
        children=[
            lsp.DocumentSymbol(
                name="m", kind=lsp.SymbolKind.Method, range=LR(1, 4, 1, 20), selection_range=LR(1, 8, 1, 9), children=[]
            )
        ],
    )
    assert c.document_symbols_from_lsp("b.py", None) == []


def test_flat_symbol_information_nests_by_range() -> None:
    c = conv("utf-32")

    def info(name: str, kind: lsp.SymbolKind, rng: lsp.Range) -> lsp.SymbolInformation:
        return lsp.SymbolInformation(name=name, kind=kind, location=lsp.Location(uri=uri("c.py"), range=rng))

    flat = [
        info("method", lsp.SymbolKind.Method, LR(1, 4, 2, 10)),
        info("Cls", lsp.SymbolKind.Class, LR(0, 0, 5, 0)),
        info("inner", lsp.SymbolKind.Variable, LR(2, 8, 2, 9)),
        info("other", lsp.SymbolKind.Function, LR(6, 0, 7, 0)),
    ]
    tree = c.document_symbols_from_lsp("c.py", flat)
    assert [(s.name, [(ch.name, [g.name for g in ch.children]) for ch in s.children]) for s in tree] == [
        ("Cls", [("method", ["inner"])]),
        ("other", []),
    ]
    assert nest_by_range([]) == []


def test_workspace_symbols_containers_and_locations() -> None:
    c = conv("utf-16")
    jedi_style = lsp.SymbolInformation(
        name="name",
        kind=lsp.SymbolKind.Variable,
        location=lsp.Location(uri=uri("a.py"), range=LR(0, 12, 0, 16)),
        container_name="pkg.a.name",
    )
    info = c.symbol_info_from_lsp(jedi_style)
    assert info == models.SymbolInfo(
        name="name", kind="variable", location=models.Location(path="a.py", range=R(0, 10, 0, 14)), container="pkg.a"
    )
    uri_only = lsp.WorkspaceSymbol(
        name="f", kind=lsp.SymbolKind.Function, location=lsp.LocationUriOnly(uri=uri("b.py")), container_name="M"
    )
    info2 = c.symbol_info_from_lsp(uri_only)
    assert info2 is not None and info2.location.range == R(0, 0, 0, 0) and info2.container == "M"
    outside = lsp.SymbolInformation(
        name="x",
        kind=lsp.SymbolKind.Variable,
        location=lsp.Location(uri="file:///elsewhere/x.py", range=LR(0, 0, 0, 1)),
    )
    assert c.symbol_info_from_lsp(outside) is None
    assert c.symbol_info_to_lsp(info).location == jedi_style.location


# -- edits ----------------------------------------------------------------------------------------------


def test_workspace_edits_from_changes_and_document_changes() -> None:
    c = conv("utf-16")
    by_changes = lsp.WorkspaceEdit(changes={uri("a.py"): [lsp.TextEdit(range=LR(0, 12, 0, 16), new_text="nom")]})
    assert c.workspace_edit_from_lsp(by_changes) == models.WorkspaceEdit(
        changes={"a.py": [models.TextEdit(range=R(0, 10, 0, 14), new_text="nom")]}
    )
    by_documents = lsp.WorkspaceEdit(
        document_changes=[
            lsp.TextDocumentEdit(
                text_document=lsp.OptionalVersionedTextDocumentIdentifier(uri=uri("a.py"), version=4),
                edits=[
                    lsp.TextEdit(range=LR(0, 12, 0, 16), new_text="nom"),
                    lsp.SnippetTextEdit(range=LR(1, 0, 1, 0), snippet=lsp.StringValue(value="${1:z} = 0\n")),
                ],
            ),
            lsp.TextDocumentEdit(
                text_document=lsp.OptionalVersionedTextDocumentIdentifier(uri=uri("b.py"), version=None),
                edits=[lsp.AnnotatedTextEdit(range=LR(1, 21, 1, 22), new_text="", annotation_id="x")],
            ),
        ]
    )
    edit = c.workspace_edit_from_lsp(by_documents)
    assert edit.changes["a.py"] == [
        models.TextEdit(range=R(0, 10, 0, 14), new_text="nom"),
        models.TextEdit(range=R(1, 0, 1, 0), new_text="z = 0\n"),
    ]
    assert edit.changes["b.py"] == [models.TextEdit(range=R(1, 19, 1, 20), new_text="")]
    assert edit.versions == {"a.py": 4}
    back = c.workspace_edit_to_lsp(edit)
    assert back.document_changes is not None
    first = back.document_changes[0]
    assert isinstance(first, lsp.TextDocumentEdit) and first.text_document.version == 4
    assert first.edits[0] == lsp.TextEdit(range=LR(0, 12, 0, 16), new_text="nom")


@pytest.mark.parametrize(
    "edit",
    [
        lsp.WorkspaceEdit(document_changes=[lsp.RenameFile(old_uri=uri("a.py"), new_uri=uri("z.py"))]),
        lsp.WorkspaceEdit(document_changes=[lsp.CreateFile(uri=uri("n.py"))]),
        lsp.WorkspaceEdit(changes={"file:///elsewhere/x.py": [lsp.TextEdit(range=LR(0, 0, 0, 0), new_text="x")]}),
    ],
)
def test_edits_the_core_cannot_express_are_refused_whole(edit: lsp.WorkspaceEdit) -> None:
    with pytest.raises(UnsupportedEdit):
        conv().workspace_edit_from_lsp(edit)


def test_simultaneous_edits_apply_in_order_as_lsp_means_them() -> None:
    doc = Document("x.py", "abc def\nghi\n", 0, "python")
    edits = [
        models.TextEdit(range=R(0, 0, 0, 3), new_text="ABC"),
        models.TextEdit(range=R(0, 4, 0, 4), new_text="1"),
        models.TextEdit(range=R(0, 4, 0, 4), new_text="2"),
        models.TextEdit(range=R(0, 4, 0, 7), new_text="DEF"),
        models.TextEdit(range=R(1, 0, 2, 0), new_text=""),
    ]
    doc.apply(edits_to_changes(edits))
    assert doc.text == "ABC 12DEF\n"


# -- call hierarchy -------------------------------------------------------------------------------------


def test_call_hierarchy_ranges_lie_in_the_right_file() -> None:
    c = conv("utf-16")
    callee = lsp.CallHierarchyItem(
        name="g", kind=lsp.SymbolKind.Function, uri=uri("a.py"), range=LR(1, 0, 1, 9), selection_range=LR(1, 0, 1, 2)
    )
    caller = lsp.CallHierarchyItem(
        name="f", kind=lsp.SymbolKind.Function, uri=uri("b.py"), range=LR(0, 0, 1, 22), selection_range=LR(0, 4, 0, 5)
    )
    [incoming] = c.incoming_calls_from_lsp(
        [lsp.CallHierarchyIncomingCall(from_=caller, from_ranges=[LR(1, 18, 1, 19)])]
    )
    assert incoming.item.path == "b.py" and incoming.from_ranges == [R(1, 16, 1, 17)]  # after the ZWJ emoji in b.py
    [outgoing] = c.outgoing_calls_from_lsp(
        "b.py", [lsp.CallHierarchyOutgoingCall(to=callee, from_ranges=[LR(1, 18, 1, 19)])]
    )
    assert outgoing.item.path == "a.py" and outgoing.from_ranges == [R(1, 16, 1, 17)]  # in the caller's file
    assert c.incoming_calls_from_lsp(None) == []
    item = c.call_hierarchy_item_from_lsp(callee)
    assert item is not None and c.call_hierarchy_item_to_lsp(item) == callee


# -- document changes -----------------------------------------------------------------------------------


CHANGE_CASES: list[tuple[str, list[TextChange], Encoding, list[tuple[tuple[int, int, int, int] | None, str]]]] = [
    # each change is read against the text the previous one produced
    (
        "a😀b\nc",
        [TextChange(range=R(0, 2, 0, 3), text="X"), TextChange(range=R(0, 0, 0, 1), text="😀")],
        "utf-16",
        [((0, 3, 0, 4), "X"), ((0, 0, 0, 1), "😀")],
    ),
    ("a😀b\nc", [TextChange(range=R(0, 2, 0, 3), text="X")], "utf-8", [((0, 5, 0, 6), "X")]),
    ("a😀b\nc", [TextChange(range=R(0, 2, 0, 3), text="X")], "utf-32", [((0, 2, 0, 3), "X")]),
    # past the end of a line clamps to it, past the last line to the end of the text, as the workspace does
    ("ab\r\ncd", [TextChange(range=R(0, 9, 1, 1), text="")], "utf-16", [((0, 2, 1, 1), "")]),
    ("ab\ncd", [TextChange(range=R(7, 0, 9, 0), text="!")], "utf-16", [((1, 2, 1, 2), "!")]),
    (
        "old",
        [TextChange(text="new\n"), TextChange(range=R(1, 0, 1, 0), text="中")],
        "utf-8",
        [(None, "new\n"), ((1, 0, 1, 0), "中")],
    ),
]


@pytest.mark.parametrize(("text", "changes", "encoding", "expected"), CHANGE_CASES)
def test_changes_become_incremental_events(
    text: str,
    changes: list[TextChange],
    encoding: Encoding,
    expected: list[tuple[tuple[int, int, int, int] | None, str]],
) -> None:
    events, result = changes_to_lsp(text, changes, encoding)
    got = [
        ((e.range.start.line, e.range.start.character, e.range.end.line, e.range.end.character), e.text)
        if isinstance(e, lsp.TextDocumentContentChangePartial)
        else (None, e.text)
        for e in events
    ]
    assert got == expected
    doc = Document("x", text, 0, "plaintext")
    doc.apply(changes)
    assert result == doc.text


_CHARS = st.sampled_from([*"ab \n\r😀中é", "\r\n", "👩\u200d💻"])
_TEXT = st.lists(_CHARS, max_size=12).map("".join)
_POS = st.builds(P, st.integers(0, 4), st.integers(0, 6))
_CHANGE = st.builds(
    lambda a, b, t: TextChange(range=Range(start=min(a, b, key=_key), end=max(a, b, key=_key)), text=t),
    _POS,
    _POS,
    _TEXT,
)


def _key(p: Position) -> tuple[int, int]:
    return (p.line, p.character)


@settings(max_examples=300, deadline=None)
@given(
    text=_TEXT,
    changes=st.lists(_CHANGE, min_size=1, max_size=4),
    encoding=st.sampled_from(["utf-8", "utf-16", "utf-32"]),
)
def test_a_server_applying_the_events_gets_the_workspace_text(
    text: str, changes: list[TextChange], encoding: str
) -> None:
    """pygls' own text document (the server side) is the oracle: it must end with the text the workspace has."""
    doc = Document("x", text, 0, "plaintext")
    try:
        doc.apply(changes)
    except Exception:  # a range the workspace refuses is never forwarded
        return
    events, result = changes_to_lsp(text, changes, encoding)  # type: ignore[arg-type]
    assert result == doc.text
    server_doc = TextDocument("file:///x", text, position_codec=PositionCodec(encoding=encoding))
    for event in events:
        server_doc.apply_change(event)
    assert server_doc.source == doc.text


def test_line_splitting_matches_lsp_line_breaks() -> None:
    assert split_lines("a\r\nb\rc\nd") == ["a", "b", "c", "d"]
    assert split_lines("a\u2028b\x0cc") == ["a\u2028b\x0cc"]  # not line breaks in LSP
    assert split_lines("") == [""]


def test_paths_are_posix(tmp_path: Path) -> None:
    root = tmp_path.as_posix()
    assert uri_to_path(root, (tmp_path / "x y" / "z.py").as_uri()) == "x y/z.py"
