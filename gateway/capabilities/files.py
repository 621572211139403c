"""Files in the workspace: list them, read them and search them, .gitignore respected.

Open documents win over the disk: `read_file` and `search` see unsaved edits. Blocking file work runs
in worker threads; `search` reports progress and stops promptly when its execution is cancelled.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import hashlib
import json
import re
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, model_validator

from ..config import LimitsConfig
from ..errors import Cancelled, GatewayError, InvalidParams, NotFound
from ..execution import ExecutionContext
from ..identity import Role
from ..pagination import Page, PageParams, paginate
from ..registry import Registry
from ..workspace import Workspace

if TYPE_CHECKING:
    # Imported where used: with pathspec they cost ~15 ms of every start-up, needed only by a search,
    # a listing or the index walk.
    import regex
    from pathspec import GitIgnoreSpec

BINARY_SNIFF_BYTES = 8192
"""A NUL byte in this many leading bytes makes a file binary."""
SEARCH_MAX_LINE_CHARS = 10_000
"""Only this many leading characters of a line are searched."""
PREVIEW_CHARS = 200
"""A match's preview is at most this many characters of its line, centred on the match."""
READ_BUDGET_FACTOR = 4
"""`read_file` reads at most this many times the server's byte cap from disk; larger files are read in part."""
PROGRESS_INTERVAL = 0.05
"""Seconds between two progress reports of a search."""
CANCEL_CHECK_LINES = 2000
"""A search checks for cancellation every this many lines inside a file."""
GITIGNORE_MAX_BYTES = 1_048_576

LINE_MATCH_TIMEOUT = 1.0
"""Seconds one line may take to match before the query is refused as too expensive (ReDoS guard)."""
INLINE_BYTES = 256 * 1024
"""Files and texts up to this size are handled on the event loop: a thread hop costs more than the work."""
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
"""The same line breaks as `gateway.workspace.Document` counts."""


# -- models -------------------------------------------------------------------------------------------
class ListFilesParams(PageParams):
    glob: str | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="Gitignore-style pattern on the root-relative path, e.g. `*.py` or `src/**/*.ts`",
    )
    include_ignored: bool = Field(False, description="Also list files that .gitignore files exclude")


class FileEntry(BaseModel):
    """One file of the workspace."""

    path: str = Field(description="Root-relative POSIX path")
    size: int | None = Field(description="Size on disk in bytes; null when it could not be read")


class ListFilesResult(Page[FileEntry]):
    """A page of files in walk order (each folder's files by name, then its subfolders by name)."""


class ReadFileParams(BaseModel):
    path: str = Field(min_length=1, max_length=4096, description="Path relative to the workspace root")
    start_line: int | None = Field(None, ge=1, description="First line to return, 1-based; default 1")
    end_line: int | None = Field(None, ge=1, description="Last line to return, inclusive; default the last")
    max_bytes: int | None = Field(
        None, ge=1, description="Cap on the UTF-8 size of `text`; the server's own cap applies too"
    )

    @model_validator(mode="after")
    def _range_in_order(self) -> ReadFileParams:
        if self.start_line is not None and self.end_line is not None and self.end_line < self.start_line:
            raise ValueError("end_line must not be less than start_line")
        return self


class ReadFileResult(BaseModel):
    """Some or all lines of a file, from its open document when there is one."""

    path: str = Field(description="Root-relative POSIX path")
    text: str = Field(description="The lines start_line..end_line, line breaks included")
    start_line: int = Field(description="1-based number of the first line in `text`")
    end_line: int = Field(description="1-based number of the last line in `text`; start_line - 1 when empty")
    total_lines: int | None = Field(
        description="Lines in the whole file; null when the file is too large to count them"
    )
    truncated: bool = Field(description="`text` stops before the end of the requested lines")
    source: Literal["document", "disk"] = Field(description="Open document (unsaved edits) or the disk")
    version: int | None = Field(description="The open document's version; null for the disk")


class SearchParams(PageParams):
    query: str = Field(min_length=1, max_length=1000, description="Text, or a Python regex with regex=true")
    regex: bool = Field(False, description="Treat query as a regular expression (Python `re` syntax)")
    case_sensitive: bool = False
    glob: str | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="Gitignore-style pattern on the root-relative path, e.g. `*.py` or `src/**/*.ts`",
    )
    include_ignored: bool = Field(False, description="Also search files that .gitignore files exclude")
    max_matches: int = Field(10_000, ge=1, le=100_000, description="Stop after this many matches")


class SearchMatch(BaseModel):
    """One match: where it is and the text around it."""

    path: str = Field(description="Root-relative POSIX path")
    line: int = Field(description="1-based line number")
    column: int = Field(description="0-based start of the match in the line, in code points")
    end_column: int = Field(description="0-based end (exclusive) of the match in the line, in code points")
    preview: str = Field(description=f"The line, cut to at most {PREVIEW_CHARS} characters around the match")


class SearchResult(Page[SearchMatch]):
    """A page of matches in file order; `total` counts every match found."""

    files_scanned: int = Field(description="Files looked at, skipped ones included")
    files_skipped: int = Field(description="Files not searched: binary, too large or unreadable")
    truncated: bool = Field(description="The search stopped at max_matches; more matches exist")


# -- shared helpers ----------------------------------------------------------------------------------
class _Stopped(Exception):
    """The worker thread saw the stop flag."""


class StopFlag:
    """Tells a worker thread to stop: set by the handler, or by a cancel of the execution."""

    def __init__(self, ctx: ExecutionContext) -> None:
        self._ctx = ctx
        self._event = threading.Event()

    def set(self) -> None:
        """Ask the worker to stop."""
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set() or self._ctx.cancelled


def _read_gitignore(path: Path) -> list[str]:
    try:
        with open(path, "rb") as fh:
            return fh.read(GITIGNORE_MAX_BYTES).decode("utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _compile_patterns(lines: Sequence[str]) -> GitIgnoreSpec:
    """A spec of `lines`, dropping the lines git itself would find invalid."""
    from pathspec import GitIgnoreSpec

    try:
        return GitIgnoreSpec.from_lines(lines)
    except ValueError:
        valid = []
        for line in lines:
            try:
                GitIgnoreSpec.from_lines([line])
            except ValueError:
                continue
            valid.append(line)
        return GitIgnoreSpec.from_lines(valid)


def compile_glob(glob: str | None) -> GitIgnoreSpec | None:
    """The matcher for a `glob` param; refuses patterns that are not valid gitignore patterns."""
    if glob is None:
        return None
    from pathspec import GitIgnoreSpec

    try:
        return GitIgnoreSpec.from_lines([glob])
    except ValueError as exc:
        raise InvalidParams(f"invalid glob: {exc}", data={"glob": glob}) from None


class GitIgnoreFilter:
    """Decides whether root-relative paths are excluded by the workspace's .gitignore files.

    Like git: each folder's .gitignore applies below that folder, deeper files override shallower
    ones, a file inside an excluded folder stays excluded, and .gitignore files inside excluded
    folders are never read. `.git/info/exclude` counts as part of the root's rules.
    """

    def __init__(self, root: Path, gitignore_dirs: Collection[str]) -> None:
        self._root = root
        self._has_gitignore = set(gitignore_dirs)
        self._specs: dict[str, GitIgnoreSpec | None] = {}
        self._dir_ignored: dict[str, bool] = {"": False}

    @classmethod
    def for_files(cls, root: Path, files: Iterable[str]) -> GitIgnoreFilter:
        """A filter that uses every .gitignore among `files` (root-relative paths)."""
        dirs = []
        for path in files:
            parent, _, name = path.rpartition("/")
            if name == ".gitignore":
                dirs.append(parent)
        return cls(root, dirs)

    def _spec(self, directory: str) -> GitIgnoreSpec | None:
        if directory not in self._specs:
            base = self._root / directory if directory else self._root
            lines: list[str] = []
            if not directory:
                lines += _read_gitignore(self._root / ".git" / "info" / "exclude")
            if directory in self._has_gitignore:
                lines += _read_gitignore(base / ".gitignore")
            self._specs[directory] = _compile_patterns(lines) if lines else None
        return self._specs[directory]

    def _matches(self, path: str, is_dir: bool) -> bool:
        parts = path.split("/")
        verdict = False
        for depth in range(len(parts)):
            spec = self._spec("/".join(parts[:depth]))
            if spec is None:
                continue
            sub = "/".join(parts[depth:]) + ("/" if is_dir else "")
            include = spec.check_file(sub).include
            if include is not None:
                verdict = include
        return verdict

    def dir_ignored(self, directory: str) -> bool:
        """Whether the folder `directory` (root-relative, '' for the root) or one above it is excluded."""
        cached = self._dir_ignored.get(directory)
        if cached is None:
            parent = directory.rpartition("/")[0]
            cached = self.dir_ignored(parent) or self._matches(directory, is_dir=True)
            self._dir_ignored[directory] = cached
        return cached

    def ignored(self, path: str) -> bool:
        """Whether the file `path` (root-relative) is excluded."""
        return self.dir_ignored(path.rpartition("/")[0]) or self._matches(path, is_dir=False)


def _in_git_dir(path: str) -> bool:
    return path == ".git" or path.startswith(".git/") or "/.git/" in path or path.endswith("/.git")


def collect_files(
    workspace: Workspace,
    glob: GitIgnoreSpec | None,
    include_ignored: bool,
    should_stop: Callable[[], bool],
    extra: Iterable[str] = (),
) -> list[str]:
    """The root-relative files to list or search, in walk order; blocking, so run it in a thread.

    `extra` adds paths not on disk (open documents) after the walked ones. `.git/` is always
    skipped; files excluded by .gitignore are skipped unless `include_ignored`.
    """
    walked: list[str] = []
    for count, path in enumerate(workspace.walk_files()):
        if count % 1000 == 0 and should_stop():
            raise _Stopped
        walked.append(path)
    seen = set(walked)
    candidates = walked + sorted(p for p in extra if p not in seen)
    ignore = None if include_ignored else GitIgnoreFilter.for_files(workspace.root, walked)
    selected = []
    for path in candidates:
        if _in_git_dir(path):
            continue
        if glob is not None and not glob.match_file(path):
            continue
        if ignore is not None and ignore.ignored(path):
            continue
        selected.append(path)
    return selected


def _cursor_key(*parts: object) -> str:
    raw = json.dumps(parts, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _page_params(params: PageParams, limits: LimitsConfig) -> PageParams:
    return params.model_copy(update={"limit": min(params.limit, limits.max_page_size)})


def _entries(root: Path, paths: Iterable[str]) -> list[FileEntry]:
    entries = []
    for path in paths:
        try:
            size: int | None = (root / path).stat().st_size
        except OSError:
            size = None
        entries.append(FileEntry(path=path, size=size))
    return entries


_LINE_WITH_END = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _lines_with_ends(text: str) -> list[str]:
    """The lines of `text`, each with its line break (the last may have none); \\r\\n, \\r and \\n break."""
    return _LINE_WITH_END.findall(text)


def _lines(text: str) -> list[str]:
    lines = _LINE_BREAK.split(text)
    if lines and not lines[-1]:
        lines.pop()
    return lines


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


def _cut_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` whose UTF-8 form fits in `max_bytes`; never splits a character."""
    data = text.encode("utf-8", errors="surrogatepass")
    if len(data) <= max_bytes:
        return text
    end = max_bytes
    while end > 0 and data[end] & 0xC0 == 0x80:
        end -= 1
    return data[:end].decode("utf-8", errors="surrogatepass")


# -- read_file ------------------------------------------------------------------------------------------
@dataclass
class _Excerpt:
    text: str
    start_line: int
    end_line: int
    total_lines: int | None
    truncated: bool


def _small_file(target: Path) -> bool:
    """True for a regular file small enough to read on the event loop."""
    try:
        info = target.stat()
    except OSError:
        return True  # _read_disk reports the problem
    return stat.S_ISREG(info.st_mode) and info.st_size <= INLINE_BYTES


def _read_disk(target: Path, rel: str, budget: int) -> tuple[str, bool]:
    """At most `budget` bytes of the file as text, and whether that is the whole file."""
    try:
        info = target.stat()
    except FileNotFoundError:
        raise NotFound(f"no file {rel!r} in the workspace", data={"path": rel}) from None
    except OSError as exc:
        raise InvalidParams(f"cannot read {rel!r}: {exc.strerror}", data={"path": rel}) from None
    if stat.S_ISDIR(info.st_mode):
        raise InvalidParams(f"{rel!r} is a directory", data={"path": rel})
    if not stat.S_ISREG(info.st_mode):
        raise InvalidParams(f"{rel!r} is not a regular file", data={"path": rel})
    try:
        with open(target, "rb") as fh:
            # Ask for what the file holds (plus one byte, to see it grew), not for the whole budget: a read
            # of n bytes allocates n up front (megabytes mapped and unmapped for a small file).
            want = min(budget + 1, info.st_size + 1)
            data = fh.read(want)
            if len(data) == want and want <= budget:  # it grew since the stat: the rest, up to the budget
                data += fh.read(budget + 1 - want)
    except OSError as exc:
        raise InvalidParams(f"cannot read {rel!r}: {exc.strerror}", data={"path": rel}) from None
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        raise InvalidParams("binary file", data={"path": rel})
    if len(data) <= budget:
        return data.decode("utf-8", errors="replace"), True
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(data[:budget], final=False), False


def _excerpt(text: str, complete: bool, start_line: int | None, end_line: int | None, max_bytes: int) -> _Excerpt:
    """Lines start_line..end_line of `text`, cut to `max_bytes` of UTF-8 at a line end when possible."""
    if complete and start_line is None and end_line is None and len(text) * 4 <= max_bytes:
        # The whole file, certainly under the cap (UTF-8 takes at most 4 bytes a code point): no per-line work.
        breaks = text.count("\n") if "\r" not in text else len(_LINE_BREAK.findall(text))
        total = breaks + (0 if not text or text.endswith(("\n", "\r")) else 1)
        return _Excerpt(text, 1, total, total, False)
    lines = _lines_with_ends(text)
    if not complete and len(lines) > 1 and not lines[-1].endswith(("\n", "\r")):
        lines.pop()  # the read stopped inside this line
    total = len(lines)
    first = start_line or 1
    if first > max(total, 1):
        if complete:
            message = f"start_line {first} is past the end of the file ({total} lines)"
        else:
            message = f"start_line {first} is beyond line {total}, as far as a file this large can be read"
        raise InvalidParams(message, data={"start_line": first, "total_lines": total if complete else None})
    stop = total if end_line is None else min(end_line, total)
    out: list[str] = []
    used = 0
    last = first - 1
    truncated = False
    for index in range(first - 1, stop):
        line = lines[index]
        size = _utf8_len(line)
        if used + size > max_bytes:
            truncated = True
            if not out:
                out.append(_cut_utf8(line, max_bytes))
                last = index + 1
            break
        out.append(line)
        used += size
        last = index + 1
    if not complete and (end_line is None or end_line > last):
        truncated = True
    return _Excerpt("".join(out), first, last, total if complete else None, truncated)


# -- search ------------------------------------------------------------------------------------------
MatchRow = tuple[str, int, int, int, str]
"""path, line, column, end_column, preview"""


@dataclass
class _ScanOutcome:
    matches: list[MatchRow] = field(default_factory=list)
    files_scanned: int = 0
    files_skipped: int = 0
    truncated: bool = False


def _preview(line: str, start: int, end: int) -> str:
    if len(line) <= PREVIEW_CHARS:
        return line
    span = min(end - start, PREVIEW_CHARS)
    begin = max(0, start - (PREVIEW_CHARS - span) // 2)
    begin = min(begin, len(line) - PREVIEW_CHARS)
    return line[begin : begin + PREVIEW_CHARS]


ProgressSink = Callable[[str, float, int, int], None]


class _Searcher:
    """The blocking part of `search`: collect the files, then scan them one by one."""

    def __init__(
        self,
        workspace: Workspace,
        params: SearchParams,
        pattern: regex.Pattern[str],
        glob: GitIgnoreSpec | None,
        documents: dict[str, str],
        max_file_bytes: int,
        should_stop: Callable[[], bool],
        report: ProgressSink,
    ) -> None:
        self.workspace = workspace
        self.params = params
        self.pattern = pattern
        self.glob = glob
        self.documents = documents
        self.max_file_bytes = max_file_bytes
        self.should_stop = should_stop
        self.report = report
        self.outcome = _ScanOutcome()
        self._last_report = 0.0
        self._total_files = 0

    def run(self) -> _ScanOutcome:
        files = collect_files(self.workspace, self.glob, self.params.include_ignored, self.should_stop, self.documents)
        self._total_files = len(files)
        self.report(f"scanning {len(files)} files", 0.0, 0, 0)
        self._last_report = time.monotonic()
        for path in files:
            if self.should_stop():
                raise _Stopped
            text = self._load(path)
            self.outcome.files_scanned += 1
            if text is None:
                self.outcome.files_skipped += 1
            elif self._scan(path, text):
                self.outcome.truncated = True
                break
            self._maybe_report()
        return self.outcome

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if now - self._last_report < PROGRESS_INTERVAL:
            return
        self._last_report = now
        scanned = self.outcome.files_scanned
        percentage = 100.0 * scanned / self._total_files if self._total_files else 100.0
        self.report(
            f"scanned {scanned} of {self._total_files} files",
            min(percentage, 100.0),
            scanned,
            len(self.outcome.matches),
        )

    def _load(self, path: str) -> str | None:
        """The text to search in `path`, or None when it must be skipped."""
        text = self.documents.get(path)
        if text is not None:
            return None if "\x00" in text[:BINARY_SNIFF_BYTES] else text
        try:
            target = self.workspace.resolve(path)
            info = target.stat()
            if not stat.S_ISREG(info.st_mode) or info.st_size > self.max_file_bytes:
                return None
            with open(target, "rb") as fh:
                data = fh.read(self.max_file_bytes + 1)
        except (OSError, GatewayError):
            return None
        if len(data) > self.max_file_bytes or b"\x00" in data[:BINARY_SNIFF_BYTES]:
            return None
        return data.decode("utf-8", errors="replace")

    def _scan(self, path: str, text: str) -> bool:
        """Add the matches in `text`; True when max_matches was passed."""
        if not self.params.regex and self.pattern.search(text) is None:
            return False  # a literal that is nowhere in the file is on no line of it
        matches = self.outcome.matches
        limit = self.params.max_matches
        finditer = self.pattern.finditer
        for number, line in enumerate(_lines(text), 1):
            if number % CANCEL_CHECK_LINES == 0:
                if self.should_stop():
                    raise _Stopped
                self._maybe_report()
            if len(line) > SEARCH_MAX_LINE_CHARS:
                line = line[:SEARCH_MAX_LINE_CHARS]
            try:
                found = list(finditer(line, timeout=LINE_MATCH_TIMEOUT))
            except TimeoutError:
                raise InvalidParams(
                    f"the regular expression took over {LINE_MATCH_TIMEOUT}s on one line of {path}; "
                    "simplify it (nested repetition backtracks exponentially)",
                    data={"path": path, "line": number},
                ) from None
            for match in found:
                if len(matches) >= limit:
                    return True
                start, end = match.span()
                matches.append((path, number, start, end, _preview(line, start, end)))
        return False


def _compile_query(params: SearchParams) -> regex.Pattern[str]:
    """The query as a pattern of the `regex` engine, which (unlike `re`) can time a match out."""
    import regex

    source = params.query if params.regex else regex.escape(params.query)
    flags = regex.V0 if params.case_sensitive else regex.V0 | regex.IGNORECASE
    try:
        return regex.compile(source, flags)
    except regex.error as exc:
        raise InvalidParams(f"invalid regex: {exc}", data={"query": params.query}) from None
    except (OverflowError, RecursionError):
        raise InvalidParams("invalid regex: too complex", data={"query": params.query}) from None


# -- registration ----------------------------------------------------------------------------------------
def register(registry: Registry, limits: LimitsConfig) -> None:
    """Register `list_files`, `read_file` and `search` on `registry`, bounded by `limits`."""

    @registry.register(
        "list_files",
        ListFilesParams,
        ListFilesResult,
        required_role=Role.VIEWER,
        read_only=True,
        idempotent=True,
        tags=("files",),
    )
    async def list_files(ctx: ExecutionContext, params: ListFilesParams) -> ListFilesResult:
        """List the workspace's files, skipping what .gitignore excludes unless asked.

        Files come in a stable walk order and in pages; `glob` narrows the list with a
        gitignore-style pattern. `.git/` is never listed.
        """
        glob = compile_glob(params.glob)
        stop = StopFlag(ctx)
        try:
            files = await asyncio.to_thread(collect_files, ctx.workspace, glob, params.include_ignored, stop)
        except _Stopped:
            raise Cancelled("execution cancelled") from None
        finally:
            stop.set()
        key = _cursor_key("list_files", params.glob, params.include_ignored)
        page, next_cursor = paginate(files, _page_params(params, limits), key)
        entries = await asyncio.to_thread(_entries, ctx.workspace.root, page)
        return ListFilesResult(items=entries, next_cursor=next_cursor, total=len(files))

    @registry.register(
        "read_file",
        ReadFileParams,
        ReadFileResult,
        required_role=Role.VIEWER,
        read_only=True,
        idempotent=True,
        tags=("files",),
    )
    async def read_file(ctx: ExecutionContext, params: ReadFileParams) -> ReadFileResult:
        """Read a file, or some of its lines; an open document's unsaved text wins over the disk.

        The text is capped at `max_bytes` (and the server's limit) of UTF-8, cut at a line end
        when possible and never inside a character; `truncated` says when it was cut. Binary
        files are refused.
        """
        rel, target = ctx.workspace.locate(params.path)
        cap = limits.read_file_max_bytes
        if params.max_bytes is not None:
            cap = min(cap, params.max_bytes)
        source: Literal["document", "disk"]
        if rel in ctx.workspace.documents:
            text, version = ctx.workspace.text_of(rel)
            complete, source = True, "document"
        else:
            budget = limits.read_file_max_bytes * READ_BUDGET_FACTOR + 4
            if _small_file(target):
                text, complete = _read_disk(target, rel, budget)
            else:
                text, complete = await asyncio.to_thread(_read_disk, target, rel, budget)
            version, source = None, "disk"
        if len(text) <= INLINE_BYTES:
            part = _excerpt(text, complete, params.start_line, params.end_line, cap)
        else:
            part = await asyncio.to_thread(_excerpt, text, complete, params.start_line, params.end_line, cap)
        return ReadFileResult(
            path=rel,
            text=part.text,
            start_line=part.start_line,
            end_line=part.end_line,
            total_lines=part.total_lines,
            truncated=part.truncated,
            source=source,
            version=version,
        )

    @registry.register(
        "search",
        SearchParams,
        SearchResult,
        required_role=Role.VIEWER,
        read_only=True,
        idempotent=True,
        tags=("files",),
    )
    async def search(ctx: ExecutionContext, params: SearchParams) -> SearchResult:
        """Search the workspace's files for text or a regular expression.

        Open documents are searched with their unsaved text. Binary files, files over the size
        limit and files .gitignore excludes (unless asked) are skipped; only the first 10,000
        characters of a line are searched. Matches come in file order, in pages; the search stops
        after `max_matches`. Reports progress and stops promptly when cancelled.
        """
        pattern = _compile_query(params)
        glob = compile_glob(params.glob)
        documents = {path: doc.text for path, doc in ctx.workspace.documents.items()}
        loop = asyncio.get_running_loop()
        stop = StopFlag(ctx)

        def report(message: str, percentage: float, scanned: int, found: int) -> None:
            if stop():
                return
            step = functools.partial(ctx.progress, message, percentage, files_scanned=scanned, matches=found)
            try:
                loop.call_soon_threadsafe(step)
            except RuntimeError:  # the loop has closed; nobody is listening any more
                stop.set()

        searcher = _Searcher(
            ctx.workspace, params, pattern, glob, documents, limits.search_max_file_bytes, stop, report
        )
        try:
            outcome = await asyncio.to_thread(searcher.run)
        except _Stopped:
            raise Cancelled("execution cancelled") from None
        finally:
            stop.set()
        key = _cursor_key(
            "search", params.query, params.regex, params.case_sensitive, params.glob, params.include_ignored
        )
        rows, next_cursor = paginate(outcome.matches, _page_params(params, limits), key)
        ctx.progress(
            f"scanned {outcome.files_scanned} files",
            100.0,
            files_scanned=outcome.files_scanned,
            matches=len(outcome.matches),
        )
        return SearchResult(
            items=[
                SearchMatch(path=path, line=line, column=column, end_column=end, preview=preview)
                for path, line, column, end, preview in rows
            ],
            next_cursor=next_cursor,
            total=len(outcome.matches),
            files_scanned=outcome.files_scanned,
            files_skipped=outcome.files_skipped,
            truncated=outcome.truncated,
        )
