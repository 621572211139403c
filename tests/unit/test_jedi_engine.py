"""The jedi engine on a small multi-file project: navigation, completion, rename, symbols, diagnostics,
unsaved text, code-point positions, and never blocking the event loop."""

from __future__ import annotations

import ast
import asyncio
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jedi
import pytest

from gateway.analysis.jedi_engine import JediEngine
from gateway.analysis.models import CompletionItem, Hover, Location, TextEdit
from gateway.errors import InvalidParams
from gateway.workspace import DocumentSnapshot, Position, Range, TextChange, Workspace

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "pyproject"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    target = tmp_path / "project"
    shutil.copytree(FIXTURE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture
def workspace(root: Path) -> Workspace:
    return Workspace(root)


@pytest.fixture
def engine(workspace: Workspace) -> JediEngine:
    return JediEngine(workspace, asyncio.Semaphore(2))


def at(line: int, character: int) -> Position:
    return Position(line=line, character=character)


def find(text: str, needle: str, occurrence: int = 0, offset: int = 0) -> Position:
    """The position of the `occurrence`-th `needle` in `text` (plus `offset` code points)."""
    index = -1
    for _ in range(occurrence + 1):
        index = text.index(needle, index + 1)
    index += offset
    line = text.count("\n", 0, index)
    return at(line, index - (text.rfind("\n", 0, index) + 1))


def scratch(workspace: Workspace, rel: str, text: str) -> DocumentSnapshot:
    """A snapshot of a file written to disk for the test."""
    (workspace.root / rel).write_text(text, encoding="utf-8")
    return workspace.snapshot(rel)


def text_at(text: str, rng: Range) -> str:
    lines = text.split("\n")
    assert rng.start.line == rng.end.line
    return lines[rng.start.line][rng.start.character : rng.end.character]


def labels(items: list[CompletionItem] | None) -> list[str]:
    assert items is not None
    return [item.label for item in items]


def apply_edits(text: str, edits: list[TextEdit]) -> str:
    lines = text.split("\n")
    for edit in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        line = lines[edit.range.start.line]
        lines[edit.range.start.line] = (
            line[: edit.range.start.character] + edit.new_text + line[edit.range.end.character :]
        )
    return "\n".join(lines)


def spots(locations: list[Location] | None) -> list[tuple[str, int]]:
    assert locations is not None
    return sorted((loc.path, loc.range.start.line) for loc in locations)


# -- navigation ---------------------------------------------------------------------------------------


async def test_definition_follows_imports_into_another_file(engine: JediEngine, workspace: Workspace) -> None:
    report = workspace.snapshot("shop/report.py")
    call = find(report.text, "round_price(stock", offset=3)
    result = await engine.definition(report, call)
    assert result is not None and len(result) == 1
    pricing = (workspace.root / "shop/pricing.py").read_text()
    assert result[0].path == "shop/pricing.py"
    assert result[0].range.start == find(pricing, "round_price")
    assert text_at(pricing, result[0].range) == "round_price"


async def test_definition_outside_the_workspace_is_left_out(engine: JediEngine, workspace: Workspace) -> None:
    doc = scratch(workspace, "uses_os.py", "import os\nos.getcwd()\n")
    assert await engine.definition(doc, at(1, 5)) == []
    hover = await engine.hover(doc, at(1, 5))
    assert isinstance(hover, Hover) and "getcwd" in hover.contents  # the standard library still informs hover


async def test_references_count_across_files(engine: JediEngine, workspace: Workspace) -> None:
    pricing = workspace.snapshot("shop/pricing.py")
    definition = find(pricing.text, "round_price", offset=2)
    with_declaration = await engine.references(pricing, definition, include_declaration=True)
    assert spots(with_declaration) == [
        ("shop/models.py", 4),  # from .pricing import round_price, with_tax
        ("shop/models.py", 40),  # return round_price(...)
        ("shop/pricing.py", 5),  # def round_price
        ("shop/pricing.py", 13),  # return round_price(...)
        ("shop/report.py", 3),  # from shop.pricing import round_price
        ("shop/report.py", 10),  # unit = round_price(...)
    ]
    without = await engine.references(pricing, definition, include_declaration=False)
    assert spots(without) == [s for s in spots(with_declaration) if s != ("shop/pricing.py", 5)]


async def test_references_of_a_method_follow_inferred_types(engine: JediEngine, workspace: Workspace) -> None:
    models = workspace.snapshot("shop/models.py")
    result = await engine.references(models, find(models.text, "def add", offset=5), include_declaration=True)
    assert spots(result) == [("main.py", 9), ("main.py", 10), ("shop/models.py", 26)]


async def test_rename_edits_every_file_and_the_result_parses(engine: JediEngine, workspace: Workspace) -> None:
    pricing = workspace.snapshot("shop/pricing.py")
    edit = await engine.rename(pricing, find(pricing.text, "round_price"), "round_amount")
    assert edit is not None
    assert sorted(edit.changes) == ["shop/models.py", "shop/pricing.py", "shop/report.py"]
    assert edit.versions == dict.fromkeys(edit.changes)  # all from disk: no open document versions
    assert sum(len(edits) for edits in edit.changes.values()) == 6
    for rel, edits in edit.changes.items():
        before = (workspace.root / rel).read_text()
        assert all(text_at(before, e.range) == "round_price" and e.new_text == "round_amount" for e in edits)
        after = apply_edits(before, edits)
        ast.parse(after)
        assert "round_amount" in after and not re.search(r"\bround_price\b", after)


async def test_rename_pins_the_versions_of_open_documents(engine: JediEngine, workspace: Workspace) -> None:
    workspace.open("shop/models.py", None, version=7)
    pricing = workspace.snapshot("shop/pricing.py")
    edit = await engine.rename(pricing, find(pricing.text, "with_tax"), "with_vat")
    assert edit is not None
    assert edit.versions == {"shop/models.py": 7, "shop/pricing.py": None}


@pytest.mark.parametrize("bad", ["class", "None", "1st", "with-dash", "", "a b"])
async def test_rename_refuses_names_that_are_not_identifiers(
    engine: JediEngine, workspace: Workspace, bad: str
) -> None:
    pricing = workspace.snapshot("shop/pricing.py")
    with pytest.raises(InvalidParams):
        await engine.rename(pricing, find(pricing.text, "round_price"), bad)


async def test_rename_refuses_modules_and_symbols_outside_the_workspace(
    engine: JediEngine, workspace: Workspace
) -> None:
    doc = scratch(workspace, "uses_os.py", "import os\nprint(os.getcwd())\n")
    with pytest.raises(InvalidParams, match="outside the workspace"):
        await engine.rename(doc, at(1, 10), "cwd")
    report = workspace.snapshot("shop/report.py")
    with pytest.raises(InvalidParams, match="module"):
        await engine.rename(report, find(report.text, "pricing"), "prices")
    empty = await engine.rename(report, at(0, 1), "anything")  # in a docstring: nothing to rename
    assert empty is not None and empty.changes == {}


# -- completion, hover, signatures ---------------------------------------------------------------


async def test_completion_after_import_offers_modules_and_names(engine: JediEngine, workspace: Workspace) -> None:
    doc = scratch(workspace, "scratch.py", "from shop import \nimport sh\n")
    names = labels(await engine.complete(doc, at(0, 17)))
    assert {"models", "pricing", "report", "Item", "Stock"} <= set(names)

    items = await engine.complete(doc, at(1, 9))
    assert items is not None
    shop = next(item for item in items if item.label == "shop")
    assert shop.kind == "module"
    assert shop.edit == TextEdit(range=Range(start=at(1, 7), end=at(1, 9)), new_text="shop")


async def test_completion_after_a_dot_offers_methods(engine: JediEngine, workspace: Workspace) -> None:
    doc = scratch(workspace, "scratch.py", "from shop.models import Stock\nstock = Stock()\nstock.\nstock.re\n")
    items = await engine.complete(doc, at(2, 6))
    assert items is not None
    by_label = {item.label: item for item in items}
    assert {"add", "remove", "value", "counts", "items"} <= set(by_label)
    assert by_label["add"].kind == "method"
    assert by_label["add"].detail == "def add"
    assert by_label["add"].documentation is not None and "new count" in by_label["add"].documentation
    assert [item.sort_text for item in items] == sorted(item.sort_text or "" for item in items)

    typed = await engine.complete(doc, at(3, 8))
    assert labels(typed) == ["remove"]
    assert typed is not None and typed[0].edit == TextEdit(range=Range(start=at(3, 6), end=at(3, 8)), new_text="remove")


async def test_completion_documentation_only_for_the_first_items(workspace: Workspace) -> None:
    engine = JediEngine(workspace, asyncio.Semaphore(1), completion_docs=2)
    doc = scratch(workspace, "scratch.py", "from shop.models import Stock\nStock().\n")
    items = await engine.complete(doc, at(1, 8))
    assert items is not None and len(items) > 2
    assert all(item.documentation is None for item in items[2:])


async def test_hover_shows_the_signature_and_the_docstring(engine: JediEngine, workspace: Workspace) -> None:
    report = workspace.snapshot("shop/report.py")
    pos = find(report.text, "round_price(stock", offset=2)
    hover = await engine.hover(report, pos)
    assert isinstance(hover, Hover)
    assert hover.contents.startswith("```python\ndef round_price(value: float, places: int=2) -> float\n```")
    assert "Round a price to `places` decimals" in hover.contents
    assert hover.range == Range(start=at(pos.line, pos.character - 2), end=at(pos.line, pos.character + 9))

    assert await engine.hover(report, find(report.text, "One line per item")) is False
    assert await engine.hover(report, at(4, 0)) is False  # an empty line


async def test_signature_help_marks_the_active_parameter(engine: JediEngine, workspace: Workspace) -> None:
    doc = scratch(workspace, "scratch.py", "from shop.pricing import round_price\nround_price(1.0, \n")
    help_ = await engine.signature_help(doc, at(1, 17))
    assert help_ is not None and help_ is not False
    (signature,) = help_.signatures
    assert signature.label == "round_price(value: float, places: int=2) -> float"
    assert [p.label for p in signature.parameters] == ["value: float", "places: int=2"]
    assert signature.active_parameter == 1
    assert signature.documentation is not None and "Round a price" in signature.documentation
    assert await engine.signature_help(doc, at(0, 3)) is False


# -- symbols ----------------------------------------------------------------------------------------


async def test_document_symbols_nest_methods_in_classes(engine: JediEngine, workspace: Workspace) -> None:
    models = workspace.snapshot("shop/models.py")
    symbols = await engine.document_symbols(models)
    assert symbols is not None
    assert [(s.name, s.kind) for s in symbols] == [("Item", "class"), ("Stock", "class")]  # imports left out
    item, stock = symbols
    assert [(c.name, c.kind) for c in item.children] == [("__init__", "method"), ("total", "method")]
    assert [c.name for c in stock.children] == ["__init__", "add", "remove", "value"]
    add = stock.children[1]
    assert add.detail == "(self, item: Item, quantity: int=1) -> int"
    assert add.selection_range.start == find(models.text, "add(")
    assert add.range.start == find(models.text, "def add")
    assert add.range.end.line == find(models.text, "return self.counts[item.name]").line
    assert stock.range.start.line <= add.range.start.line and add.range.end.line <= stock.range.end.line

    pricing = await engine.document_symbols(workspace.snapshot("shop/pricing.py"))
    assert pricing is not None
    assert [(s.name, s.kind) for s in pricing] == [
        ("TAX_RATE", "constant"),
        ("round_price", "function"),
        ("with_tax", "function"),
    ]
    assert pricing[1].children == []  # locals are not symbols


async def test_document_symbols_kinds_for_properties_fields_and_nested_scopes(
    engine: JediEngine, workspace: Workspace
) -> None:
    code = (
        "import os\n"
        "squares = [x * x for x in range(3)]\n"
        "for i in range(2):\n"
        "    pass\n"
        "class A:\n"
        "    limit: int = 3\n"
        "    @property\n"
        "    def size(self) -> int:\n"
        "        return 1\n"
        "    async def run(self):\n"
        "        def inner():\n"
        "            pass\n"
        "        local = 2\n"
        "        return inner, local\n"
    )
    symbols = await engine.document_symbols(scratch(workspace, "kinds.py", code))
    assert symbols is not None

    def shape(items: list[Any]) -> list[Any]:
        return [(s.name, s.kind, shape(s.children)) for s in items]

    assert shape(symbols) == [
        ("squares", "variable", []),
        (
            "A",
            "class",
            [
                ("limit", "field", []),
                ("size", "property", []),
                ("run", "method", [("inner", "function", [])]),
            ],
        ),
    ]


async def test_find_symbol_by_name_and_by_dotted_path(engine: JediEngine) -> None:
    (add,) = await engine.find_symbol("Stock.add", None) or []
    assert (add.name, add.kind, add.container, add.location.path) == ("add", "method", "Stock", "shop/models.py")
    assert add.location.range.start == at(26, 4) and add.location.range.end.line == 30  # the whole definition

    (function,) = await engine.find_symbol("round_price", None) or []
    assert (function.kind, function.container, function.location.path) == ("function", None, "shop/pricing.py")
    assert await engine.find_symbol("pricing.round_price", None) == [function]
    assert await engine.find_symbol("shop.pricing.round_price", "function") == [function]
    assert await engine.find_symbol("round_price", "class") == []
    assert await engine.find_symbol("Item.add", None) == []
    assert await engine.find_symbol("ROUND_PRICE", None) == []  # names match case-sensitively
    assert [s.container for s in await engine.find_symbol("__init__", "method") or []] == ["Item", "Stock"]
    with pytest.raises(InvalidParams):
        await engine.find_symbol("not a name", None)


async def test_workspace_symbols_by_prefix(engine: JediEngine) -> None:
    found = await engine.workspace_symbols("su", None)
    assert found is not None
    assert [(s.name, s.kind, s.location.path) for s in found] == [("summarize", "function", "shop/report.py")]
    assert {s.name for s in await engine.workspace_symbols("", "python") or []} >= {"Stock", "add", "TAX_RATE"}
    assert await engine.workspace_symbols("su", "go") is None


# -- diagnostics ----------------------------------------------------------------------------------


async def test_diagnostics_syntax_error(engine: JediEngine, workspace: Workspace) -> None:
    result = await engine.diagnostics(scratch(workspace, "broken.py", "def f(:\n    return 1\n"))
    assert result is not None and result
    assert all(d.source == "jedi" and d.severity == "error" for d in result)
    assert result[0].range.start == at(0, 6)
    assert result[0].code == "SyntaxError"


async def test_diagnostics_undefined_name_and_unused_import(engine: JediEngine, workspace: Workspace) -> None:
    doc = scratch(workspace, "lint.py", "import os\nimport sys\n\nprint(sys.argv, missing_name)\n")
    result = await engine.diagnostics(doc)
    assert result is not None
    assert [(d.code, d.severity, d.source) for d in result] == [
        ("UnusedImport", "warning", "pyflakes"),
        ("UndefinedName", "error", "pyflakes"),
    ]
    unused, undefined = result
    assert text_at(doc.text, unused.range) == "os" and "'os' imported but unused" in unused.message
    assert text_at(doc.text, undefined.range) == "missing_name" and "undefined name" in undefined.message
    assert await engine.diagnostics(workspace.snapshot("shop/models.py")) == []


async def test_diagnostics_of_unsaved_text(engine: JediEngine, workspace: Workspace) -> None:
    workspace.open("shop/pricing.py", None, version=1)
    workspace.change("shop/pricing.py", [TextChange(range=Range(start=at(0, 0), end=at(0, 0)), text="import json\n")])
    result = await engine.diagnostics(workspace.snapshot("shop/pricing.py"))
    assert result is not None and [(d.code, d.range.start.line) for d in result] == [("UnusedImport", 0)]


# -- unsaved text -------------------------------------------------------------------------------------

DISCOUNT = '\n\ndef discount(value: float) -> float:\n    """Ten percent off."""\n    return round_price(value * 0.9)\n'


def add_discount(workspace: Workspace) -> None:
    """Open shop/pricing.py and add `discount` in unsaved text only."""
    pricing = workspace.open("shop/pricing.py", None, version=1)
    end = pricing.position_at(len(pricing.text))
    workspace.change("shop/pricing.py", [TextChange(range=Range(start=end, end=end), text=DISCOUNT)], version=2)


async def test_unsaved_function_is_found_in_its_own_document(engine: JediEngine, workspace: Workspace) -> None:
    add_discount(workspace)
    edited = workspace.snapshot("shop/pricing.py")
    workspace.change("shop/pricing.py", [TextChange(range=None, text=edited.text + "disc\n")], version=3)
    doc = workspace.snapshot("shop/pricing.py")
    last = len(doc.text.split("\n")) - 2
    assert "discount" in labels(await engine.complete(doc, at(last, 4)))
    (definition,) = await engine.definition(doc, find(doc.text, "discount(value")) or []
    assert definition.path == "shop/pricing.py" and definition.range.start == find(doc.text, "discount")
    hover = await engine.hover(doc, find(doc.text, "discount(value"))
    assert isinstance(hover, Hover) and "Ten percent off." in hover.contents


async def test_unsaved_function_is_seen_from_other_files(engine: JediEngine, workspace: Workspace) -> None:
    add_discount(workspace)
    user = scratch(workspace, "user.py", "from shop.pricing import discount\nprint(discount(10.0))\n")
    completing = scratch(workspace, "completing.py", "from shop.pricing import di\n")

    assert "discount" in labels(await engine.complete(completing, at(0, 27)))
    definition = await engine.definition(user, at(1, 8))
    pricing = workspace.snapshot("shop/pricing.py").text
    assert definition == [
        Location(
            path="shop/pricing.py",
            range=Range(start=find(pricing, "discount"), end=find(pricing, "discount", offset=8)),
        )
    ]
    hover = await engine.hover(user, at(1, 8))
    assert isinstance(hover, Hover)
    assert "def discount(value: float) -> float" in hover.contents and "Ten percent off." in hover.contents

    refs = await engine.references(user, at(1, 8), include_declaration=True)
    assert spots(refs) == [("shop/pricing.py", find(pricing, "discount").line), ("user.py", 0), ("user.py", 1)]
    # The unsaved use of round_price in the new function is renamed too, against the open version.
    edit = await engine.rename(workspace.snapshot("shop/pricing.py"), find(pricing, "round_price"), "rounded")
    assert edit is not None and edit.versions["shop/pricing.py"] == 2
    assert len(edit.changes["shop/pricing.py"]) == 3  # the definition, with_tax's use, discount's use

    # Closed without saving: the file on disk is the truth again.
    workspace.close("shop/pricing.py")
    assert await engine.definition(user, at(1, 8)) == []
    assert "discount" not in labels(await engine.complete(completing, at(0, 27)))


async def test_references_include_uses_only_in_another_documents_unsaved_text(
    engine: JediEngine, workspace: Workspace
) -> None:
    report = workspace.open("shop/report.py", None, version=4)
    end = report.position_at(len(report.text))
    extra = (
        "\n\ndef taxed(value: float) -> float:\n    from shop.pricing import with_tax\n\n    return with_tax(value)\n"
    )
    workspace.change("shop/report.py", [TextChange(range=Range(start=end, end=end), text=extra)], version=5)
    pricing = workspace.snapshot("shop/pricing.py")
    refs = await engine.references(pricing, find(pricing.text, "with_tax"), include_declaration=False)
    report_text = workspace.snapshot("shop/report.py").text
    assert spots(refs) == sorted(
        [
            ("shop/models.py", 4),
            ("shop/models.py", 16),
            (  # the import and the call, both only in unsaved text
                "shop/report.py",
                find(report_text, "import with_tax").line,
            ),
            ("shop/report.py", find(report_text, "return with_tax").line),
        ]
    )
    edit = await engine.rename(pricing, find(pricing.text, "with_tax"), "with_vat")
    assert edit is not None and edit.versions["shop/report.py"] == 5
    assert all(text_at(report_text, e.range) == "with_tax" for e in edit.changes["shop/report.py"])


# -- positions count code points -----------------------------------------------------------------


async def test_positions_after_emoji_and_cjk_count_code_points(engine: JediEngine, workspace: Workspace) -> None:
    code = (
        "from shop.pricing import round_price\n"
        'label = "😀漢字👍🏽"; total = round_price(1.0)\n'
        'note = "𠀀😀"; round_price(2.0, 漢字)\n'
        'tag = "😀"; stock.re\n'
    )
    doc = scratch(workspace, "emoji.py", code)
    call = find(code, "round_price(1.0", offset=4)
    prefix = code.split("\n")[1][: call.character]
    assert (call.character, len(prefix.encode("utf-16-le")) // 2, len(prefix.encode())) == (29, 32, 42)
    (definition,) = await engine.definition(doc, call) or []
    assert definition.path == "shop/pricing.py"

    refs = await engine.references(doc, call, include_declaration=False)
    assert refs is not None
    mine = [r.range for r in refs if r.path == "emoji.py"]
    assert [text_at(code, r) for r in mine] == ["round_price"] * 3

    hover = await engine.hover(doc, call)
    assert isinstance(hover, Hover) and hover.range is not None and text_at(code, hover.range) == "round_price"

    help_ = await engine.signature_help(doc, find(code, "漢字)"))
    assert help_ and help_.signatures[0].active_parameter == 1

    diagnostics = await engine.diagnostics(doc)
    assert diagnostics is not None
    assert sorted(text_at(code, d.range) for d in diagnostics if d.code == "UndefinedName") == ["stock", "漢字"]

    doc2 = scratch(workspace, "emoji2.py", 'from shop.models import Stock\ns = "😀漢"; Stock().re\n')
    items = await engine.complete(doc2, find(doc2.text, ".re", offset=3))
    assert labels(items) == ["remove"]
    assert items is not None and items[0].edit is not None
    assert text_at(doc2.text, items[0].edit.range) == "re"


# -- the event loop, the limiter, what is not offered ------------------------------------------------


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Makes jedi's completion wait (in its worker thread) until the test opens the gate."""
    entered, gate_open = threading.Event(), threading.Event()
    original = jedi.Script.complete

    def held(self: Any, *args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert gate_open.wait(10), "the gate was never opened: the event loop was blocked"
        return original(self, *args, **kwargs)

    monkeypatch.setattr(jedi.Script, "complete", held)
    yield entered, gate_open
    gate_open.set()


async def test_a_call_does_not_block_the_event_loop(
    engine: JediEngine, workspace: Workspace, gate: tuple[threading.Event, threading.Event]
) -> None:
    entered, gate_open = gate
    doc = scratch(workspace, "scratch.py", "from shop.models import Stock\nStock().\n")
    call = asyncio.ensure_future(engine.complete(doc, at(1, 8)))
    ticks = 0
    async with asyncio.timeout(10):
        assert await asyncio.to_thread(entered.wait, 10)  # the worker is inside jedi now
        while ticks < 100:  # ... and this loop keeps running meanwhile
            ticks += 1
            await asyncio.sleep(0)
        assert not call.done()
        gate_open.set()  # only this loop can open the gate: had it been blocked, jedi would wait forever
        assert "add" in labels(await call)


async def test_a_cancelled_call_keeps_its_slot_until_the_thread_ends(
    workspace: Workspace, gate: tuple[threading.Event, threading.Event]
) -> None:
    entered, gate_open = gate
    limiter = asyncio.Semaphore(1)
    engine = JediEngine(workspace, limiter)
    doc = scratch(workspace, "scratch.py", "from shop.models import Stock\nStock().\n")
    call = asyncio.ensure_future(engine.complete(doc, at(1, 8)))
    async with asyncio.timeout(10):
        assert await asyncio.to_thread(entered.wait, 10)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert limiter.locked()  # the worker is still inside jedi
        second = asyncio.ensure_future(engine.hover(doc, at(0, 26)))
        await asyncio.sleep(0)
        assert not second.done()
        gate_open.set()
        async with limiter:  # released once the thread has really finished
            pass
        hover = await second
    assert isinstance(hover, Hover) and "class Stock" in hover.contents


async def test_only_python_and_only_what_jedi_offers(engine: JediEngine, workspace: Workspace) -> None:
    assert engine.handles("a.py", "plaintext") and engine.handles("x/stub.pyi", "") and engine.handles("u", "python")
    assert not engine.handles("main.go", "go")
    go = DocumentSnapshot("main.go", "package main\n", None, "go")
    assert await engine.complete(go, at(0, 0)) is None
    assert await engine.diagnostics(go) is None
    assert await engine.document_symbols(go) is None
    main = workspace.snapshot("main.py")
    assert await engine.implementations(main, at(6, 5)) is None
    assert await engine.call_hierarchy(main, at(6, 5), "incoming") is None


async def test_references_to_short_names_reach_other_files(engine: JediEngine, workspace: Workspace) -> None:
    # jedi alone does not search other files for names of one or two characters.
    scratch(workspace, "shop/checks.py", "def ok(value: float) -> bool:\n    return value >= 0\n")
    scratch(workspace, "a.py", "from shop.checks import ok\n\nprint(ok(1.0), ok(2.0))\n")
    user = scratch(workspace, "b.py", "from shop import checks\n\nassert checks.ok(3.0)\n")
    refs = await engine.references(user, find(user.text, "ok("), include_declaration=True)
    assert spots(refs) == [("a.py", 0), ("a.py", 2), ("a.py", 2), ("b.py", 2), ("shop/checks.py", 0)]


async def test_references_past_jedis_limit_of_thirty_files(engine: JediEngine, workspace: Workspace) -> None:
    for i in range(35):
        scratch(workspace, f"user_{i:02d}.py", f"from shop.pricing import round_price\n\nX{i} = round_price({i}.5)\n")
    pricing = workspace.snapshot("shop/pricing.py")
    refs = await engine.references(pricing, find(pricing.text, "round_price"), include_declaration=True)
    assert refs is not None and len(refs) == 6 + 2 * 35
    edit = await engine.rename(pricing, find(pricing.text, "round_price"), "rounded")
    assert edit is not None and len(edit.changes) == 3 + 35


async def test_close_forgets_unsaved_text(engine: JediEngine, workspace: Workspace) -> None:
    add_discount(workspace)
    user = scratch(workspace, "user.py", "from shop.pricing import discount\nprint(discount(10.0))\n")
    assert await engine.definition(user, at(1, 8)) != []
    await engine.close()
    other = JediEngine(Workspace(workspace.root), asyncio.Semaphore(1))  # sees only the files on disk
    assert await other.definition(user, at(1, 8)) == []
