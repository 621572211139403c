"""Workspaces and documents: a root folder plus the open (possibly unsaved) documents under it.

The core counts positions in code points, 0-based lines and characters; doors convert other
encodings at the edge (`translators.positions`). No read or write may leave the root: absolute
paths, `..` that climbs out, and symlinks that point out are refused.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import stat
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from pydantic import BaseModel, Field

from .errors import ContentModified, GatewayError, InvalidParams, NotFound, PathOutsideRoot

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_DRIVE = re.compile(r"^[A-Za-z]:")

LANGUAGE_BY_SUFFIX: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".ts": "typescript",
    ".tsx": "typescriptreact",
    ".js": "javascript",
    ".jsx": "javascriptreact",
    ".go": "go",
    ".rs": "rust",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".java": "java",
    ".rb": "ruby",
    ".md": "markdown",
    ".json": "json",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".lua": "lua",
    ".sh": "shellscript",
}


def guess_language(path: str) -> str:
    return LANGUAGE_BY_SUFFIX.get(PurePosixPath(path).suffix.lower(), "plaintext")


class Position(BaseModel):
    """A place in a document: 0-based line and character, characters counted in code points."""

    line: int = Field(ge=0)
    character: int = Field(ge=0)


class Range(BaseModel):
    start: Position
    end: Position


class TextChange(BaseModel):
    """An edit: replace `range` with `text`, or the whole document when `range` is absent."""

    range: Range | None = None
    text: str


@dataclass(frozen=True)
class DocumentSnapshot:
    """The text of one document as all doors see it now (an open document's unsaved text wins)."""

    path: str  # root-relative POSIX path
    text: str
    version: int | None  # None: the file on disk, not open
    language_id: str


class DocumentListener(Protocol):
    """Told about every open, change and close, whichever door caused it (engines keep in sync this way)."""

    def document_opened(self, snapshot: DocumentSnapshot) -> None: ...

    def document_changed(
        self, snapshot: DocumentSnapshot, changes: Sequence[TextChange], previous_text: str
    ) -> None: ...

    def document_closed(self, path: str) -> None: ...


log = logging.getLogger("gateway.workspace")


class Document:
    """One open document: its text and a version that grows with every change."""

    def __init__(self, path: str, text: str, version: int, language_id: str) -> None:
        self.path = path
        self.language_id = language_id
        self.version = version
        self._text = text
        self._line_starts: list[int] | None = None

    @property
    def text(self) -> str:
        return self._text

    @property
    def line_starts(self) -> list[int]:
        if self._line_starts is None:
            self._line_starts = [0, *(m.end() for m in _LINE_BREAK.finditer(self._text))]
        return self._line_starts

    @property
    def line_count(self) -> int:
        return len(self.line_starts)

    def line(self, index: int) -> str:
        """The text of line `index` without its line break ('' past the end)."""
        starts = self.line_starts
        if index < 0 or index >= len(starts):
            return ""
        end = starts[index + 1] if index + 1 < len(starts) else len(self._text)
        return self._text[starts[index] : end].rstrip("\r\n")

    def offset_at(self, pos: Position) -> int:
        """The string index of `pos`; lines and characters past the end clamp to the end."""
        starts = self.line_starts
        if pos.line >= len(starts):
            return len(self._text)
        return starts[pos.line] + min(pos.character, len(self.line(pos.line)))

    def position_at(self, offset: int) -> Position:
        offset = max(0, min(offset, len(self._text)))
        line = bisect.bisect_right(self.line_starts, offset) - 1
        return Position(line=line, character=offset - self.line_starts[line])

    def apply(self, changes: Iterable[TextChange], version: int | None = None) -> None:
        """Apply `changes` in order, each to the result of the one before, then set the version."""
        if version is not None and version <= self.version:
            raise ContentModified(
                f"version {version} of {self.path} is not newer than {self.version}",
                data={"path": self.path, "current_version": self.version},
            )
        text = self._text
        for change in changes:
            if change.range is None:
                text = change.text
            else:
                self._text, self._line_starts = text, None
                start = self.offset_at(change.range.start)
                end = self.offset_at(change.range.end)
                if end < start:
                    raise InvalidParams("a change range ends before it starts")
                text = text[:start] + change.text + text[end:]
        self._text, self._line_starts = text, None
        self.version = version if version is not None else self.version + 1


def _file_key(path: str | Path) -> tuple[int, int, int] | None:
    """What tells a file's contents apart without reading them: modification time, size, inode (None when
    it cannot be stat'ed)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Workspace:
    """A root folder and the documents open in it."""

    def __init__(self, root: Path) -> None:
        self.listeners: list[DocumentListener] = []
        self.root = root.resolve()
        self._root_str = str(self.root)
        self._root_prefix = self._root_str.rstrip(os.sep) + os.sep
        if not self.root.is_dir():
            raise NotFound(f"workspace root {root} is not a directory")
        self.documents: dict[str, Document] = {}
        self._disk_lines: OrderedDict[str, tuple[tuple[int, int, int], list[str]]] = OrderedDict()

    # -- paths --------------------------------------------------------------------------------
    def resolve(self, path: str) -> Path:
        """The absolute path of `path` (relative to the root); refuses anything that leaves the root."""
        if "\x00" in path:
            raise InvalidParams("path contains a NUL byte")
        if not path or path == ".":
            return self.root
        posix = path.replace("\\", "/")
        if posix.startswith("/") or _DRIVE.match(path):
            raise PathOutsideRoot(f"absolute paths are not allowed: {path!r}", data={"path": path})
        # os.path on strings: the same checks as pathlib at a fraction of the cost on this hot path.
        real = self._real_below_root(posix)
        if real != self._root_str and not real.startswith(self._root_prefix):
            raise PathOutsideRoot(f"path leaves the workspace root: {path!r}", data={"path": path})
        return Path(real)

    def _real_below_root(self, posix: str) -> str:
        """`os.path.realpath(root/posix)`, checking only the components below the root (resolved at start):
        each one an existing non-link, the answer is the joined path. Anything else (`..`, a symlink, a
        missing or non-directory component) takes `os.path.realpath` itself. Every path-taking capability
        resolves its path, and realpath's lstat of every ancestor of the root was most of the cost."""
        current = self._root_str
        for part in posix.split("/"):
            if not part or part == ".":
                continue
            if part == "..":
                break
            candidate = current + part if current.endswith(os.sep) else current + os.sep + part
            try:
                mode = os.lstat(candidate).st_mode
            except (OSError, ValueError):
                break
            if stat.S_ISLNK(mode):
                break
            current = candidate
        else:
            return current
        return os.path.realpath(os.path.join(self._root_str, posix))

    def relative(self, path: str) -> str:
        """The normalised root-relative POSIX form of `path` (after the same checks as `resolve`)."""
        return self.locate(path)[0]

    def locate(self, path: str) -> tuple[str, Path]:
        """Both forms of `path` from one resolution: root-relative POSIX and absolute."""
        resolved = self.resolve(path)
        real = str(resolved)
        rel = real[len(self._root_prefix) :].replace(os.sep, "/") if real != self._root_str else "."
        return rel, resolved

    def relative_of_absolute(self, absolute: Path) -> str:
        """Root-relative form of an absolute path; refuses paths outside the root."""
        try:
            rel = absolute.resolve().relative_to(self.root)
        except ValueError:
            raise PathOutsideRoot(f"{absolute} is outside the workspace root") from None
        return rel.as_posix()

    # -- documents ----------------------------------------------------------------------------
    def open(self, path: str, text: str | None, version: int = 0, language_id: str | None = None) -> Document:
        rel = self.relative(path)
        if text is None:
            text = self.read_disk_text(rel)
        doc = Document(rel, text, version, language_id or guess_language(rel))
        self.documents[rel] = doc
        snapshot = self._snapshot_of(doc)
        self._notify(lambda listener: listener.document_opened(snapshot))
        return doc

    def change(self, path: str, changes: Sequence[TextChange], version: int | None = None) -> Document:
        """Apply `changes` to an open document and tell the listeners."""
        doc = self.get(path)
        previous = doc.text
        doc.apply(changes, version)
        snapshot = self._snapshot_of(doc)
        self._notify(lambda listener: listener.document_changed(snapshot, changes, previous))
        return doc

    def snapshot(self, path: str) -> DocumentSnapshot:
        """The current text of `path` as a snapshot: the open document, else the file on disk."""
        doc = self.documents.get(path)
        if doc is not None:
            # `path` is exactly an open document's key: a root-relative path that `resolve` produced when
            # the document was opened (no `.`, `..`, or symlink in it). Its text is in memory; no need to
            # walk the file system again to find it (an lstat per component on every request).
            return self._snapshot_of(doc)
        rel, target = self.locate(path)
        doc = self.documents.get(rel)
        if doc is not None:
            return self._snapshot_of(doc)
        return DocumentSnapshot(rel, self._read(target, rel), None, guess_language(rel))

    @staticmethod
    def _snapshot_of(doc: Document) -> DocumentSnapshot:
        return DocumentSnapshot(doc.path, doc.text, doc.version, doc.language_id)

    def _notify(self, call: Callable[[DocumentListener], None]) -> None:
        for listener in list(self.listeners):
            try:
                call(listener)
            except Exception:
                log.exception("document listener %r failed", listener)

    def get(self, path: str) -> Document:
        rel = self.relative(path)
        doc = self.documents.get(rel)
        if doc is None:
            raise NotFound(f"document {rel!r} is not open", data={"path": rel})
        return doc

    def close(self, path: str) -> Document:
        doc = self.get(path)
        del self.documents[doc.path]
        self._notify(lambda listener: listener.document_closed(doc.path))
        return doc

    def read_disk_text(self, rel: str, max_bytes: int | None = None) -> str:
        return self._read(self.resolve(rel), rel, max_bytes)

    def _read(self, target: Path, rel: str, max_bytes: int | None = None) -> str:
        if not target.is_file():
            raise NotFound(f"no file {rel!r} in the workspace", data={"path": rel})
        with open(target, "rb") as fh:
            data = fh.read() if max_bytes is None else fh.read(max_bytes)
        return data.decode("utf-8", errors="replace")

    def text_of(self, path: str) -> tuple[str, int | None]:
        """The current text of `path`: the open document's (unsaved edits included) or the file's."""
        rel, target = self.locate(path)
        doc = self.documents.get(rel)
        if doc is not None:
            return doc.text, doc.version
        return self._read(target, rel), None

    DISK_LINES_CACHED = 64

    def line_text(self, path: str, line: int) -> str | None:
        """Line `line` of `path` without its break: the open document's, else the file's; None when the file
        cannot be read or the line is past its end (for an open document: "").

        For converting positions of answers (locations in files nobody has open, often the same few files
        request after request): a file's lines are kept for the last `DISK_LINES_CACHED` files and reused
        while its modification time, size and inode stay the same, so a request costs a `stat`, not a read,
        decode and split of the whole file."""
        doc = self.documents.get(path)
        if doc is not None:
            return doc.line(line)  # "" past the end: positions there clamp to the line start
        lines = self.disk_lines(path)
        if lines is None or not 0 <= line < len(lines):
            return None
        return lines[line]

    def disk_lines(self, path: str) -> list[str] | None:
        """The lines of file `path` as on disk (cached, see `line_text`); None when it cannot be read."""
        cached = self._disk_lines.get(path)
        if cached is not None and cached[0] == _file_key(self._root_prefix + path):
            # Seen before, so `path` passed `locate` then; the same file (inode, size, mtime) behind the same
            # spelling now needs no new walk of its components.
            self._disk_lines.move_to_end(path)
            return cached[1]
        try:
            rel, target = self.locate(path)
        except (GatewayError, OSError, ValueError):
            return None
        key = _file_key(target)
        if key is None:
            return None
        cached = self._disk_lines.get(rel)
        if cached is None or cached[0] != key:
            try:
                text = self._read(target, rel)
            except (GatewayError, OSError, ValueError):
                return None
            cached = (key, _LINE_BREAK.split(text))
        self._disk_lines[rel] = cached
        self._disk_lines.move_to_end(rel)
        while len(self._disk_lines) > self.DISK_LINES_CACHED:
            self._disk_lines.popitem(last=False)
        return cached[1]

    def walk_files(self) -> Iterable[str]:
        """Every regular file under the root (symlinks leaving the root skipped), sorted, root-relative."""
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            base = Path(dirpath)
            for name in sorted(filenames):
                full = base / name
                if full.is_symlink():
                    try:
                        self.relative_of_absolute(full)
                    except PathOutsideRoot:
                        continue
                    if not full.is_file():
                        continue
                yield full.relative_to(self.root).as_posix()
