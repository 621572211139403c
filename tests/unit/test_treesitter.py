"""The tree-sitter engine: outlines, syntax errors, incremental parsing, the symbol index, completion."""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tree_sitter import Node
from tree_sitter_language_pack import get_parser

from gateway.analysis.engine import EngineUnavailable
from gateway.analysis.models import DocumentSymbol, Position, Range
from gateway.analysis.symbol_index import IndexEntry, SymbolIndex
from gateway.analysis.treesitter import TreeSitterEngine, edits_for_changes, language_for_path
from gateway.config import AnalysisConfig
from gateway.workspace import TextChange, Workspace

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "treesitter"
WAIT = 10.0


def make_config(**overrides: object) -> AnalysisConfig:
    settings: dict[str, object] = {"watch": False, "index_on_start": False}
    settings.update(overrides)
    return AnalysisConfig.model_validate(settings)


def copy_fixtures(root: Path, *names: str) -> None:
    for name in names or tuple(p.name for p in FIXTURES.iterdir()):
        shutil.copy(FIXTURES / name, root / name)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    copy_fixtures(tmp_path)
    return Workspace(tmp_path)


@pytest.fixture
async def engine(workspace: Workspace) -> AsyncIterator[TreeSitterEngine]:
    eng = TreeSitterEngine(workspace, make_config())
    workspace.listeners.append(eng)
    yield eng
    await eng.close()


def outline(symbols: list[DocumentSymbol], parent: str = "") -> Iterator[str]:
    """`Parent/child:kind` for every symbol, depth first."""
    for sym in symbols:
        path = f"{parent}/{sym.name}" if parent else sym.name
        yield f"{path}:{sym.kind}"
        yield from outline(sym.children, path)


def find(symbols: list[DocumentSymbol], name: str) -> DocumentSymbol:
    for sym in symbols:
        if sym.name == name:
            return sym
        try:
            return find(sym.children, name)
        except LookupError:
            continue
    raise LookupError(name)


# -- languages ------------------------------------------------------------------------------------------
def test_handles_files_by_language_id_or_file_name(engine: TreeSitterEngine) -> None:
    assert engine.handles("a.py", "python")
    assert engine.handles("a.tsx", "typescriptreact")
    assert engine.handles("Main.kt", "plaintext")
    assert engine.handles("build/Dockerfile", "plaintext")
    assert engine.handles("script", "shellscript")
    assert engine.handles("x.unknown", "lua")
    assert not engine.handles("notes.xyz", "plaintext")
    assert not engine.handles("README", "plaintext")
    assert language_for_path("src/lib.RS") == "rust"
    assert engine.language_of("a.tsx", "typescriptreact") == "tsx"


async def test_unhandled_documents_are_not_offered(engine: TreeSitterEngine, workspace: Workspace) -> None:
    (workspace.root / "notes.xyz").write_text("hello")
    snap = workspace.snapshot("notes.xyz")
    assert await engine.document_symbols(snap) is None
    assert await engine.diagnostics(snap) is None
    assert await engine.complete(snap, Position(line=0, character=1)) is None


# -- outlines -------------------------------------------------------------------------------------------
EXPECTED_OUTLINES: dict[str, list[str]] = {
    "shop.py": [
        "TAX_RATE:constant",
        "default_currency:variable",
        "Item:class",
        "Item/unit:field",
        "Item/__init__:method",
        "Item/label:method",
        "Cart:class",
        "Cart/__init__:method",
        "Cart/add:method",
        "Cart/checkout:method",
        "Cart/checkout/subtotal:function",
        "price_with_tax:function",
    ],
    "shapes.ts": [
        "MAX_SIDES:constant",
        "Shape:interface",
        "Shape/area:method",
        "Shape/name:property",
        "Color:enum",
        "Color/Red:enum_member",
        "Color/Green:enum_member",
        "Circle:class",
        "Circle/name:property",
        "Circle/constructor:constructor",
        "Circle/area:method",
        "Circle/describe:method",
        "largest:function",
        "Pair:type_parameter",
        "scale:function",
    ],
    "geometry.go": [
        "Epsilon:constant",
        "origin:variable",
        "Point:struct",
        "Point/X:field",
        "Point/Y:field",
        "Shape:interface",
        "Shape/Area:method",
        "Meters:class",
        "Distance:method",
        "String:method",
        "NewPoint:function",
    ],
    "inventory.rs": [
        "MAX_ITEMS:constant",
        "Inventory:struct",
        "Inventory/items:field",
        "Event:enum",
        "Event/Added:enum_member",
        "Event/Removed:enum_member",
        "Event/Removed/name:field",
        "Store:interface",
        "Store/count:method",
        "impl Inventory:object",
        "impl Inventory/new:method",
        "impl Inventory/add:method",
        "impl Store for Inventory:object",
        "impl Store for Inventory/count:method",
        "helpers:module",
        "helpers/normalise:function",
    ],
    "list.c": [
        "LIST_MAX:constant",
        "node_t:type_parameter",
        "node_t/node:struct",
        "node_t/node/value:field",
        "node_t/node/next:field",
        "list_status:enum",
        "list_status/LIST_OK:enum_member",
        "list_status/LIST_FULL:enum_member",
        "list_count:variable",
        "list_push:function",
        "list_push:function",
        "list_length:function",
    ],
    "Library.java": [
        "Library:class",
        "Library/MAX_BOOKS:constant",
        "Library/books:field",
        "Library/Library:constructor",
        "Library/addBook:method",
        "Library/size:method",
        "Library/Book:class",
        "Library/Book/title:field",
        "Library/Book/Book:constructor",
        "Library/Book/getTitle:method",
        "Library/Genre:enum",
        "Library/Genre/FICTION:enum_member",
        "Library/Genre/SCIENCE:enum_member",
        "Catalogue:interface",
        "Catalogue/search:method",
    ],
}


@pytest.mark.parametrize("path", sorted(EXPECTED_OUTLINES))
async def test_outline_nests_symbols_with_kinds(engine: TreeSitterEngine, workspace: Workspace, path: str) -> None:
    symbols = await engine.document_symbols(workspace.snapshot(path))
    assert symbols is not None
    assert list(outline(symbols)) == EXPECTED_OUTLINES[path]


async def test_outline_ranges_and_details(engine: TreeSitterEngine, workspace: Workspace) -> None:
    symbols = await engine.document_symbols(workspace.snapshot("shop.py"))
    assert symbols is not None
    cart = find(symbols, "Cart")
    assert cart.range.start == Position(line=22, character=0)
    assert cart.selection_range == Range(start=Position(line=22, character=6), end=Position(line=22, character=10))
    add = find(symbols, "add")
    assert add.detail == "(self, item: Item)"
    assert add.range.start.line == 26 and add.range.end.line == 27


@pytest.mark.parametrize(
    ("source", "name", "expected"),
    [
        ("class Shop {\n  def total = 0\n}\nobject Main { def main(): Unit = {} }\n", "a.scala", ["Shop:class"]),
        (
            "namespace Foo { class Bar { void Run() {} } }\n",
            "a.cs",
            ["Foo:namespace", "Foo/Bar:class", "Foo/Bar/Run:method"],
        ),
        (
            "module Shop\n  class Cart\n    attr_reader :items\n    def total; end\n  end\nend\n",
            "a.rb",
            ["Shop:module", "Shop/Cart:class", "Shop/Cart/items:property", "Shop/Cart/total:method"],
        ),
        (
            "namespace geo {\nclass Shape { public: double area() const; int id; };\n}\n"
            "double geo::Shape::area() const {}\n",
            "a.cpp",
            ["geo:namespace", "geo/Shape:class", "geo/Shape/area:method", "geo/Shape/id:field", "area:method"],
        ),
        (
            "class A {\n  x = 1;\n  m() {}\n}\nfunction f() {}\nconst g = () => 1;\nlet h = 2;\n",
            "a.js",
            ["A:class", "A/x:property", "A/m:method", "f:function", "g:function", "h:variable"],
        ),
        ("fun top() {}\nclass K { fun k() {} }\n", "Main.kt", ["top:function", "K:class", "K/k:method"]),
        ("# Title\n\n## Part\n\ntext\n", "README.md", ["Title:string", "Title/Part:string"]),
    ],
)
async def test_outline_for_more_grammars(
    engine: TreeSitterEngine, workspace: Workspace, source: str, name: str, expected: list[str]
) -> None:
    (workspace.root / name).write_text(source)
    symbols = await engine.document_symbols(workspace.snapshot(name))
    assert symbols is not None
    names = list(outline(symbols))
    assert names[: len(expected)] == expected


# -- syntax errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(EXPECTED_OUTLINES))
async def test_valid_files_have_no_diagnostics(engine: TreeSitterEngine, workspace: Workspace, path: str) -> None:
    assert await engine.diagnostics(workspace.snapshot(path)) == []


@pytest.mark.parametrize(
    ("path", "line", "message"),
    [
        ("broken.py", 4, "missing `)`"),
        ("broken.ts", 4, "syntax error"),
        ("broken.go", 7, "syntax error"),
        ("broken.rs", 5, "syntax error"),
        ("broken.c", 5, "missing `;`"),
        ("Broken.java", 6, "missing identifier"),
    ],
)
async def test_syntax_errors_become_diagnostics(
    engine: TreeSitterEngine, workspace: Workspace, path: str, line: int, message: str
) -> None:
    diagnostics = await engine.diagnostics(workspace.snapshot(path))
    assert diagnostics
    first = diagnostics[0]
    assert first.severity == "error"
    assert first.source == "tree-sitter"
    assert first.range.start.line == line
    assert first.message.startswith(message)


async def test_broken_files_still_have_an_outline(engine: TreeSitterEngine, workspace: Workspace) -> None:
    symbols = await engine.document_symbols(workspace.snapshot("Broken.java"))
    assert symbols is not None
    assert list(outline(symbols)) == ["Broken:class", "Broken/ok:method", "Broken/broken:method"]


# -- code points ----------------------------------------------------------------------------------------
async def test_columns_count_code_points_after_emoji_and_cjk(engine: TreeSitterEngine, workspace: Workspace) -> None:
    snap = workspace.snapshot("unicode.ts")
    lines = snap.text.splitlines()
    symbols = await engine.document_symbols(snap)
    assert symbols is not None
    wave = find(symbols, "wave")
    assert wave.selection_range.start == Position(line=1, character=lines[1].index("wave"))
    assert wave.selection_range.end == Position(line=1, character=lines[1].index("wave") + 4)
    cafe = find(symbols, "Café")
    assert cafe.selection_range.start == Position(line=2, character=lines[2].index("Café"))
    naive = find(symbols, "naïve")
    assert naive.range.start == Position(line=2, character=lines[2].index("naïve"))
    assert naive.range.end == Position(line=2, character=lines[2].index("{}") + 2)


async def test_diagnostic_columns_count_code_points(engine: TreeSitterEngine, workspace: Workspace) -> None:
    text = 's = "😀🎉日本"; f(1,,2)\n'
    workspace.open("emoji.py", text)
    diagnostics = await engine.diagnostics(workspace.snapshot("emoji.py"))
    assert diagnostics is not None and len(diagnostics) == 1
    column = text.index(",,")  # tree-sitter flags the first comma (byte 25, code point 15)
    assert diagnostics[0].range == Range(
        start=Position(line=0, character=column), end=Position(line=0, character=column + 1)
    )


async def test_crlf_and_lone_cr_lines_match_the_workspace(engine: TreeSitterEngine, workspace: Workspace) -> None:
    workspace.open("crlf.py", "a = 1\r\nb = 2\rdef f():\r\n    return 1\n")
    symbols = await engine.document_symbols(workspace.snapshot("crlf.py"))
    assert symbols is not None
    assert [(s.name, s.selection_range.start.line) for s in symbols] == [("a", 0), ("b", 1), ("f", 2)]


# -- incremental parsing --------------------------------------------------------------------------------
def dump(node: Node) -> list[tuple[str, int, int, tuple[int, int], tuple[int, int], bool]]:
    """Every node with its byte range and points: stricter than the s-expression."""
    out = []
    stack = [node]
    while stack:
        current = stack.pop()
        out.append(
            (
                current.type,
                current.start_byte,
                current.end_byte,
                tuple(current.start_point),
                tuple(current.end_point),
                current.is_missing,
            )
        )
        stack.extend(reversed(current.children))
    return out  # type: ignore[return-value]


def fresh(language: str, text: str) -> Node:
    return get_parser(language).parse(text.encode("utf-8")).root_node  # type: ignore[arg-type]


def change(sl: int, sc: int, el: int, ec: int, text: str) -> TextChange:
    return TextChange(
        range=Range(start=Position(line=sl, character=sc), end=Position(line=el, character=ec)), text=text
    )


async def test_incremental_tree_equals_a_fresh_parse(engine: TreeSitterEngine, workspace: Workspace) -> None:
    workspace.open("edit.py", (FIXTURES / "shop.py").read_text())
    steps = [
        [change(4, 0, 4, 8, "TAX_RÄTE_😀")],  # replace a name with non-ASCII text
        [change(8, 10, 8, 10, "  # 日本語 comment")],  # insert after a class header
        [change(13, 4, 15, 26, "def __init__(self):\n        pass")],  # multi-line replacement
        [change(0, 0, 0, 0, "# 🎉\n"), change(1, 3, 1, 3, "ß")],  # two changes, the second on the new text
        [change(37, 0, 40, 0, "")],  # delete the last function
        [change(30, 8, 30, 8, "x = (")],  # introduce a syntax error
        [change(30, 8, 30, 13, "")],  # and remove it
    ]
    before = engine.stats["incremental_parses"]
    for step in steps:
        workspace.change("edit.py", step)
        snap = workspace.snapshot("edit.py")
        tree = await engine.syntax_tree(snap)
        assert tree is not None
        assert dump(tree.root_node) == dump(fresh("python", snap.text))
    assert engine.stats["incremental_parses"] - before == len(steps)


async def test_many_edits_before_one_reparse(engine: TreeSitterEngine, workspace: Workspace) -> None:
    workspace.open("multi.ts", (FIXTURES / "shapes.ts").read_text())
    rng = random.Random(7)
    pieces = ["a", "😀", "日本", "\n", " ", "(", ")", "{", "}", ";", "é", "\r\n", "x = 1;"]
    for _ in range(60):
        doc = workspace.get("multi.ts")
        line = rng.randrange(doc.line_count)
        width = len(doc.line(line))
        start = rng.randint(0, width)
        end = min(width, start + rng.randint(0, 4))
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 3)))
        workspace.change("multi.ts", [change(line, start, line, end, text)])
        if rng.random() < 0.3:  # sometimes reparse after each edit, sometimes after several
            snap = workspace.snapshot("multi.ts")
            tree = await engine.syntax_tree(snap)
            assert tree is not None
            assert dump(tree.root_node) == dump(fresh("typescript", snap.text))
    snap = workspace.snapshot("multi.ts")
    tree = await engine.syntax_tree(snap)
    assert tree is not None
    assert dump(tree.root_node) == dump(fresh("typescript", snap.text))


async def test_big_documents_parse_incrementally_in_a_thread(workspace: Workspace) -> None:
    eng = TreeSitterEngine(workspace, make_config(), asyncio.Semaphore(1))
    workspace.listeners.append(eng)
    try:
        text = "".join(f"def handler_{i}(value):\n    return value + {i}\n\n" for i in range(3000))
        assert len(text) > 64 * 1024
        workspace.open("big.py", text)
        symbols = await eng.document_symbols(workspace.snapshot("big.py"))
        assert symbols is not None and len(symbols) == 3000
        workspace.change("big.py", [change(4500, 0, 4500, 0, 'x = "😀"; y = 1\nclass Ünïcode_日本:\n    pass\n')])
        snap = workspace.snapshot("big.py")
        before = eng.stats["incremental_parses"]
        tree = await eng.syntax_tree(snap)
        assert tree is not None
        assert eng.stats["incremental_parses"] == before + 1
        assert dump(tree.root_node) == dump(fresh("python", snap.text))
        symbols = await eng.document_symbols(snap)
        assert symbols is not None
        assert find(symbols, "Ünïcode_日本").selection_range.start == Position(line=4501, character=6)
        assert await eng.diagnostics(snap) == []
    finally:
        await eng.close()


async def test_whole_document_replacement_parses_from_scratch(engine: TreeSitterEngine, workspace: Workspace) -> None:
    workspace.open("whole.go", (FIXTURES / "geometry.go").read_text())
    workspace.change("whole.go", [TextChange(text="package other\n\nfunc Only() {}\n")])
    symbols = await engine.document_symbols(workspace.snapshot("whole.go"))
    assert symbols is not None
    assert [s.name for s in symbols] == ["Only"]


def test_edits_for_changes_count_bytes_and_rows() -> None:
    result = edits_for_changes("añb\nc", [change(0, 2, 1, 0, "😀\n\n")])
    assert result is not None
    edits, text = result
    assert text == "añ😀\n\nc"
    start_byte, old_end, new_end, start_point, old_end_point, new_end_point = edits[0]
    assert (start_byte, old_end, new_end) == (3, 5, 9)
    assert (tuple(start_point), tuple(old_end_point), tuple(new_end_point)) == ((0, 3), (1, 0), (2, 0))


async def test_closing_a_document_drops_its_tree(engine: TreeSitterEngine, workspace: Workspace) -> None:
    workspace.open("shop.py", None)
    workspace.change("shop.py", [change(0, 0, 0, 0, "BRAND_NEW = 1\n")])
    symbols = await engine.document_symbols(workspace.snapshot("shop.py"))
    assert symbols is not None and symbols[0].name == "BRAND_NEW"
    workspace.close("shop.py")
    symbols = await engine.document_symbols(workspace.snapshot("shop.py"))
    assert symbols is not None and symbols[0].name == "TAX_RATE"


# -- completion -----------------------------------------------------------------------------------------
async def test_completion_offers_document_identifiers_for_the_prefix(
    engine: TreeSitterEngine, workspace: Workspace
) -> None:
    text = "def compute_total(items):\n    counter = 0\n    return comp\n# computed in a comment\n"
    workspace.open("c.py", text)
    snap = workspace.snapshot("c.py")
    items = await engine.complete(snap, Position(line=2, character=15))
    assert items is not None
    labels = [item.label for item in items]
    assert labels == ["compute_total"]  # not the typed word, not words from comments
    assert items[0].kind == "function"
    assert items[0].edit is not None
    assert items[0].edit.range == Range(start=Position(line=2, character=11), end=Position(line=2, character=15))
    assert items[0].edit.new_text == "compute_total"


async def test_completion_prefix_counts_code_points(engine: TreeSitterEngine, workspace: Workspace) -> None:
    workspace.open("u.py", 'héllo_wörld = 1\nx = "😀"; hé\n')
    items = await engine.complete(workspace.snapshot("u.py"), Position(line=1, character=11))
    assert items is not None
    assert [item.label for item in items] == ["héllo_wörld"]
    assert items[0].kind == "variable"
    assert items[0].edit is not None
    assert items[0].edit.range.start == Position(line=1, character=9)


async def test_completion_adds_index_names_after_document_words(workspace: Workspace) -> None:
    eng = TreeSitterEngine(workspace, make_config(index_on_start=True))
    workspace.listeners.append(eng)
    try:
        await eng.start()
        await asyncio.wait_for(eng.index_ready.wait(), WAIT)
        workspace.open("use.py", "price_local = 2\nprice\n")
        items = await eng.complete(workspace.snapshot("use.py"), Position(line=1, character=5))
        assert items is not None
        labels = [item.label for item in items]
        assert labels[0] == "price_local"
        assert "price_with_tax" in labels
        from_index = next(item for item in items if item.label == "price_with_tax")
        assert from_index.kind == "function"
        assert [item.sort_text for item in items] == sorted(item.sort_text or "" for item in items)
    finally:
        await eng.close()


# -- the index ------------------------------------------------------------------------------------------
@pytest.fixture
async def indexed(workspace: Workspace) -> AsyncIterator[TreeSitterEngine]:
    eng = TreeSitterEngine(workspace, make_config(index_on_start=True))
    workspace.listeners.append(eng)
    await eng.start()
    await asyncio.wait_for(eng.index_ready.wait(), WAIT)
    yield eng
    await eng.close()


async def test_find_symbol_by_dotted_path(indexed: TreeSitterEngine) -> None:
    found = await indexed.find_symbol("Library.addBook", None)
    assert found is not None
    assert [(s.name, s.kind, s.container, s.location.path) for s in found] == [
        ("addBook", "method", "Library", "Library.java")
    ]
    assert found[0].location.range.start == Position(line=11, character=4)
    nested = await indexed.find_symbol("Book.getTitle", None)
    assert nested is not None and [s.container for s in nested] == ["Library.Book"]
    go_method = await indexed.find_symbol("Point.Distance", None)
    assert go_method is not None and [s.location.path for s in go_method] == ["geometry.go"]
    rust_method = await indexed.find_symbol("Inventory::add", None)
    assert rust_method is not None and [s.container for s in rust_method] == ["Inventory"]
    counts = await indexed.find_symbol("count", "method")
    assert counts is not None and {s.container for s in counts} == {"Store", "Inventory"}
    assert await indexed.find_symbol("Cart.add", "class") == []
    assert await indexed.find_symbol("Nope.nothing", None) == []


async def test_workspace_symbols_rank_exact_prefix_substring_subsequence(
    indexed: TreeSitterEngine, workspace: Workspace
) -> None:
    (workspace.root / "rank.py").write_text(
        "def shape(): ...\ndef shape_area(): ...\ndef my_shape(): ...\ndef s_h_a_p_e(): ...\n"
    )
    (workspace.root / "geo.cpp").write_text(
        "namespace geo {\nclass Shape { double area() const; };\n}\ndouble geo::Shape::area() const { return 0; }\n"
    )
    await indexed.close()
    eng = TreeSitterEngine(workspace, make_config(index_on_start=True))
    await eng.start()
    await asyncio.wait_for(eng.index_ready.wait(), WAIT)
    try:
        found = await eng.workspace_symbols("shape", "python")
        assert found is not None
        assert [s.name for s in found] == ["shape", "shape_area", "my_shape", "s_h_a_p_e"]
        typescript = await eng.workspace_symbols("Shape", "typescript")
        assert typescript is not None and [s.name for s in typescript] == ["Shape"]
        areas = await eng.find_symbol("Shape.area", None)
        assert areas is not None
        assert [(s.location.path, s.container, s.location.range.start.line) for s in areas] == [
            ("geo.cpp", "geo.Shape", 1),  # the declaration in the class
            ("geo.cpp", "geo.Shape", 3),  # the out-of-line definition
            ("shapes.ts", "Shape", 5),
        ]
        everything = await eng.workspace_symbols("shape", None)
        assert everything is not None and {s.location.path for s in everything} >= {"geometry.go", "shapes.ts"}
    finally:
        await eng.close()


async def test_index_respects_gitignore_size_and_count_limits(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("build/\n*.gen.py\n")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "out.py").write_text("def ignored_in_build(): ...\n")
    (tmp_path / "x.gen.py").write_text("def ignored_generated(): ...\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".gitignore").write_text("local.py\n")
    (tmp_path / "sub" / "local.py").write_text("def ignored_local(): ...\n")
    (tmp_path / "sub" / "kept.py").write_text("def kept(): ...\n")
    (tmp_path / "big.py").write_text("def too_big(): ...\n" + "#" * 5000)
    (tmp_path / "data.json").write_text('{"not_indexed": 1}')
    ws = Workspace(tmp_path)
    eng = TreeSitterEngine(ws, make_config(index_on_start=True, index_max_file_bytes=1000))
    await eng.start()
    await asyncio.wait_for(eng.index_ready.wait(), WAIT)
    try:
        assert sorted(eng.index.paths()) == ["sub/kept.py"]
    finally:
        await eng.close()
    eng = TreeSitterEngine(ws, make_config(index_on_start=True, index_max_files=1, index_max_file_bytes=10_000))
    await eng.start()
    await asyncio.wait_for(eng.index_ready.wait(), WAIT)
    try:
        assert eng.index.file_count == 1
    finally:
        await eng.close()


async def test_index_follows_open_document_edits(indexed: TreeSitterEngine, workspace: Workspace) -> None:
    workspace.open("shop.py", None)
    workspace.change("shop.py", [change(0, 0, 0, 0, "class Unsaved:\n    def fresh_method(self): ...\n")])
    await indexed.wait_for_index(lambda: bool(indexed.index.find("Unsaved.fresh_method")), WAIT)
    found = await indexed.find_symbol("Unsaved.fresh_method", None)
    assert found is not None and found[0].location.range.start.line == 1
    moved = await indexed.find_symbol("Cart.add", None)
    assert moved is not None and moved[0].location.range.start.line == 28  # shifted by the two new lines
    workspace.close("shop.py")  # the disk is the truth again
    await indexed.wait_for_index(lambda: not indexed.index.find("fresh_method"), WAIT)
    assert indexed.index.find("Cart.add")[0].start_line == 26


async def test_index_follows_the_disk(tmp_path: Path) -> None:
    copy_fixtures(tmp_path, "shop.py", "geometry.go")
    (tmp_path / ".gitignore").write_text("ignored/\n")
    (tmp_path / "ignored").mkdir()
    ws = Workspace(tmp_path)
    eng = TreeSitterEngine(ws, make_config(index_on_start=True, watch=True))
    await eng.start()
    await asyncio.wait_for(asyncio.gather(eng.index_ready.wait(), eng.watch_ready.wait()), WAIT)
    try:
        (tmp_path / "ignored" / "hidden.py").write_text("def hidden_from_index(): ...\n")
        (tmp_path / "added.rs").write_text("pub struct Added;\nimpl Added { fn made(&self) {} }\n")
        await eng.wait_for_index(lambda: bool(eng.index.find("Added.made")), WAIT)
        assert eng.index.find("hidden_from_index") == []

        (tmp_path / "shop.py").write_text("def replaced_on_disk(): ...\n")
        await eng.wait_for_index(lambda: bool(eng.index.find("replaced_on_disk")), WAIT)
        assert eng.index.find("Cart.add") == []

        (tmp_path / "geometry.go").unlink()
        await eng.wait_for_index(lambda: "geometry.go" not in eng.index, WAIT)
        assert await eng.find_symbol("Point.Distance", None) == []
    finally:
        await eng.close()
    assert eng._watch_task is not None and eng._watch_task.done()


async def test_symbol_queries_wait_for_the_first_build(workspace: Workspace) -> None:
    limiter = asyncio.Semaphore(1)
    await limiter.acquire()  # hold the only worker slot: the build cannot run yet
    eng = TreeSitterEngine(workspace, make_config(index_on_start=True), limiter)
    await eng.start()
    try:
        assert eng.indexing
        with pytest.raises(EngineUnavailable) as info:
            await eng.workspace_symbols("Cart", None)
        assert info.value.reason == "server_starting"
        with pytest.raises(EngineUnavailable):
            await eng.find_symbol("Cart.add", None)
        limiter.release()
        await asyncio.wait_for(eng.index_ready.wait(), WAIT)
        assert not eng.indexing
        found = await eng.find_symbol("Cart.add", None)
        assert found is not None and len(found) == 1
    finally:
        await eng.close()


async def test_without_index_on_start_the_first_query_starts_the_build(engine: TreeSitterEngine) -> None:
    with pytest.raises(EngineUnavailable):
        await engine.workspace_symbols("Cart", None)
    await asyncio.wait_for(engine.index_ready.wait(), WAIT)
    found = await engine.workspace_symbols("Cart", None)
    assert found is not None and found[0].name == "Cart"


async def test_two_thousand_files_index(tmp_path: Path) -> None:
    for package in range(20):
        folder = tmp_path / f"pkg{package}"
        folder.mkdir()
        for module in range(100):
            (folder / f"mod{module}.py").write_text(
                f"class Model{package}_{module}:\n    def save(self): ...\n\ndef helper_{package}_{module}(): ...\n"
            )
    eng = TreeSitterEngine(Workspace(tmp_path), make_config(index_on_start=True), asyncio.Semaphore(2))
    await eng.start()
    try:
        await asyncio.wait_for(eng.index_ready.wait(), 30)
        assert eng.index.file_count == 2000
        assert len(eng.index) == 6000
        found = await eng.find_symbol("Model7_42.save", "method")
        assert found is not None and [s.location.path for s in found] == ["pkg7/mod42.py"]
        assert len(eng.index.find("save")) == 2000
    finally:
        await eng.close()


async def test_close_is_prompt_during_a_build(workspace: Workspace) -> None:
    eng = TreeSitterEngine(workspace, make_config(index_on_start=True, watch=True))
    await eng.start()
    await asyncio.wait_for(eng.close(), WAIT)
    assert not eng.indexing


# -- the index on its own ---------------------------------------------------------------------------------
def entry(name: str, path: str = "a.py", container: str | None = None, kind: str = "function") -> IndexEntry:
    return IndexEntry(name, kind, path, 0, 0, 0, 1, container, "python")  # type: ignore[arg-type]


def test_symbol_index_replace_and_remove() -> None:
    index = SymbolIndex()
    index.replace("a.py", [entry("one"), entry("two")])
    index.replace("b/c.py", [entry("one", "b/c.py")])
    assert len(index) == 3 and index.file_count == 2
    index.replace("a.py", [entry("three")])
    assert [e.name for e in index.search("", None)] == ["one", "three"]
    assert index.remove_under("b") == ["b/c.py"]
    assert [e.name for e in index.search("o", None)] == []
    assert [e.name for e in index.search("t", None)] == ["three"]
    assert not index.remove("missing.py")


def test_symbol_index_find_matches_dotted_suffixes() -> None:
    index = SymbolIndex()
    index.replace("a.py", [entry("run", container="pkg.Job"), entry("run", container="Other"), entry("run")])
    assert [e.container for e in index.find("Job.run")] == ["pkg.Job"]
    assert [e.container for e in index.find("pkg/Job::run")] == ["pkg.Job"]
    assert len(index.find("run")) == 3
    assert index.find("ob.run") == []  # whole parts only
    assert index.find("run", kind="class") == []
