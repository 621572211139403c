"""The built-in Python engine: jedi for navigation, completion, hover, signatures and rename; parso and
pyflakes for diagnostics.

Every jedi call runs in a worker thread while holding the shared limiter, so the event loop never
blocks. jedi is not thread-safe (parso reuses and mutates cached trees), so this engine also runs one
jedi call at a time, and keeps that slot until the thread really ends even when the caller gave up.

Unsaved text: the document being asked about is analysed from its snapshot text. Other open documents
are made visible to cross-file questions (definition into them, references in them, rename) by parsing
their unsaved text into parso's module cache before each call; jedi then loads that tree instead of the
file on disk. A closed document's tree is dropped again, so the file on disk is the truth once more.

Positions: the core counts 0-based lines and code points; jedi counts 1-based lines and code-point
columns; pyflakes (through `ast`) reports UTF-8 byte columns, which are converted per line.

jedi, parso and pyflakes are imported where they are used, not with this module: building the engine is
part of start-up (an editor waits for it), the import costs ~40 ms, and `start()` does it in a worker
thread right after, so the first request finds them loaded.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import keyword
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

from ..errors import InvalidParams, PathOutsideRoot
from ..workspace import DocumentSnapshot, Workspace
from .engine import Engine
from .models import (
    CompletionItem,
    CompletionKind,
    Diagnostic,
    DocumentSymbol,
    Hover,
    Location,
    ParameterInfo,
    Position,
    Range,
    Severity,
    SignatureHelp,
    SignatureInfo,
    SymbolInfo,
    SymbolKind,
    TextEdit,
    WorkspaceEdit,
    unique_locations,
)

T = TypeVar("T")

PYTHON_SUFFIXES = (".py", ".pyi")
MAX_DOC_CHARS = 4000  # docstrings longer than this are cut (hover, completion, signature help)

# jedi and parso keep process-wide state (parso's module cache, the compiled-module subprocess), so
# jedi work from different engines (one per workspace) must not overlap either.
_JEDI_THREAD_LOCK = threading.Lock()

_WORD = re.compile(r"\w+")

_JEDI_PARSED_FILE_LIMIT = 30  # jedi stops its reference search after this many files that mention the name
_MAX_FILES_READ = 5000  # files read looking for the ones jedi may have missed
_SKIPPED_FOLDERS = frozenset(
    {".git", ".hg", ".tox", ".nox", ".venv", "venv", ".mypy_cache", "__pycache__", "node_modules"}
)

_COMPLETION_KINDS: dict[str, CompletionKind] = {
    "module": "module",
    "namespace": "module",
    "class": "class",
    "instance": "variable",
    "function": "function",
    "param": "variable",
    "path": "file",
    "keyword": "keyword",
    "property": "property",
    "statement": "variable",
}

_ERROR_MESSAGES = frozenset(
    {
        "UndefinedName",
        "UndefinedLocal",
        "UndefinedExport",
        "DuplicateArgument",
        "ReturnOutsideFunction",
        "YieldOutsideFunction",
        "ContinueOutsideLoop",
        "BreakOutsideLoop",
        "DefaultExceptNotLast",
        "TwoStarredExpressions",
        "TooManyExpressionsInStarredAssignment",
        "ForwardAnnotationSyntaxError",
        "DoctestSyntaxError",
        "LateFutureImport",
        "FutureFeatureNotDefined",
        "ImportStarNotPermitted",
        "LazyImportStarNotPermitted",
        "LazyImportNotAtModuleScope",
        "InvalidPrintSyntax",
    }
)

# First words of a definition's statement that make a name something other than a symbol of its own:
# imports, loop and `with` targets, `except ... as`, comprehension variables, `global` declarations.
_NOT_A_SYMBOL = frozenset({"import", "from", "for", "async", "with", "except", "global", "nonlocal", "del", "lambda"})


@dataclass(frozen=True)
class _OpenDocument:
    rel: str
    path: Path
    text: str
    version: int


@dataclass
class _Call:
    """What one jedi call knows: the open documents as they were when it started."""

    open_documents: dict[str, _OpenDocument]
    relative: dict[Path, str | None] = field(default_factory=dict)


def _cut(text: str | None, limit: int = MAX_DOC_CHARS) -> str | None:
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _lines(text: str) -> list[str]:
    """The lines of `text` the way jedi and parso split them (\\n, \\r\\n and \\r)."""
    import parso.utils

    return list(parso.utils.split_lines(text))


def _to_jedi(lines: Sequence[str], pos: Position) -> tuple[int, int]:
    """Core position -> jedi (1-based line, code-point column), clamped into the text."""
    if pos.line >= len(lines):
        return len(lines), len(lines[-1])
    return pos.line + 1, min(pos.character, len(lines[pos.line]))


def _pos(line: int, column: int) -> Position:
    return Position(line=max(0, line - 1), character=max(0, column))


def _name_range(name: Any) -> Range:
    """The range of the identifier a jedi name stands at."""
    line, column = int(name.line or 1), int(name.column or 0)
    if name.type == "module" and (line, column) == (1, 0):  # the module itself, not a name in it
        return Range(start=_pos(1, 0), end=_pos(1, 0))
    return Range(start=_pos(line, column), end=_pos(line, column + len(str(name.name))))


def _definition_range(name: Any) -> Range:
    """The range of the whole definition (a def's body included), else the identifier's."""
    start = name.get_definition_start_position()
    end = name.get_definition_end_position()
    if start is None or end is None:
        return _name_range(name)
    return Range(start=_pos(*start), end=_pos(*end))


def _first_word(lines: Sequence[str], name: Any) -> str:
    """The first word of the statement that defines `name` ('' when unknown); `lines` is its file."""
    start = name.get_definition_start_position()
    if start is None or not 1 <= start[0] <= len(lines):
        return ""
    match = _WORD.match(lines[start[0] - 1], start[1])
    return match.group() if match else ""


def _definition_first_word(name: Any) -> str:
    """Like `_first_word`, for a name in a file whose text is not at hand (jedi reads the lines)."""
    start = name.get_definition_start_position()
    if start is None or name.line is None or start[0] > name.line:
        return ""
    code = str(name.get_line_code(before=int(name.line) - start[0])).splitlines()
    match = _WORD.match(code[0], start[1]) if code else None
    return match.group() if match else ""


def _decorators(lines: Sequence[str], def_line: int) -> list[str]:
    """The one-line decorators right above the `def` on 1-based line `def_line`."""
    found: list[str] = []
    index = def_line - 2
    while index >= 0 and lines[index].lstrip().startswith("@"):
        found.append(lines[index].strip()[1:])
        index -= 1
    return found


def _is_property(decorators: Iterable[str]) -> bool:
    """`@property`, `@functools.cached_property`, `@x.setter` and the like."""
    for decorator in decorators:
        called = decorator.split("(")[0].strip()
        if called.rsplit(".", 1)[-1] in {"property", "cached_property", "setter", "getter", "deleter"}:
            return True
    return False


def _symbol_kind(name: Any, parent_type: str, decorators: Iterable[str] = ()) -> SymbolKind:
    kind = str(name.type)
    if kind == "class":
        return "class"
    if kind == "module":
        return "module"
    if kind == "function":
        if parent_type == "class":
            return "property" if _is_property(decorators) else "method"
        return "function"
    if parent_type == "class":
        return "field"
    text = str(name.name)
    return "constant" if text.isupper() and parent_type == "module" else "variable"


def _is_method(completion: Any) -> bool:
    """True when a function completion is defined in a class (a jedi internal; False if it moved)."""
    try:
        return bool(completion._name.parent_context.is_class())
    except Exception:
        return False


def _byte_column_to_code_points(line: str, byte_column: int) -> int:
    return len(line.encode("utf-8")[:byte_column].decode("utf-8", errors="ignore"))


def _word_range(lines: Sequence[str], pos: Position) -> Range | None:
    """The identifier under (or just before) `pos`, in code points."""
    if pos.line >= len(lines):
        return None
    for match in _WORD.finditer(lines[pos.line]):
        if match.start() <= pos.character <= match.end():
            return Range(
                start=Position(line=pos.line, character=match.start()),
                end=Position(line=pos.line, character=match.end()),
            )
    return None


class JediEngine(Engine):
    """Python analysis with jedi and pyflakes, inside one workspace."""

    name = "jedi"

    def __init__(
        self,
        workspace: Workspace,
        limiter: asyncio.Semaphore,
        *,
        max_results: int = 2000,
        completion_docs: int = 20,
    ) -> None:
        """`completion_docs`: how many of the first completions carry their docstring (computing a
        docstring may load a module, so the long tail goes without)."""
        self._workspace = workspace
        self._limiter = limiter
        self._max_results = max_results
        self._completion_docs = completion_docs
        self._lock = asyncio.Lock()  # one jedi call of this engine at a time, without holding a slot
        self._pushed: dict[Path, tuple[str, object]] = {}  # worker-thread state: unsaved trees in parso's cache
        self._warming: asyncio.Future[None] | None = None

    @cached_property
    def _project(self) -> Any:
        import jedi

        return jedi.Project(path=self._workspace.root)

    @cached_property
    def _search_project(self) -> Any:
        """Searching by name walks the workspace; with only the root on its sys.path it does not also
        enumerate every module of the interpreter (which takes seconds and lies outside the root)."""
        import jedi

        return jedi.Project(path=self._workspace.root, sys_path=[], smart_sys_path=True)

    async def start(self) -> None:
        """Load jedi, parso's grammar and pyflakes in a worker thread, ahead of the first request."""
        if self._warming is None:
            self._warming = asyncio.ensure_future(asyncio.to_thread(self._warm))

    def _warm(self) -> None:
        import parso.grammar
        import pyflakes.checker

        parso.grammar.load_grammar()
        _ = (self._project, self._search_project, pyflakes.checker)  # builds the cached projects (imports jedi)

    def handles(self, path: str, language_id: str) -> bool:
        """Python documents: language `python` or a `.py`/`.pyi` path."""
        return language_id == "python" or PurePosixPath(path).suffix.lower() in PYTHON_SUFFIXES

    # -- running work off the loop ----------------------------------------------------------------
    def _open_documents(self) -> dict[str, _OpenDocument]:
        docs: dict[str, _OpenDocument] = {}
        for rel, doc in self._workspace.documents.items():
            if PurePosixPath(rel).suffix.lower() in PYTHON_SUFFIXES:
                docs[rel] = _OpenDocument(rel, self._workspace.root / rel, doc.text, doc.version)
        return docs

    async def close(self) -> None:
        """Drop the unsaved trees this engine put in parso's (process-wide) module cache."""
        if self._warming is not None:
            with contextlib.suppress(Exception):
                await self._warming
        await self._run(lambda _call: self._sync_open_documents({}), jedi_call=True, sync=False)

    async def _run(self, work: Callable[[_Call], T], *, jedi_call: bool = True, sync: bool = True) -> T:
        """Run `work` in a worker thread holding the limiter (and, for jedi work, this engine's jedi slot).

        If the caller is cancelled the thread cannot be stopped; the slots are released when it ends, so
        the limiter keeps bounding the threads that really run."""
        if jedi_call:
            await self._lock.acquire()
        try:
            await self._limiter.acquire()
        except BaseException:
            if jedi_call:
                self._lock.release()
            raise

        def release(task: asyncio.Future[T]) -> None:
            self._limiter.release()
            if jedi_call:
                self._lock.release()
            if not task.cancelled():
                task.exception()  # mark it retrieved: the caller may have gone away

        try:
            call = _Call(self._open_documents() if jedi_call else {})
            task = asyncio.ensure_future(asyncio.to_thread(self._in_thread, work, call, jedi_call, sync))
        except BaseException:
            self._limiter.release()
            if jedi_call:
                self._lock.release()
            raise
        task.add_done_callback(release)
        return await asyncio.shield(task)

    def _in_thread(self, work: Callable[[_Call], T], call: _Call, jedi_call: bool, sync: bool) -> T:
        if not jedi_call:
            return work(call)
        with _JEDI_THREAD_LOCK:
            if sync:
                self._sync_open_documents(call.open_documents)
            return work(call)

    def _sync_open_documents(self, open_documents: dict[str, _OpenDocument]) -> None:
        """Make parso's module cache hold every open document's unsaved text, and nothing stale."""
        open_paths = {doc.path for doc in open_documents.values()}
        for path in [p for p in self._pushed if p not in open_paths]:
            _evict(path)
            del self._pushed[path]
        for doc in open_documents.values():
            pushed = self._pushed.get(doc.path)
            if pushed is not None and pushed[0] == doc.text and _cached_item(doc.path) is pushed[1]:
                continue
            # Parsing with the path stores the tree in parso's cache, stamped with the file's mtime; jedi
            # then prefers it to the file until the file changes on disk.
            import jedi

            jedi.Script(code=doc.text, path=doc.path, project=self._project)
            self._pushed[doc.path] = (doc.text, _cached_item(doc.path))

    def _script(self, doc: DocumentSnapshot) -> Any:
        import jedi

        return jedi.Script(code=doc.text, path=self._workspace.root / doc.path, project=self._project)

    def _relative(self, call: _Call, path: Path | None) -> str | None:
        """Root-relative POSIX path of a jedi module path, or None when it lies outside the root."""
        if path is None:
            return None
        if path not in call.relative:
            try:
                call.relative[path] = self._workspace.relative_of_absolute(path)
            except (PathOutsideRoot, OSError):
                call.relative[path] = None
        return call.relative[path]

    def _location(self, call: _Call, name: Any, *, whole: bool = False) -> Location | None:
        rel = self._relative(call, name.module_path)
        if rel is None or name.line is None:
            return None
        return Location(path=rel, range=_definition_range(name) if whole else _name_range(name))

    # -- diagnostics ------------------------------------------------------------------------------
    async def diagnostics(self, doc: DocumentSnapshot) -> list[Diagnostic] | None:
        """Syntax errors (parso's error finder, as jedi reports them) plus pyflakes' findings."""
        if not self.handles(doc.path, doc.language_id):
            return None
        text, path = doc.text, doc.path
        # No jedi state is touched (a fresh parse, no module cache), so this does not wait for jedi work.
        return await self._run(lambda _call: _diagnose(text, path), jedi_call=False)

    # -- completion, hover, signatures --------------------------------------------------------------
    async def complete(self, doc: DocumentSnapshot, pos: Position) -> list[CompletionItem] | None:
        """jedi's completions in its order; each replaces the part of the name already typed.

        The first `completion_docs` items carry their docstring; the rest leave `documentation` empty."""
        if not self.handles(doc.path, doc.language_id):
            return None

        def work(call: _Call) -> list[CompletionItem]:
            lines = _lines(doc.text)
            line, column = _to_jedi(lines, pos)
            items: list[CompletionItem] = []
            for index, completion in enumerate(self._script(doc).complete(line, column)):
                if index >= self._max_results:
                    break
                label = str(completion.name)
                kind = _completion_kind(completion)
                prefix = int(completion.get_completion_prefix_length())
                start = Position(line=line - 1, character=max(0, column - prefix))
                end = Position(line=line - 1, character=column)
                documentation = _cut(completion.docstring()) if index < self._completion_docs else None
                items.append(
                    CompletionItem(
                        label=label,
                        kind=kind,
                        detail=str(completion.description) or None,
                        documentation=documentation,
                        insert_text=label,
                        sort_text=f"{index:05d}",
                        edit=TextEdit(range=Range(start=start, end=end), new_text=label),
                    )
                )
            return items

        return await self._run(work)

    async def hover(self, doc: DocumentSnapshot, pos: Position) -> Hover | Literal[False] | None:
        """A ```python block with the signature (or type) of what is under the cursor, then its docstring."""
        if not self.handles(doc.path, doc.language_id):
            return None

        def work(call: _Call) -> Hover | Literal[False]:
            lines = _lines(doc.text)
            names = self._script(doc).help(*_to_jedi(lines, pos))
            if not names:
                return False
            word = _word_range(lines, pos)
            word_text = lines[word.start.line][word.start.character : word.end.character] if word else None
            code: list[str] = []
            for name in names[:3]:
                for line in _hover_lines(name, word_text):
                    if line not in code:
                        code.append(line)
            docstring = next((d for d in (str(n.docstring(raw=True)) for n in names[:3]) if d.strip()), "")
            contents = "```python\n" + "\n".join(code) + "\n```"
            cut = _cut(docstring.strip())
            if cut:
                contents += "\n\n" + cut
            return Hover(contents=contents, range=word)

        return await self._run(work)

    async def signature_help(self, doc: DocumentSnapshot, pos: Position) -> SignatureHelp | Literal[False] | None:
        """The signatures of the call the cursor is in, with the parameter being typed."""
        if not self.handles(doc.path, doc.language_id):
            return None

        def work(call: _Call) -> SignatureHelp | Literal[False]:
            signatures = self._script(doc).get_signatures(*_to_jedi(_lines(doc.text), pos))
            if not signatures:
                return False
            infos = [
                SignatureInfo(
                    label=str(sig.to_string()),
                    documentation=_cut(str(sig.docstring(raw=True)).strip()),
                    parameters=[ParameterInfo(label=str(p.to_string())) for p in sig.params],
                    active_parameter=sig.index,
                )
                for sig in signatures
            ]
            return SignatureHelp(signatures=infos, active_signature=0)

        return await self._run(work)

    # -- navigation ----------------------------------------------------------------------------------
    async def definition(self, doc: DocumentSnapshot, pos: Position) -> list[Location] | None:
        """Where the name under the cursor is defined, imports followed; places outside the root are left out."""
        if not self.handles(doc.path, doc.language_id):
            return None

        def work(call: _Call) -> list[Location]:
            names = self._script(doc).goto(*_to_jedi(_lines(doc.text), pos), follow_imports=True)
            return unique_locations(self._location(call, n) for n in names)

        return await self._run(work)

    async def references(
        self, doc: DocumentSnapshot, pos: Position, include_declaration: bool
    ) -> list[Location] | None:
        """Every use of the name under the cursor across the workspace (open documents' unsaved text included)."""
        if not self.handles(doc.path, doc.language_id):
            return None

        def work(call: _Call) -> list[Location]:
            names = self._references(call, doc, pos)
            if not include_declaration:
                names = [n for n in names if not _is_declaration(n)]
            return unique_locations(self._location(call, n) for n in names)

        return await self._run(work)

    def _references(self, call: _Call, doc: DocumentSnapshot, pos: Position) -> list[Any]:
        """jedi's references, plus the ones in files jedi leaves out (see `_files_jedi_may_miss`)."""
        script = self._script(doc)
        line, column = _to_jedi(_lines(doc.text), pos)
        names: list[Any] = list(script.get_references(line, column, include_builtins=False, scope="project"))
        if not names:
            return names
        string = str(names[0].name)
        seen = {n.module_path for n in names} | {self._workspace.root / doc.path}
        targets: set[tuple[str, int, int]] | None = None
        import jedi

        for path, text in self._files_jedi_may_miss(call, string, seen):
            if targets is None:
                targets = {_key(d) for d in script.goto(line, column, follow_imports=True)}
            other = jedi.Script(code=text, path=path, project=self._project)
            for name in other.get_names(all_scopes=True, definitions=True, references=True):
                if name.name == string and {_key(d) for d in name.goto(follow_imports=True)} & targets:
                    names.append(name)
        return names

    def _files_jedi_may_miss(self, call: _Call, string: str, seen: set[Path]) -> list[tuple[Path, str]]:
        """Files that use `string` but that jedi's reference search may not have looked at.

        jedi chooses files by reading them from disk (so an open document whose unsaved text alone uses
        the name, or that is not saved at all, is missed), does not search other files for names of one or
        two characters, and stops after 30 files that mention the name."""
        pattern = re.compile(r"(?<!\w)" + re.escape(string) + r"(?!\w)")
        unsaved: list[tuple[Path, str]] = []
        on_disk: list[tuple[Path, str]] = []
        for doc in call.open_documents.values():
            if doc.path not in seen and pattern.search(doc.text):
                unsaved.append((doc.path, doc.text))
        opened = {d.path for d in call.open_documents.values()}
        mentioning = 0
        for path in _python_files(self._workspace.root, _MAX_FILES_READ):
            try:
                disk = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if not pattern.search(disk):
                continue
            mentioning += 1
            if path not in seen and path not in opened:
                on_disk.append((path, disk))
        if len(string) <= 2 or mentioning >= _JEDI_PARSED_FILE_LIMIT:
            return unsaved + on_disk
        return unsaved

    async def rename(self, doc: DocumentSnapshot, pos: Position, new_name: str) -> WorkspaceEdit | None:
        """Replace every reference of the name under the cursor with `new_name`, in every file.

        Refuses names that are not identifiers, keywords, modules (that would move files) and symbols
        defined outside the workspace. Strings and comments that mention the name are left alone."""
        if not self.handles(doc.path, doc.language_id):
            return None
        if not new_name.isidentifier() or keyword.iskeyword(new_name):
            raise InvalidParams(f"{new_name!r} is not a valid Python identifier", data={"new_name": new_name})

        def work(call: _Call) -> WorkspaceEdit:
            script = self._script(doc)
            line, column = _to_jedi(_lines(doc.text), pos)
            definitions = script.goto(line, column, follow_imports=True)
            if not definitions:
                return WorkspaceEdit()
            for definition in definitions:
                if definition.type == "module":
                    raise InvalidParams("renaming a module would move its file; rename the file instead")
                if self._relative(call, definition.module_path) is None:
                    where = definition.module_path or "a built-in module"
                    raise InvalidParams(f"{definition.name!r} is defined outside the workspace ({where})")
            edit = WorkspaceEdit()
            for loc in unique_locations(self._location(call, n) for n in self._references(call, doc, pos)):
                edit.changes.setdefault(loc.path, []).append(TextEdit(range=loc.range, new_text=new_name))
            for path in edit.changes:
                if path == doc.path:
                    edit.versions[path] = doc.version
                else:
                    opened = call.open_documents.get(path)
                    edit.versions[path] = opened.version if opened else None
            return edit

        return await self._run(work)

    # -- symbols -------------------------------------------------------------------------------------
    async def document_symbols(self, doc: DocumentSnapshot) -> list[DocumentSymbol] | None:
        """Classes, functions, methods and module/class-level variables, nested; imports, parameters and
        locals of functions are left out."""
        if not self.handles(doc.path, doc.language_id):
            return None

        def work(call: _Call) -> list[DocumentSymbol]:
            lines = _lines(doc.text)
            roots: list[DocumentSymbol] = []
            by_position: dict[tuple[int, int], DocumentSymbol] = {}
            for name in self._script(doc).get_names(all_scopes=True, definitions=True, references=False):
                kind = str(name.type)
                if kind == "param" or name.line is None:
                    continue
                parent = name.parent()
                parent_type = str(parent.type) if parent is not None else "module"
                if not _is_symbol(lines, name, parent_type):
                    continue
                decorators = _decorators(lines, int(name.line)) if kind == "function" else []
                symbol = DocumentSymbol(
                    name=str(name.name),
                    kind=_symbol_kind(name, parent_type, decorators),
                    range=_definition_range(name),
                    selection_range=_name_range(name),
                    detail=_detail(name),
                )
                if parent_type == "module":
                    roots.append(symbol)
                else:
                    container = by_position.get((int(parent.line or 0), int(parent.column or 0)))
                    if container is None:
                        continue
                    container.children.append(symbol)
                by_position[(int(name.line), int(name.column))] = symbol
            return roots

        return await self._run(work)

    async def find_symbol(self, name_path: str, kind: str | None) -> list[SymbolInfo] | None:
        """Definitions in the workspace whose dotted path ends with `name_path` (`Class.method`,
        `function`, `module.function`); `kind` narrows by symbol kind ("function" also finds methods)."""
        parts = [p for p in name_path.strip().split(".") if p]
        if not parts or not all(p.isidentifier() for p in parts):
            raise InvalidParams(f"{name_path!r} is not a dotted Python name", data={"name_path": name_path})

        def work(call: _Call) -> list[SymbolInfo]:
            found: list[SymbolInfo] = []
            for name in self._search_project.search(parts[-1], all_scopes=True):
                if str(name.name) != parts[-1]:  # jedi matches case-insensitively
                    continue
                info = self._symbol_info(call, name)
                if info is None:
                    continue
                dotted = ".".join(p for p in (str(name.module_name or ""), info.container, info.name) if p)
                if info.kind == "module":
                    dotted = str(name.module_name or info.name)
                if not (dotted == ".".join(parts) or dotted.endswith("." + ".".join(parts))):
                    continue
                if kind is not None and not _kind_matches(kind, info.kind):
                    continue
                found.append(info)
            found.sort(key=lambda s: (s.location.path, s.location.range.start.line, s.location.range.start.character))
            return found[: self._max_results]

        return await self._run(work)

    async def workspace_symbols(self, query: str, language_id: str | None) -> list[SymbolInfo] | None:
        """Definitions in the workspace whose name starts with `query` (any case); exact names first."""
        if language_id is not None and language_id != "python":
            return None
        query = query.strip()

        def work(call: _Call) -> list[SymbolInfo]:
            found: list[SymbolInfo] = []
            for name in self._search_project.complete_search(query, all_scopes=True):
                info = self._symbol_info(call, name)
                if info is not None:
                    found.append(info)
                    if len(found) >= self._max_results:
                        break
            found.sort(key=lambda s: s.name.lower() != query.lower())
            return found

        return await self._run(work)

    def _symbol_info(self, call: _Call, name: Any) -> SymbolInfo | None:
        """A search hit as a SymbolInfo; None for parameters, imports, locals and places outside the root."""
        kind = str(name.type)
        if kind == "param" or self._relative(call, name.module_path) is None:
            return None
        if kind == "module":
            location = self._location(call, name)
            if location is None:
                return None
            return SymbolInfo(name=str(name.name), kind="module", location=location)
        parents: list[str] = []
        parent = name.parent()
        parent_type = str(parent.type) if parent is not None else "module"
        scope = parent
        while scope is not None and scope.type != "module":
            parents.append(str(scope.name))
            scope = scope.parent()
        if parent_type == "function" and kind not in {"function", "class"}:
            return None  # a local variable
        if kind not in {"function", "class"} and _definition_first_word(name) in _NOT_A_SYMBOL:
            return None
        decorators: list[str] = []
        if kind == "function" and parent_type == "class":
            before = str(name.get_line_code(before=3)).splitlines()
            decorators = _decorators(before, len(before))
        location = self._location(call, name, whole=True)
        if location is None:
            return None
        return SymbolInfo(
            name=str(name.name),
            kind=_symbol_kind(name, parent_type, decorators),
            location=location,
            container=".".join(reversed(parents)) or None,
        )


# -- helpers that run in the worker thread ------------------------------------------------------------
def _cached_item(path: Path) -> object | None:
    import parso.cache

    for by_path in parso.cache.parser_cache.values():
        item = by_path.get(path)
        if item is not None:
            return item  # type: ignore[no-any-return]
    return None


def _evict(path: Path) -> None:
    import parso.cache

    for by_path in parso.cache.parser_cache.values():
        by_path.pop(path, None)


def _python_files(root: Path, limit: int) -> Iterator[Path]:
    """Python files under `root` (no symlinks, no virtualenvs or caches), at most `limit` of them."""
    count = 0
    for directory, folders, files in os.walk(root):
        folders[:] = sorted(f for f in folders if f not in _SKIPPED_FOLDERS)
        for file in sorted(files):
            path = Path(directory, file)
            if path.suffix in PYTHON_SUFFIXES and not path.is_symlink():
                yield path
                count += 1
                if count >= limit:
                    return


def _key(name: Any) -> tuple[str, int, int]:
    return (str(name.module_path), int(name.line or 0), int(name.column or 0))


def _is_declaration(name: Any) -> bool:
    """A name that defines the symbol itself (not an import of it, which jedi also calls a definition)."""
    if not name.is_definition():
        return False
    targets = name.goto(follow_imports=True)
    return not targets or any(_key(target) == _key(name) for target in targets)


def _completion_kind(completion: Any) -> CompletionKind | None:
    kind = str(completion.type)
    if kind == "function" and _is_method(completion):
        return "method"
    if kind == "path":
        return "folder" if str(completion.name).endswith(("/", "\\")) else "file"
    if kind == "statement" and str(completion.name).isupper():
        return "constant"
    return _COMPLETION_KINDS.get(kind)


def _hover_lines(name: Any, word: str | None) -> list[str]:
    kind = str(name.type)
    if kind in {"function", "class"}:
        keyword_ = "def" if kind == "function" else "class"
        signatures = [f"{keyword_} {s.to_string()}" for s in name.get_signatures()]
        return signatures or [f"{keyword_} {name.name}"]
    if kind == "module":
        return [f"module {name.full_name or name.name}"]
    if kind == "instance":
        hint = name.get_type_hint() or name.name
        return [f"{word}: {hint}" if word else str(hint)]
    if kind == "keyword":
        return [f"keyword {name.name}"]
    return [str(name.description)]


def _detail(name: Any) -> str | None:
    if name.type == "function":
        signatures = name.get_signatures()
        if signatures:
            text = str(signatures[0].to_string())
            return text[len(str(name.name)) :] if text.startswith(str(name.name)) else text
        return None
    if name.type == "class":
        return None
    return _cut(str(name.description), 120)


def _is_symbol(lines: Sequence[str], name: Any, parent_type: str) -> bool:
    kind = str(name.type)
    first = _first_word(lines, name)
    if kind in {"function", "class"} and first in {"def", "class"}:
        return True
    if parent_type == "function":
        return False  # locals
    return first not in _NOT_A_SYMBOL and not keyword.iskeyword(first)


def _kind_matches(wanted: str, actual: SymbolKind) -> bool:
    if wanted == actual:
        return True
    if wanted == "function":
        return actual in {"method", "property"}
    if wanted == "variable":
        return actual in {"constant", "field"}
    return False


def _diagnose(text: str, path: str) -> list[Diagnostic]:
    """parso's syntax errors, then (when the text parses) pyflakes' messages."""
    import parso.grammar
    import pyflakes.checker

    lines = _lines(text)
    grammar = parso.grammar.load_grammar()
    diagnostics: list[Diagnostic] = []
    for issue in grammar.iter_errors(grammar.parse(text, error_recovery=True)):
        kind, _, message = str(issue.message).partition(": ")
        diagnostics.append(
            Diagnostic(
                range=Range(start=_pos(*issue.start_pos), end=_pos(*issue.end_pos)),
                severity="error",
                message=message or kind,
                source="jedi",
                code=kind if message else "SyntaxError",
            )
        )
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as exc:
        if not diagnostics:  # something the parser accepts but the compiler does not
            line, column = exc.lineno or 1, max(0, (exc.offset or 1) - 1)
            diagnostics.append(
                Diagnostic(
                    range=Range(start=_pos(line, column), end=_pos(line, column)),
                    severity="error",
                    message=exc.msg,
                    source="pyflakes",
                    code=type(exc).__name__,
                )
            )
        return diagnostics
    except (ValueError, RecursionError, MemoryError):
        return diagnostics
    checker = pyflakes.checker.Checker(tree, filename=path)
    for message in sorted(checker.messages, key=lambda m: (m.lineno, m.col)):
        diagnostics.append(_pyflakes_diagnostic(lines, message))
    return diagnostics


def _pyflakes_diagnostic(lines: Sequence[str], message: Any) -> Diagnostic:
    code = type(message).__name__
    severity: Severity = "error" if code in _ERROR_MESSAGES else "warning"
    index = min(max(0, int(message.lineno) - 1), len(lines) - 1)
    line = lines[index]
    start = _byte_column_to_code_points(line, int(message.col))
    end = len(line.rstrip())
    args = getattr(message, "message_args", ())
    if args and isinstance(args[0], str):
        subject = args[0]
        candidates = [subject, subject.rpartition(" as ")[2], subject.rsplit(".", 1)[-1]]
        for candidate in candidates:
            found = re.search(r"(?<!\w)" + re.escape(candidate) + r"(?!\w)", line[start:])
            if candidate and found:
                start, end = start + found.start(), start + found.end()
                break
    end = max(start, end)
    return Diagnostic(
        range=Range(start=Position(line=index, character=start), end=Position(line=index, character=end)),
        severity=severity,
        message=str(message.message % message.message_args),
        source="pyflakes",
        code=code,
    )


__all__ = ["JediEngine"]
