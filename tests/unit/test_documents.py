from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.errors import ContentModified, InvalidParams, NotFound, PathOutsideRoot
from gateway.workspace import Document, Position, Range, TextChange, Workspace


def rng(l1: int, c1: int, l2: int, c2: int) -> Range:
    return Range(start=Position(line=l1, character=c1), end=Position(line=l2, character=c2))


def test_incremental_edits_apply_in_order() -> None:
    doc = Document("a.py", "hello\nworld\n", 1, "python")
    doc.apply(
        [
            TextChange(range=rng(0, 0, 0, 5), text="goodbye"),
            TextChange(range=rng(1, 5, 1, 5), text="!"),
            TextChange(range=rng(0, 7, 1, 0), text=" "),
        ],
        version=2,
    )
    assert doc.text == "goodbye world!\n"
    assert doc.version == 2
    assert doc.line_count == 2


def test_full_replacement_and_implicit_version() -> None:
    doc = Document("a.py", "x", 3, "python")
    doc.apply([TextChange(text="a\r\nb\rc\nd")])
    assert doc.version == 4
    assert [doc.line(i) for i in range(doc.line_count)] == ["a", "b", "c", "d"]


def test_edits_with_emoji_cjk_and_combining_marks_count_code_points() -> None:
    doc = Document("a.txt", "a😀b中e\u0301z\n", 0, "plaintext")
    doc.apply([TextChange(range=rng(0, 2, 0, 3), text="B")])  # replace "b" after the emoji
    assert doc.text == "a😀B中e\u0301z\n"
    doc.apply([TextChange(range=rng(0, 5, 0, 6), text="")])  # drop the combining accent
    assert doc.text == "a😀B中ez\n"
    assert doc.position_at(doc.text.index("z")) == Position(line=0, character=5)


def test_positions_past_the_end_clamp() -> None:
    doc = Document("a.txt", "ab\ncd", 0, "plaintext")
    doc.apply([TextChange(range=rng(0, 99, 9, 0), text="!")])
    assert doc.text == "ab!"


def test_stale_versions_and_backward_ranges_are_refused() -> None:
    doc = Document("a.txt", "abc", 5, "plaintext")
    with pytest.raises(ContentModified):
        doc.apply([TextChange(text="x")], version=5)
    with pytest.raises(InvalidParams):
        doc.apply([TextChange(range=rng(0, 2, 0, 1), text="x")], version=6)
    assert doc.text == "abc" and doc.version == 5


def test_workspace_confines_paths(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f.txt").write_text("in")
    (tmp_path / "secret.txt").write_text("out")
    os.symlink(tmp_path / "secret.txt", root / "leak.txt")
    os.symlink(root / "sub" / "f.txt", root / "ok-link.txt")
    ws = Workspace(root)
    assert ws.relative("sub/../sub/f.txt") == "sub/f.txt"
    assert ws.text_of("ok-link.txt") == ("in", None)
    for bad in ("../secret.txt", "sub/../../secret.txt", "/etc/passwd", "leak.txt", "C:\\Windows"):
        with pytest.raises(PathOutsideRoot):
            ws.resolve(bad)
    with pytest.raises(InvalidParams):
        ws.resolve("a\x00b")
    assert "leak.txt" not in list(ws.walk_files())
    assert "ok-link.txt" in list(ws.walk_files())


def test_open_documents_shadow_the_disk(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("on disk\n")
    ws = Workspace(tmp_path)
    doc = ws.open("m.py", None, 1)
    assert doc.text == "on disk\n" and doc.language_id == "python"
    doc.apply([TextChange(text="unsaved\n")], 2)
    assert ws.text_of("./m.py") == ("unsaved\n", 2)
    ws.close("m.py")
    assert ws.text_of("m.py") == ("on disk\n", None)
    with pytest.raises(NotFound):
        ws.get("m.py")


def test_snapshot_finds_an_open_document_by_any_spelling_and_still_confines(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "m.py").write_text("on disk\n")
    (tmp_path / "secret.py").write_text("out\n")
    ws = Workspace(root)
    ws.open("pkg/m.py", "unsaved\n", 3)
    # The exact key takes the in-memory fast path; other spellings resolve to the same document.
    for spelling in ("pkg/m.py", "./pkg/m.py", "pkg//m.py", "pkg/../pkg/m.py"):
        snap = ws.snapshot(spelling)
        assert (snap.path, snap.text, snap.version) == ("pkg/m.py", "unsaved\n", 3)
    # A path that is not an open document's key goes through the full checks.
    for bad in ("../secret.py", "pkg/../../secret.py", "/etc/passwd"):
        with pytest.raises(PathOutsideRoot):
            ws.snapshot(bad)
    ws.close("pkg/m.py")
    assert ws.snapshot("pkg/m.py").text == "on disk\n"


def test_line_text_reuses_a_files_lines_until_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.py").write_text("first\r\nsecond\rthird\n")
    (tmp_path.parent / f"{tmp_path.name}-outside.py").write_text("secret\n")
    ws = Workspace(tmp_path)
    reads: list[str] = []
    real_read = ws._read

    def counting_read(target: Path, rel: str, max_bytes: int | None = None) -> str:
        reads.append(rel)
        return real_read(target, rel, max_bytes)

    monkeypatch.setattr(ws, "_read", counting_read)
    assert [ws.line_text("a.py", i) for i in range(4)] == ["first", "second", "third", ""]
    assert ws.line_text("a.py", 4) is None and ws.line_text("a.py", -1) is None
    assert reads == ["a.py"]  # one read for every line asked
    os.utime(tmp_path / "a.py", ns=(1, 1))  # same size, other mtime
    assert ws.line_text("./a.py", 1) == "second"
    (tmp_path / "a.py").write_text("changed\n")
    assert ws.line_text("a.py", 0) == "changed"
    assert reads == ["a.py", "a.py", "a.py"]
    # An open document wins over the file; unreadable or outside paths have no lines.
    ws.open("a.py", "unsaved\n", 1)
    assert ws.line_text("a.py", 0) == "unsaved"
    assert ws.line_text("missing.py", 0) is None
    assert ws.line_text(f"../{tmp_path.name}-outside.py", 0) is None
    # The cache holds the last DISK_LINES_CACHED files.
    for i in range(Workspace.DISK_LINES_CACHED + 5):
        (tmp_path / f"f{i}.py").write_text(f"line {i}\n")
        assert ws.line_text(f"f{i}.py", 0) == f"line {i}"
    assert len(ws._disk_lines) == Workspace.DISK_LINES_CACHED
    assert "f0.py" not in ws._disk_lines
