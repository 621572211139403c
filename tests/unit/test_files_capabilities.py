"""list_files, read_file and search: .gitignore, globs, pages, open documents, limits, progress, cancel."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway.capabilities.files import ListFilesResult, ReadFileResult, SearchResult, register
from gateway.config import LimitsConfig
from gateway.errors import Cancelled, InvalidParams, NotFound, PathOutsideRoot
from gateway.events import InMemoryBus
from gateway.execution import CallContext, Core, ProgressReport
from gateway.registry import Registry
from gateway.workspace import Workspace


def make_core(root: Path, limits: LimitsConfig | None = None) -> Core:
    registry = Registry()
    register(registry, limits or LimitsConfig())
    return Core(registry, Workspace(root), InMemoryBus())


def write(root: Path, files: Mapping[str, str | bytes]) -> None:
    for rel, content in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_bytes(content.encode())


async def list_files(core: Core, **params: Any) -> ListFilesResult:
    result = await core.execute(CallContext(), "list_files", params)
    assert isinstance(result, ListFilesResult)
    return result


async def read_file(core: Core, **params: Any) -> ReadFileResult:
    result = await core.execute(CallContext(), "read_file", params)
    assert isinstance(result, ReadFileResult)
    return result


async def search(core: Core, call: CallContext | None = None, **params: Any) -> SearchResult:
    result = await core.execute(call or CallContext(), "search", params)
    assert isinstance(result, SearchResult)
    return result


async def all_paths(core: Core, **params: Any) -> list[str]:
    return [entry.path for entry in (await list_files(core, **params)).items]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    return workspace


@pytest.fixture
def ignored_tree(root: Path) -> Path:
    write(
        root,
        {
            ".gitignore": "*.log\nbuild/\n",
            "a.py": "print('a')\n",
            "debug.log": "noise\n",
            "build/out.js": "x\n",
            "build/.gitignore": "!*\n",
            "build/keep.js": "x\n",
            "pkg/.gitignore": "secret.txt\n!important.log\n",
            "pkg/mod.py": "x = 1\n",
            "pkg/secret.txt": "hidden\n",
            "pkg/important.log": "kept by a nested negation\n",
            "pkg/deep/secret.txt": "hidden too\n",
            "other/secret.txt": "not covered by pkg/.gitignore\n",
            ".git/config": "[core]\n",
            ".git/HEAD": "ref: refs/heads/main\n",
        },
    )
    return root


# -- list_files -------------------------------------------------------------------------------------------
async def test_list_files_respects_root_and_nested_gitignore(ignored_tree: Path) -> None:
    core = make_core(ignored_tree)
    paths = await all_paths(core)
    assert sorted(paths) == sorted(
        [
            ".gitignore",
            "a.py",
            "other/secret.txt",
            "pkg/.gitignore",
            "pkg/important.log",
            "pkg/mod.py",
        ]
    )


async def test_list_files_include_ignored_lists_everything_but_dot_git(ignored_tree: Path) -> None:
    core = make_core(ignored_tree)
    paths = await all_paths(core, include_ignored=True)
    assert "debug.log" in paths
    assert "build/out.js" in paths
    assert "pkg/secret.txt" in paths
    assert "pkg/deep/secret.txt" in paths
    assert not [p for p in paths if p.startswith(".git/")]
    result = await list_files(core, include_ignored=True)
    assert result.total == len(paths) == 12


async def test_list_files_reports_sizes(root: Path) -> None:
    write(root, {"five.txt": "12345", "empty.txt": ""})
    result = await list_files(make_core(root))
    assert {e.path: e.size for e in result.items} == {"five.txt": 5, "empty.txt": 0}


async def test_list_files_glob_matches_basename_anywhere_or_an_anchored_path(root: Path) -> None:
    write(
        root,
        {
            "a.py": "",
            "src/b.py": "",
            "src/web/c.ts": "",
            "src/web/deep/d.ts": "",
            "lib/e.ts": "",
            "README.md": "",
        },
    )
    core = make_core(root)
    assert sorted(await all_paths(core, glob="*.py")) == ["a.py", "src/b.py"]
    assert sorted(await all_paths(core, glob="src/**/*.ts")) == ["src/web/c.ts", "src/web/deep/d.ts"]
    assert await all_paths(core, glob="*.rs") == []


async def test_list_files_glob_and_gitignore_combine(ignored_tree: Path) -> None:
    core = make_core(ignored_tree)
    assert await all_paths(core, glob="*.log") == ["pkg/important.log"]
    assert sorted(await all_paths(core, glob="*.log", include_ignored=True)) == ["debug.log", "pkg/important.log"]


async def test_list_files_pages_are_stable_and_cover_every_file_once(root: Path) -> None:
    write(root, {f"d{i % 3}/f{i:02}.txt": str(i) for i in range(25)})
    core = make_core(root)
    full = await all_paths(core, limit=1000)
    assert len(full) == 25

    collected: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        page = await list_files(core, **params)
        assert page.total == 25
        collected += [e.path for e in page.items]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert collected == full
    assert await all_paths(core, limit=1000) == full


async def test_list_files_refuses_a_cursor_made_for_another_query(root: Path) -> None:
    write(root, {f"f{i}.py": "" for i in range(5)} | {f"g{i}.txt": "" for i in range(5)})
    core = make_core(root)
    first = await list_files(core, glob="*.py", limit=2)
    assert first.next_cursor is not None
    with pytest.raises(InvalidParams, match="cursor"):
        await list_files(core, glob="*.txt", limit=2, cursor=first.next_cursor)
    with pytest.raises(InvalidParams, match="cursor"):
        await search(core, query="x", cursor=first.next_cursor)
    with pytest.raises(InvalidParams, match="cursor"):
        await list_files(core, cursor="not-a-cursor")
    second = await list_files(core, glob="*.py", limit=2, cursor=first.next_cursor)
    assert len(second.items) == 2


async def test_list_files_clamps_the_page_size_to_the_limit(root: Path) -> None:
    write(root, {f"f{i}.txt": "" for i in range(8)})
    core = make_core(root, LimitsConfig(max_page_size=3))
    page = await list_files(core, limit=100)
    assert len(page.items) == 3
    assert page.total == 8
    assert page.next_cursor is not None


async def test_list_files_skips_symlinks_that_leave_the_root(root: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    write(root, {"inside.txt": "ok"})
    os.symlink(tmp_path / "outside.txt", root / "link.txt")
    assert await all_paths(make_core(root)) == ["inside.txt"]


# -- read_file ----------------------------------------------------------------------------------------------
async def test_read_file_from_disk(root: Path) -> None:
    write(root, {"src/a.py": "one\ntwo\nthree\n"})
    result = await read_file(make_core(root), path="src/../src/a.py")
    assert result.path == "src/a.py"
    assert result.text == "one\ntwo\nthree\n"
    assert (result.start_line, result.end_line, result.total_lines) == (1, 3, 3)
    assert result.source == "disk"
    assert result.version is None
    assert not result.truncated


async def test_read_file_prefers_the_open_document_with_unsaved_edits(root: Path) -> None:
    write(root, {"a.py": "saved\n"})
    core = make_core(root)
    core.workspace.open("a.py", "unsaved\nedits\n", version=7)
    result = await read_file(core, path="a.py")
    assert result.text == "unsaved\nedits\n"
    assert result.source == "document"
    assert result.version == 7
    core.workspace.close("a.py")
    result = await read_file(core, path="a.py")
    assert (result.text, result.source, result.version) == ("saved\n", "disk", None)


async def test_read_file_of_an_open_document_that_is_not_on_disk(root: Path) -> None:
    core = make_core(root)
    core.workspace.open("new.py", "fresh", version=1)
    result = await read_file(core, path="new.py")
    assert (result.text, result.source, result.total_lines) == ("fresh", "document", 1)


async def test_read_file_line_ranges(root: Path) -> None:
    write(root, {"a.txt": "l1\nl2\r\nl3\nl4\nl5"})
    core = make_core(root)
    result = await read_file(core, path="a.txt", start_line=2, end_line=3)
    assert (result.text, result.start_line, result.end_line, result.total_lines) == ("l2\r\nl3\n", 2, 3, 5)
    result = await read_file(core, path="a.txt", start_line=4)
    assert (result.text, result.end_line) == ("l4\nl5", 5)
    result = await read_file(core, path="a.txt", end_line=99)
    assert (result.text, result.end_line, result.truncated) == ("l1\nl2\r\nl3\nl4\nl5", 5, False)
    with pytest.raises(InvalidParams, match="past the end"):
        await read_file(core, path="a.txt", start_line=6)
    with pytest.raises(InvalidParams):
        await read_file(core, path="a.txt", start_line=3, end_line=2)
    with pytest.raises(InvalidParams):
        await read_file(core, path="a.txt", start_line=0)


async def test_read_file_of_an_empty_file(root: Path) -> None:
    write(root, {"empty.txt": ""})
    result = await read_file(make_core(root), path="empty.txt")
    assert (result.text, result.start_line, result.end_line, result.total_lines) == ("", 1, 0, 0)


async def test_read_file_truncates_at_a_line_end_without_breaking_characters(root: Path) -> None:
    lines = [f"{i}: 😀 漢字 émoji 👩‍👩‍👧 {i}\n" for i in range(200)]
    content = "".join(lines)
    write(root, {"wide.txt": content})
    core = make_core(root)
    cap = 1001
    result = await read_file(core, path="wide.txt", max_bytes=cap)
    assert result.truncated
    assert len(result.text.encode()) <= cap
    assert content.startswith(result.text)
    assert result.text.endswith("\n")
    assert result.text == "".join(lines[: result.end_line])
    assert len(result.text.encode()) + len(lines[result.end_line].encode()) > cap
    assert result.total_lines == 200


async def test_read_file_cuts_a_single_long_line_on_a_character_boundary(root: Path) -> None:
    line = "😀漢" * 500
    write(root, {"one.txt": line})
    core = make_core(root, LimitsConfig(read_file_max_bytes=1000))
    for cap in (999, 1000, 1001, 5):
        result = await read_file(core, path="one.txt", max_bytes=cap)
        encoded = result.text.encode()
        assert result.truncated
        assert line.startswith(result.text)
        assert min(cap, 1000) - 4 < len(encoded) <= min(cap, 1000)
        assert "\ufffd" not in result.text
        assert (result.start_line, result.end_line) == (1, 1)


async def test_read_file_reads_only_a_bounded_prefix_of_huge_files(root: Path) -> None:
    content = "".join(f"line {i:05}\n" for i in range(20_000))  # 11 bytes a line
    write(root, {"big.txt": content})
    core = make_core(root, LimitsConfig(read_file_max_bytes=110))
    result = await read_file(core, path="big.txt")
    assert result.truncated
    assert result.total_lines is None
    assert result.text == content[:110]
    result = await read_file(core, path="big.txt", start_line=30, end_line=31)
    assert result.text == "line 00029\nline 00030\n"
    assert not result.truncated
    with pytest.raises(InvalidParams, match="beyond"):
        await read_file(core, path="big.txt", start_line=10_000)


async def test_read_file_refuses_binary_files(root: Path) -> None:
    write(root, {"blob.bin": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))})
    with pytest.raises(InvalidParams, match="binary file"):
        await read_file(make_core(root), path="blob.bin")


async def test_read_file_missing_file_is_not_found(root: Path) -> None:
    with pytest.raises(NotFound):
        await read_file(make_core(root), path="nope.txt")


async def test_read_file_of_a_directory_is_invalid(root: Path) -> None:
    (root / "sub").mkdir()
    with pytest.raises(InvalidParams, match="directory"):
        await read_file(make_core(root), path="sub")


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "sub/../../outside.txt", "link.txt"])
async def test_read_file_refuses_paths_outside_the_root(root: Path, tmp_path: Path, path: str) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    os.symlink(tmp_path / "outside.txt", root / "link.txt")
    (root / "sub").mkdir()
    with pytest.raises(PathOutsideRoot):
        await read_file(make_core(root), path=path)


# -- search ------------------------------------------------------------------------------------------------
@pytest.fixture
def code_tree(root: Path) -> Path:
    write(
        root,
        {
            "a.py": "def foo():\n    return Foo()\n",
            "b/c.py": "x = foo(1)\ny = FOO\n",
            "notes.md": "nothing to see\n",
        },
    )
    return root


async def test_search_literal_is_case_insensitive_by_default(code_tree: Path) -> None:
    result = await search(make_core(code_tree), query="foo")
    found = [(m.path, m.line, m.column, m.end_column) for m in result.items]
    assert found == [("a.py", 1, 4, 7), ("a.py", 2, 11, 14), ("b/c.py", 1, 4, 7), ("b/c.py", 2, 4, 7)]
    assert result.items[0].preview == "def foo():"
    assert result.total == 4
    assert result.files_scanned == 3
    assert not result.truncated


async def test_search_case_sensitive(code_tree: Path) -> None:
    result = await search(make_core(code_tree), query="Foo", case_sensitive=True)
    assert [(m.path, m.line) for m in result.items] == [("a.py", 2)]


async def test_search_literal_treats_regex_characters_as_text(root: Path) -> None:
    write(root, {"a.txt": "a.b\naxb\n(x)\n"})
    core = make_core(root)
    assert [m.line for m in (await search(core, query="a.b")).items] == [1]
    assert [m.line for m in (await search(core, query="(x)")).items] == [3]


async def test_search_regex(code_tree: Path) -> None:
    core = make_core(code_tree)
    result = await search(core, query=r"fo+\(\d*\)", regex=True)
    assert [(m.path, m.line, m.column) for m in result.items] == [("a.py", 1, 4), ("a.py", 2, 11), ("b/c.py", 1, 4)]
    result = await search(core, query=r"fo+\(\d*\)", regex=True, case_sensitive=True)
    assert [(m.path, m.line, m.column) for m in result.items] == [("a.py", 1, 4), ("b/c.py", 1, 4)]


async def test_search_invalid_regex_is_invalid_params(code_tree: Path) -> None:
    with pytest.raises(InvalidParams, match="invalid regex: missing \\)"):
        await search(make_core(code_tree), query="foo(", regex=True)


async def test_search_empty_query_is_invalid(code_tree: Path) -> None:
    with pytest.raises(InvalidParams):
        await search(make_core(code_tree), query="")


async def test_search_columns_count_code_points(root: Path) -> None:
    write(root, {"u.txt": "😀漢字 target\n"})
    (match,) = (await search(make_core(root), query="target")).items
    assert (match.column, match.end_column) == (4, 10)


async def test_search_stops_at_max_matches(root: Path) -> None:
    write(root, {"a.txt": "hit\n" * 6, "b.txt": "hit\n" * 6})
    core = make_core(root)
    result = await search(core, query="hit", max_matches=5)
    assert result.total == 5
    assert result.truncated
    assert [(m.path, m.line) for m in result.items] == [("a.txt", n) for n in range(1, 6)]
    exact = await search(core, query="hit", max_matches=12)
    assert (exact.total, exact.truncated) == (12, False)


async def test_search_pages(root: Path) -> None:
    write(root, {f"f{i}.txt": "hit\nmiss\nhit\n" for i in range(4)})
    core = make_core(root)
    full = await search(core, query="hit", limit=1000)
    assert full.total == 8
    collected = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"query": "hit", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = await search(core, **params)
        assert page.total == 8
        collected += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    assert collected == full.items
    first = await search(core, query="hit", limit=3)
    assert first.next_cursor is not None
    with pytest.raises(InvalidParams, match="cursor"):
        await search(core, query="miss", limit=3, cursor=first.next_cursor)
    with pytest.raises(InvalidParams, match="cursor"):
        await search(core, query="hit", case_sensitive=True, limit=3, cursor=first.next_cursor)


async def test_search_sees_unsaved_document_text(code_tree: Path) -> None:
    core = make_core(code_tree)
    core.workspace.open("notes.md", "unsaved needle here\n", version=2)
    core.workspace.open("scratch.py", "another needle\n", version=1)
    result = await search(core, query="needle")
    assert [(m.path, m.line, m.column) for m in result.items] == [("notes.md", 1, 8), ("scratch.py", 1, 8)]
    assert (await search(core, query="nothing to see")).total == 0


async def test_search_respects_gitignore_and_glob(ignored_tree: Path) -> None:
    core = make_core(ignored_tree)
    assert {m.path for m in (await search(core, query="hidden")).items} == set()
    assert {m.path for m in (await search(core, query="hidden", include_ignored=True)).items} == {
        "pkg/secret.txt",
        "pkg/deep/secret.txt",
    }
    assert (await search(core, query="core")).total == 0  # .git/ is never searched
    assert [m.path for m in (await search(core, query="x", glob="pkg/*.py")).items] == ["pkg/mod.py"]


async def test_search_skips_binary_and_oversized_files(root: Path) -> None:
    write(root, {"bin.dat": b"needle\x00\x01", "big.txt": "needle\n" * 100, "small.txt": "needle\n"})
    result = await search(make_core(root, LimitsConfig(search_max_file_bytes=100)), query="needle")
    assert [m.path for m in result.items] == ["small.txt"]
    assert result.files_scanned == 3
    assert result.files_skipped == 2


async def test_search_looks_only_at_the_start_of_very_long_lines(root: Path) -> None:
    write(root, {"long.txt": "a" * 5000 + "needle" + "b" * 20_000 + "late\n"})
    core = make_core(root)
    (match,) = (await search(core, query="needle")).items
    assert match.column == 5000
    assert len(match.preview) == 200
    assert "needle" in match.preview
    assert (await search(core, query="late")).total == 0


async def test_search_reports_progress_on_the_event_loop_thread(root: Path) -> None:
    write(root, {f"f{i}.txt": "hit\n" for i in range(10)})
    reports: list[ProgressReport] = []
    threads: set[threading.Thread] = set()

    def on_progress(report: ProgressReport) -> None:
        reports.append(report)
        threads.add(threading.current_thread())

    result = await search(make_core(root), CallContext(on_progress=on_progress), query="hit")
    assert result.total == 10
    assert reports[0].message == "scanning 10 files"
    assert reports[0].percentage == 0
    assert reports[0].data == {"files_scanned": 0, "matches": 0}
    assert reports[-1].percentage == 100
    assert reports[-1].data == {"files_scanned": 10, "matches": 10}
    assert threads == {threading.current_thread()}


async def test_search_can_be_cancelled_while_scanning(root: Path) -> None:
    body = "".join(f"line {n} with some text to scan\n" for n in range(100))
    write(root, {f"d{i % 30}/f{i}.txt": body for i in range(3000)})
    core = make_core(root)
    started = asyncio.Event()
    reports: list[ProgressReport] = []

    def on_progress(report: ProgressReport) -> None:
        reports.append(report)
        started.set()

    execution = core.start(CallContext(on_progress=on_progress), "search", {"query": r"no+such\d", "regex": True})
    await asyncio.wait_for(started.wait(), timeout=30)
    assert reports[0].message == "scanning 3000 files"
    assert execution.cancel()
    with pytest.raises(Cancelled):
        await asyncio.wait_for(execution.wait(), timeout=10)
    assert execution.record.status == "cancelled"
    assert execution.record.error is not None
    assert execution.record.error.code == "cancelled"


class _StaleStat(type(Path())):  # type: ignore[misc]
    """A path whose stat reports the size the file had before it grew."""

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        real = super().stat(follow_symlinks=follow_symlinks)
        fields = list(real)
        fields[6] = 3  # st_size
        return os.stat_result(fields)


@pytest.mark.parametrize(("size", "complete"), [(0, True), (9, True), (10, True), (11, False), (5000, False)])
def test_read_disk_reads_what_the_file_holds_up_to_the_budget(tmp_path: Path, size: int, complete: bool) -> None:
    from gateway.capabilities.files import _read_disk

    target = tmp_path / "f.txt"
    target.write_bytes(b"x" * size)
    assert _read_disk(target, "f.txt", 10) == ("x" * min(size, 10), complete)
    # A file that grew after its stat is read on, up to the budget, as if the stat had been current.
    assert _read_disk(_StaleStat(target), "f.txt", 10) == ("x" * min(size, 10), complete)
