"""Routing of analysis operations to engines, empty-answer reasons, pagination, apply_edit."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from gateway.analysis.engine import Engine, EngineUnavailable
from gateway.analysis.models import Hover, Location, SymbolInfo
from gateway.analysis.service import AnalysisService
from gateway.capabilities import analysis, documents
from gateway.errors import ContentModified, InvalidParams
from gateway.events import InMemoryBus
from gateway.execution import CallContext, Core
from gateway.registry import Registry
from gateway.workspace import DocumentSnapshot, Position, Range, Workspace


def loc(path: str, line: int) -> Location:
    return Location(
        path=path, range=Range(start=Position(line=line, character=0), end=Position(line=line, character=1))
    )


class Fake(Engine):
    def __init__(
        self,
        name: str,
        langs: set[str],
        *,
        hover: str | Literal[False] | None = None,
        refs: int | None = None,
        unavailable: bool = False,
    ) -> None:
        self.name = name
        self.langs = langs
        self._hover = hover
        self._refs = refs
        self._unavailable = unavailable
        self.opened: list[str] = []

    def handles(self, path: str, language_id: str) -> bool:
        return language_id in self.langs

    def document_opened(self, snapshot: DocumentSnapshot) -> None:
        self.opened.append(snapshot.path)

    async def hover(self, doc: DocumentSnapshot, pos: Position) -> Hover | Literal[False] | None:
        if self._unavailable:
            raise EngineUnavailable("server_starting", f"{self.name} is starting")
        if self._hover is None or self._hover is False:
            return self._hover
        return Hover(contents=self._hover)

    async def references(
        self, doc: DocumentSnapshot, pos: Position, include_declaration: bool
    ) -> list[Location] | None:
        return None if self._refs is None else [loc(doc.path, i) for i in range(self._refs)]

    async def find_symbol(self, name_path: str, kind: str | None) -> list[SymbolInfo] | None:
        return [SymbolInfo(name=name_path, kind="function", location=loc("a.py", 1))]


def build(tmp_path: Path, engines: list[Engine], max_results: int = 2000) -> Core:
    (tmp_path / "a.py").write_text("x = 1\ny = 2\n")
    (tmp_path / "b.unknown").write_text("?")
    registry = Registry()
    workspace = Workspace(tmp_path)
    documents.register(registry)
    analysis.register(registry, AnalysisService(workspace, engines), max_results)
    return Core(registry, workspace, InMemoryBus())


async def ask(core: Core, name: str, **params: object) -> dict:  # type: ignore[type-arg]
    result = await core.execute(CallContext(), name, params)
    return result.model_dump()


async def test_first_engine_that_offers_the_operation_answers(tmp_path: Path) -> None:
    core = build(tmp_path, [Fake("lsp", {"python"}), Fake("jedi", {"python"}, hover="doc"), Fake("ts", {"python"})])
    result = await ask(core, "hover", path="a.py", line=0, character=0)
    assert result["hover"]["contents"] == "doc" and result["engine"] == "jedi" and result["reason"] is None


async def test_a_starting_server_is_skipped_and_its_reason_kept_when_nobody_answers(tmp_path: Path) -> None:
    core = build(tmp_path, [Fake("lsp", {"python"}, unavailable=True), Fake("jedi", {"python"}, hover="doc")])
    assert (await ask(core, "hover", path="a.py", line=0, character=0))["engine"] == "jedi"
    core = build(tmp_path, [Fake("lsp", {"python"}, unavailable=True)])
    result = await ask(core, "hover", path="a.py", line=0, character=0)
    assert result["hover"] is None and result["reason"] == "server_starting" and "starting" in result["message"]


async def test_empty_answers_say_why(tmp_path: Path) -> None:
    core = build(tmp_path, [Fake("jedi", {"python"}, hover=False)])
    assert (await ask(core, "hover", path="a.py", line=0, character=0))["reason"] == "no_symbol"
    assert (await ask(core, "hover", path="b.unknown", line=0, character=0))["reason"] == "language_not_configured"
    assert (await ask(core, "definition", path="a.py", line=0, character=0))["reason"] == "unsupported"


async def test_thousands_of_references_come_back_in_pages_under_a_cap(tmp_path: Path) -> None:
    core = build(tmp_path, [Fake("jedi", {"python"}, refs=5000)], max_results=3000)
    seen = []
    cursor = None
    while True:
        page = await ask(core, "references", path="a.py", line=0, character=0, limit=1000, cursor=cursor)
        seen += [item["range"]["start"]["line"] for item in page["items"]]
        assert page["total"] == 3000 and page["truncated"] is True
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(3000))


async def test_documents_opened_reach_the_engines_that_handle_them(tmp_path: Path) -> None:
    py, other = Fake("jedi", {"python"}), Fake("ts", {"go"})
    core = build(tmp_path, [py, other])
    await ask(core, "open_document", path="a.py")
    assert py.opened == ["a.py"] and other.opened == []


async def test_find_symbol_merges_engines_without_duplicates(tmp_path: Path) -> None:
    core = build(tmp_path, [Fake("a", {"python"}), Fake("b", {"go"})])
    result = await ask(core, "find_symbol", name_path="Thing.run")
    assert [s["name"] for s in result["items"]] == ["Thing.run"] and result["engine"] == "a,b"


def edit(path: str, line: int, start: int, end: int, text: str) -> dict:  # type: ignore[type-arg]
    return {
        "range": {"start": {"line": line, "character": start}, "end": {"line": line, "character": end}},
        "new_text": text,
    }


async def test_apply_edit_checks_versions_then_applies_all_or_nothing(tmp_path: Path) -> None:
    core = build(tmp_path, [])
    (tmp_path / "c.py").write_text("x = x + 1\n")
    await ask(core, "open_document", path="a.py", version=3)
    stale = {
        "changes": {"a.py": [edit("a.py", 0, 0, 1, "z")], "c.py": [edit("c.py", 0, 0, 1, "z")]},
        "versions": {"a.py": 2, "c.py": None},
    }
    with pytest.raises(ContentModified):
        await ask(core, "apply_edit", edit=stale)
    assert (tmp_path / "c.py").read_text() == "x = x + 1\n"  # nothing applied
    good = {**stale, "versions": {"a.py": 3, "c.py": None}}
    good["changes"]["c.py"] = [edit("c.py", 0, 0, 1, "z"), edit("c.py", 0, 4, 5, "z")]
    result = await ask(core, "apply_edit", edit=good)
    assert result == {"applied": True, "files": ["a.py", "c.py"]}
    assert (tmp_path / "c.py").read_text() == "z = z + 1\n"
    doc = await ask(core, "read_document", path="a.py")
    assert doc["text"] == "z = 1\ny = 2\n" and doc["version"] == 4
    assert (tmp_path / "a.py").read_text() == "x = 1\ny = 2\n"  # open documents change in the store only


async def test_apply_edit_refuses_overlaps_and_paths_outside(tmp_path: Path) -> None:
    core = build(tmp_path, [])
    overlapping = {"changes": {"a.py": [edit("a.py", 0, 0, 3, "a"), edit("a.py", 0, 2, 4, "b")]}}
    with pytest.raises(InvalidParams):
        await ask(core, "apply_edit", edit=overlapping)
    outside = {"changes": {"../x.py": [edit("../x.py", 0, 0, 1, "a")]}}
    with pytest.raises(Exception, match="leaves the workspace root"):
        await ask(core, "apply_edit", edit=outside)


async def test_apply_edit_keeps_crlf_and_refuses_a_stale_disk_edit(tmp_path: Path) -> None:
    core = build(tmp_path, [])
    (tmp_path / "w.py").write_bytes(b"a = 1\r\nb = 2\r\n")
    change = {"changes": {"w.py": [edit("w.py", 1, 0, 1, "c")]}, "hashes": {}}
    from gateway.capabilities.analysis import text_hash

    change["hashes"] = {"w.py": text_hash("a = 1\r\nb = 2\r\n")}
    await ask(core, "apply_edit", edit=change)
    assert (tmp_path / "w.py").read_bytes() == b"a = 1\r\nc = 2\r\n"
    with pytest.raises(ContentModified, match="changed on disk"):
        await ask(core, "apply_edit", edit=change)
