"""Code intelligence through REST against a real `gateway serve`: the same answers every door gets."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.server import ServerProcess, start_gateway

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "pyproject"
TS_SOURCE = """export interface Shape { area(): number }
export class Circle implements Shape {
  constructor(private r: number) {}
  area(): number { return Math.PI * this.r * this.r }
}
export function total(shapes: Shape[]): number { return shapes.reduce((s, x) => s + x.area(), 0) }
"""
GO_SOURCE = (
    "package geo\n\ntype Point struct{ X, Y float64 }\n\nfunc (p Point) Norm() float64 { return p.X*p.X + p.Y*p.Y }\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("analysis")
    shutil.copytree(FIXTURE, root, dirs_exist_ok=True)
    (root / "web").mkdir()
    (root / "web" / "shapes.ts").write_text(TS_SOURCE)
    (root / "geo.go").write_text(GO_SOURCE)
    (root / "bad.ts").write_text("export function broken( {\n  return 1\n")
    server = start_gateway(root)
    yield server
    assert server.stop() == 0


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(server.url, timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


async def call(http: aiohttp.ClientSession, name: str, **params: Any) -> dict[str, Any]:
    async with http.post(f"/v1/capabilities/{name}", json=params) as resp:
        body: dict[str, Any] = await resp.json(content_type=None)
        assert resp.status == 200, body
        return body


def position(root: Path, rel: str, needle: str, line: int) -> dict[str, Any]:
    text = (root / rel).read_text().splitlines()[line]
    return {"path": rel, "line": line, "character": text.index(needle) + 1}


async def test_python_definition_references_hover_across_files(
    http: aiohttp.ClientSession, server: ServerProcess
) -> None:
    root = server.workspace
    found = await call(http, "definition", **position(root, "main.py", "summarize", 3))
    assert found["engine"] == "jedi"
    assert [loc["path"] for loc in found["items"]] == ["shop/report.py"]

    refs = await call(http, "references", **position(root, "shop/pricing.py", "round_price", 5))
    assert refs["total"] == 6 and {loc["path"] for loc in refs["items"]} >= {"shop/pricing.py"}
    assert len({loc["path"] for loc in refs["items"]}) >= 2

    hover = await call(http, "hover", **position(root, "shop/pricing.py", "round_price", 5))
    assert "def round_price" in hover["hover"]["contents"] and "Round a price" in hover["hover"]["contents"]

    symbols = await call(http, "find_symbol", name_path="Stock.add")
    assert [(s["name"], s["container"], s["location"]["path"]) for s in symbols["items"]][:1] == [
        ("add", "Stock", "shop/models.py")
    ]


async def test_rename_then_apply_edit(http: aiohttp.ClientSession, server: ServerProcess) -> None:
    root = server.workspace
    renamed = await call(http, "rename", new_name="with_vat", **position(root, "shop/pricing.py", "with_tax", 11))
    edit = renamed["edit"]
    assert set(edit["changes"]) >= {"shop/pricing.py"}
    applied = await call(http, "apply_edit", edit=edit)
    assert applied["applied"] is True
    assert "def with_vat" in (root / "shop" / "pricing.py").read_text()
    async with http.post("/v1/capabilities/apply_edit", json={"edit": edit}) as resp:
        assert resp.status in (409, 422)  # applying the same edit twice does not match the text any more


async def test_unsaved_edits_and_diagnostics(http: aiohttp.ClientSession, server: ServerProcess) -> None:
    text = (server.workspace / "main.py").read_text()
    await call(http, "open_document", path="main.py", text=text, version=1)
    added = "\n\ndef shiny_new_helper(count: int) -> int:\n    return count + undefined_thing\n"
    await call(http, "change_document", path="main.py", version=2, changes=[{"text": text + added}])
    lines = (text + added).splitlines()
    line = next(i for i, s in enumerate(lines) if "def shiny_new_helper" in s)
    hover = await call(http, "hover", path="main.py", line=line, character=6)
    assert "shiny_new_helper" in hover["hover"]["contents"]
    found = await call(http, "complete", path="main.py", line=len(lines) - 1, character=len("    return count"))
    assert found["items"]
    diags = await call(http, "diagnostics", path="main.py")
    assert diags["version"] == 2
    assert any("undefined_thing" in d["message"] for d in diags["items"])
    await call(http, "change_document", path="main.py", version=3, changes=[{"text": "def f(:\n"}])
    diags = await call(http, "diagnostics", path="main.py")
    assert any(d["severity"] == "error" for d in diags["items"])
    await call(http, "close_document", path="main.py")


async def test_completion_after_import(http: aiohttp.ClientSession) -> None:
    await call(http, "open_document", path="scratch.py", text="from shop import \n", version=1)
    found = await call(http, "complete", path="scratch.py", line=0, character=len("from shop import "), limit=200)
    labels = {item["label"] for item in found["items"]}
    assert {"Item", "Stock"} <= labels
    await call(http, "close_document", path="scratch.py")


async def test_tree_sitter_languages(http: aiohttp.ClientSession) -> None:
    outline = await call(http, "document_symbols", path="web/shapes.ts")
    assert outline["engine"] == "tree-sitter"
    names = {s["name"]: s for s in outline["items"]}
    assert {"Shape", "Circle", "total"} <= set(names)
    assert "area" in {c["name"] for c in names["Circle"]["children"]}
    bad = await call(http, "diagnostics", path="bad.ts")
    assert bad["items"] and bad["items"][0]["source"] == "tree-sitter"
    # the workspace index is built in the background; wait for it, bounded
    async with asyncio.timeout(30):
        while True:
            found = await call(http, "find_symbol", name_path="Point.Norm")
            if found["items"] or found["reason"] != "server_starting":
                break
            await asyncio.sleep(0.05)  # bounded poll while the index is being built
    assert [(s["name"], s["location"]["path"]) for s in found["items"]] == [("Norm", "geo.go")]


async def test_empty_answers_say_why(http: aiohttp.ClientSession, server: ServerProcess) -> None:
    (server.workspace / "notes.unknownext").write_text("hello")
    result = await call(http, "hover", path="notes.unknownext", line=0, character=1)
    assert result["hover"] is None and result["reason"] == "language_not_configured"
    result = await call(http, "hover", path="main.py", line=1, character=0)
    assert result["hover"] is None and result["reason"] == "no_symbol"
    result = await call(http, "implementations", path="main.py", line=3, character=6)
    assert result["items"] == [] and result["reason"] in ("unsupported", "no_symbol")
