"""The tree-sitter engine: outlines, syntax errors, word completion and a workspace symbol index for
every grammar tree-sitter-language-pack ships (about 170, offline).

Open documents keep a tree that each change edits and reparses incrementally. The symbol index is
built in the background (worker threads, behind the shared limiter), follows open documents' unsaved
text, and follows the disk through a `watchfiles.awatch` task. Positions in and out are code points;
tree-sitter's byte offsets are converted at the edge of this module (`_LineMap`).

tree-sitter-language-pack (its list of grammars) and watchfiles (anyio with it) are imported when first
needed, not with this module: building the engine is part of start-up, which an editor waits for.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
import os
import re
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final, TypeVar, cast, get_args

from tree_sitter import Language, Node, Parser, Point, Query, QueryCursor, QueryError, Tree

from ..capabilities.files import GitIgnoreFilter
from ..config import AnalysisConfig
from ..errors import PathOutsideRoot
from ..workspace import Document, DocumentSnapshot, TextChange, Workspace
from .engine import Engine, EngineUnavailable
from .models import (
    CompletionItem,
    CompletionKind,
    Diagnostic,
    DocumentSymbol,
    Position,
    Range,
    SymbolInfo,
    SymbolKind,
    TextEdit,
)
from .symbol_index import IndexEntry, SymbolIndex

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any

    from tree_sitter_language_pack import SupportedLanguage
    from watchfiles import Change, DefaultFilter

log = logging.getLogger("gateway.analysis.treesitter")

T = TypeVar("T")

INLINE_BYTES: Final = 64 * 1024
"""Documents up to this size are parsed and analysed on the event loop: a thread hop costs more."""
INDEX_CHUNK_FILES: Final = 64
"""The index build hands files to worker threads in chunks of at most this many files..."""
INDEX_CHUNK_BYTES: Final = 2 * 1024 * 1024
"""...or this many bytes, so interactive requests get the limiter between chunks."""
BINARY_SNIFF_BYTES: Final = 8192
MAX_DIAGNOSTICS: Final = 100
MAX_SYMBOL_DEPTH: Final = 64
MAX_NAME_CHARS: Final = 200
MAX_DETAIL_CHARS: Final = 80
MAX_PENDING_EDITS: Final = 1000
"""Past this many unparsed edits a document is parsed from scratch instead."""
SCRATCH_TREES: Final = 16
"""Parses of documents that are not open (files on disk) kept for repeated requests."""

_UTF8: Final = "utf-8"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LINE_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")
_WHITESPACE = re.compile(r"\s+")
_CONSTANT_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_WORD = re.compile(r"[^\W\d]\w*")


# -- languages -----------------------------------------------------------------------------------------
@functools.cache
def pack_languages() -> frozenset[str]:
    """The grammar names tree-sitter-language-pack ships."""
    from tree_sitter_language_pack import SupportedLanguage

    return frozenset(get_args(SupportedLanguage))


LANGUAGE_IDS: Final[dict[str, str]] = {
    "typescriptreact": "tsx",
    "javascriptreact": "javascript",
    "jsx": "javascript",
    "shellscript": "bash",
    "sh": "bash",
    "zsh": "bash",
    "c_sharp": "csharp",
    "cs": "csharp",
    "objective-c": "objc",
    "objective-cpp": "objc",
    "cuda-cpp": "cuda",
    "jsonc": "json",
    "json5": "json",
    "restructuredtext": "rst",
    "tex": "latex",
    "makefile": "make",
    "viml": "vim",
    "lisp": "commonlisp",
    "systemverilog": "verilog",
    "proto3": "proto",
    "protobuf": "proto",
    "erb": "embeddedtemplate",
    "terraform-vars": "terraform",
    "bazel": "starlark",
    "fortran-modern": "fortran",
    "fortran_fixed-form": "fortran",
    "ocaml.interface": "ocaml_interface",
    "git-commit": "gitcommit",
    "ignore": "gitignore",
    "pip-requirements": "requirements",
    "ps1": "powershell",
    "pwsh": "powershell",
    "yml": "yaml",
    "golang": "go",
    "rs": "rust",
    "py": "python",
    "rb": "ruby",
    "js": "javascript",
    "ts": "typescript",
    "kt": "kotlin",
    "c++": "cpp",
}
"""LSP language ids (and common aliases) that differ from the pack's grammar names."""

EXTENSIONS: Final[dict[str, str]] = {
    **dict.fromkeys((".py", ".pyi", ".pyw", ".py3"), "python"),
    **dict.fromkeys((".ts", ".mts", ".cts"), "typescript"),
    ".tsx": "tsx",
    **dict.fromkeys((".js", ".mjs", ".cjs", ".jsx"), "javascript"),
    ".go": "go",
    ".rs": "rust",
    **dict.fromkeys((".c", ".h"), "c"),
    **dict.fromkeys((".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".ipp", ".inl", ".tpp"), "cpp"),
    **dict.fromkeys((".cu", ".cuh"), "cuda"),
    ".ino": "arduino",
    ".java": "java",
    **dict.fromkeys((".rb", ".rake", ".gemspec", ".ru"), "ruby"),
    ".cs": "csharp",
    **dict.fromkeys((".kt", ".kts"), "kotlin"),
    **dict.fromkeys((".php", ".phtml"), "php"),
    ".lua": "lua",
    ".luau": "luau",
    **dict.fromkeys((".sh", ".bash", ".zsh", ".ksh"), "bash"),
    ".fish": "fish",
    **dict.fromkeys((".scala", ".sc", ".sbt"), "scala"),
    ".swift": "swift",
    **dict.fromkeys((".m", ".mm"), "objc"),
    ".dart": "dart",
    **dict.fromkeys((".ex", ".exs"), "elixir"),
    ".heex": "heex",
    **dict.fromkeys((".erl", ".hrl"), "erlang"),
    **dict.fromkeys((".hs", ".lhs"), "haskell"),
    ".ml": "ocaml",
    ".mli": "ocaml_interface",
    **dict.fromkeys((".fs", ".fsx"), "fsharp"),
    ".fsi": "fsharp_signature",
    **dict.fromkeys((".clj", ".cljs", ".cljc", ".edn"), "clojure"),
    ".el": "elisp",
    **dict.fromkeys((".lisp", ".lsp", ".cl"), "commonlisp"),
    **dict.fromkeys((".scm", ".ss"), "scheme"),
    ".rkt": "racket",
    ".fnl": "fennel",
    ".janet": "janet",
    ".jl": "julia",
    ".r": "r",
    **dict.fromkeys((".pl", ".pm", ".t"), "perl"),
    **dict.fromkeys((".ps1", ".psm1", ".psd1"), "powershell"),
    ".zig": "zig",
    **dict.fromkeys((".nim", ".nims"), "nim"),
    ".odin": "odin",
    ".v": "verilog",
    **dict.fromkeys((".sv", ".svh", ".vh"), "verilog"),
    **dict.fromkeys((".vhd", ".vhdl"), "vhdl"),
    ".sol": "solidity",
    ".proto": "proto",
    ".thrift": "thrift",
    ".capnp": "capnp",
    ".smithy": "smithy",
    **dict.fromkeys((".graphql", ".gql"), "graphql"),
    ".sql": "sql",
    **dict.fromkeys((".html", ".htm", ".xhtml"), "html"),
    ".css": "css",
    ".scss": "scss",
    **dict.fromkeys((".json", ".jsonc", ".json5", ".geojson"), "json"),
    **dict.fromkeys((".jsonnet", ".libsonnet"), "jsonnet"),
    **dict.fromkeys((".yaml", ".yml"), "yaml"),
    ".toml": "toml",
    **dict.fromkeys((".xml", ".xsd", ".xsl", ".xslt", ".svg", ".plist", ".csproj"), "xml"),
    ".dtd": "dtd",
    **dict.fromkeys((".md", ".markdown", ".mdown"), "markdown"),
    ".rst": "rst",
    **dict.fromkeys((".tex", ".sty", ".cls"), "latex"),
    ".bib": "bibtex",
    ".typ": "typst",
    ".org": "org",
    ".hcl": "hcl",
    **dict.fromkeys((".tf", ".tfvars"), "terraform"),
    ".nix": "nix",
    ".vim": "vim",
    ".cmake": "cmake",
    ".mk": "make",
    ".dockerfile": "dockerfile",
    **dict.fromkeys((".groovy", ".gradle", ".gvy"), "groovy"),
    **dict.fromkeys((".hack", ".hhi"), "hack"),
    ".hx": "haxe",
    ".elm": "elm",
    ".purs": "purescript",
    ".gleam": "gleam",
    **dict.fromkeys((".pas", ".dpr", ".lpr"), "pascal"),
    **dict.fromkeys((".f", ".for", ".f77", ".f90", ".f95", ".f03", ".f08"), "fortran"),
    **dict.fromkeys((".cob", ".cbl", ".cpy"), "cobol"),
    **dict.fromkeys((".ada", ".adb", ".ads"), "ada"),
    ".d": "d",
    **dict.fromkeys((".glsl", ".vert", ".frag", ".geom", ".comp", ".tesc", ".tese"), "glsl"),
    ".hlsl": "hlsl",
    ".wgsl": "wgsl",
    ".wat": "wat",
    ".wast": "wast",
    ".svelte": "svelte",
    ".vue": "vue",
    ".astro": "astro",
    ".prisma": "prisma",
    ".kdl": "kdl",
    ".ron": "ron",
    ".tcl": "tcl",
    ".pony": "pony",
    ".gd": "gdscript",
    ".bicep": "bicep",
    **dict.fromkeys((".star", ".bzl", ".bazel"), "starlark"),
    **dict.fromkeys((".gn", ".gni"), "gn"),
    ".ninja": "ninja",
    ".cairo": "cairo",
    **dict.fromkeys((".sparql", ".rq"), "sparql"),
    ".rego": "rego",
    ".pp": "puppet",
    ".po": "po",
    ".properties": "properties",
    **dict.fromkeys((".ini", ".cfg"), "ini"),
    ".csv": "csv",
    ".tsv": "tsv",
    ".twig": "twig",
    ".erb": "embeddedtemplate",
    ".ll": "llvm",
    ".td": "tablegen",
    ".ispc": "ispc",
    ".smali": "smali",
    ".nqc": "nqc",
    ".nut": "squirrel",
    ".ha": "hare",
    ".agda": "agda",
    **dict.fromkeys((".asm", ".s"), "asm"),
    ".beancount": "beancount",
    ".magik": "magik",
    ".qml": "qmljs",
    ".yuck": "yuck",
    **dict.fromkeys((".mermaid", ".mmd"), "mermaid"),
    ".ld": "linkerscript",
    ".apex": "apex",
    ".bsl": "bsl",
    ".func": "func",
    ".ungram": "ungrammar",
    ".re2c": "re2c",
    ".scm.query": "query",
    ".pem": "pem",
    ".meson": "meson",
    ".vhs": "bash",
}
"""File suffixes (lower case) to the pack's grammar names."""

FILENAMES: Final[dict[str, str]] = {
    "dockerfile": "dockerfile",
    "containerfile": "dockerfile",
    "makefile": "make",
    "gnumakefile": "make",
    "cmakelists.txt": "cmake",
    "rakefile": "ruby",
    "gemfile": "ruby",
    "podfile": "ruby",
    "vagrantfile": "ruby",
    "build": "starlark",
    "build.bazel": "starlark",
    "workspace": "starlark",
    "tiltfile": "starlark",
    "meson.build": "meson",
    "go.mod": "gomod",
    "go.sum": "gosum",
    ".gitignore": "gitignore",
    ".gitattributes": "gitattributes",
    "requirements.txt": "requirements",
    ".bashrc": "bash",
    ".bash_profile": "bash",
    ".zshrc": "bash",
    ".profile": "bash",
    "pkgbuild": "bash",
    "justfile": "make",
}
"""Whole file names (lower case) that say the language better than a suffix."""

NOT_INDEXED: Final[frozenset[str]] = frozenset(
    {
        "json",
        "yaml",
        "toml",
        "xml",
        "dtd",
        "html",
        "css",
        "scss",
        "markdown",
        "markdown_inline",
        "rst",
        "org",
        "latex",
        "bibtex",
        "csv",
        "tsv",
        "psv",
        "ini",
        "properties",
        "po",
        "pem",
        "gitignore",
        "gitattributes",
        "gitcommit",
        "requirements",
        "gosum",
        "comment",
        "jsdoc",
        "luadoc",
        "doxygen",
        "printf",
        "luap",
        "regex",
        "udev",
        "readline",
        "xcompose",
        "pymanifest",
    }
)
"""Data, markup and documentation grammars: outlined and checked, but kept out of the symbol index."""


def language_for_path(path: str) -> str | None:
    """The pack grammar name for a file, from its name or suffix; None when unknown."""
    name = PurePosixPath(path).name.lower()
    by_name = FILENAMES.get(name)
    if by_name is not None:
        return by_name
    suffix = PurePosixPath(name).suffix
    if not suffix:
        return None
    return EXTENSIONS.get(suffix)


def language_for_id(language_id: str | None) -> str | None:
    """The pack grammar name for an LSP language id (or a pack name); None when unknown."""
    if not language_id:
        return None
    lid = language_id.strip().lower()
    mapped = LANGUAGE_IDS.get(lid)
    if mapped is not None:
        return mapped
    return lid if lid in pack_languages() else None


_LANGUAGE_CACHE: dict[str, Language | None] = {}
_LANGUAGE_LOCK = threading.Lock()


def load_language(name: str) -> Language | None:
    """The grammar `name` from tree-sitter-language-pack (cached); None when the pack cannot load it."""
    try:
        return _LANGUAGE_CACHE[name]
    except KeyError:
        pass
    with _LANGUAGE_LOCK:
        if name not in _LANGUAGE_CACHE:
            language: Language | None = None
            if name in pack_languages():
                from tree_sitter_language_pack import get_language

                try:
                    language = get_language(cast("SupportedLanguage", name))
                except Exception:
                    log.warning("tree-sitter grammar %r failed to load", name, exc_info=True)
            _LANGUAGE_CACHE[name] = language
        return _LANGUAGE_CACHE[name]


_THREAD_STATE = threading.local()


def _parser(name: str) -> Parser:
    """This thread's parser for `name`: tree-sitter parsers must not be shared between threads."""
    parsers: dict[str, Parser] | None = getattr(_THREAD_STATE, "parsers", None)
    if parsers is None:
        parsers = _THREAD_STATE.parsers = {}
    parser = parsers.get(name)
    if parser is None:
        language = load_language(name)
        if language is None:
            raise LookupError(f"no tree-sitter grammar for {name!r}")
        parser = parsers[name] = Parser(language)
    return parser


def _encode(text: str) -> bytes:
    return text.encode(_UTF8, errors="surrogatepass")


def _decode(data: bytes) -> str:
    try:
        return data.decode(_UTF8, errors="surrogatepass")
    except UnicodeDecodeError:
        return data.decode(_UTF8, errors="replace")


# -- positions -----------------------------------------------------------------------------------------
class _LineMap:
    """Byte offsets of one text to code-point positions, with the workspace's line breaks (\\r\\n, \\r, \\n)."""

    __slots__ = ("ascii", "byte_starts", "char_starts", "data", "text")

    def __init__(self, text: str, data: bytes) -> None:
        self.text = text
        self.data = data
        self.ascii = len(text) == len(data)
        self.char_starts = [0, *(m.end() for m in _LINE_BREAK.finditer(text))]
        if self.ascii:
            self.byte_starts = self.char_starts
        else:
            self.byte_starts = [0, *(m.end() for m in _LINE_BREAK_BYTES.finditer(data))]

    def line_char(self, offset: int) -> tuple[int, int]:
        """(line, character) of a byte offset."""
        line = bisect.bisect_right(self.byte_starts, offset) - 1
        start = self.byte_starts[line]
        if self.ascii:
            return line, offset - start
        chunk = self.data[start:offset]
        if chunk.isascii():
            return line, len(chunk)
        try:
            return line, len(chunk.decode(_UTF8, errors="surrogatepass"))
        except UnicodeDecodeError:
            return line, len(chunk.decode(_UTF8, errors="ignore"))

    def position(self, offset: int) -> Position:
        """The code-point position of a byte offset."""
        line, character = self.line_char(offset)
        return Position.model_construct(line=line, character=character)

    def range(self, start: int, end: int) -> Range:
        """The code-point range of a byte range."""
        return Range.model_construct(start=self.position(start), end=self.position(end))

    def line_text(self, line: int) -> str:
        """The text of `line` without its line break ('' past the end)."""
        starts = self.char_starts
        if line < 0 or line >= len(starts):
            return ""
        end = starts[line + 1] if line + 1 < len(starts) else len(self.text)
        return self.text[starts[line] : end].rstrip("\r\n")

    def line_end_byte(self, line: int) -> int:
        """The byte offset where `line`'s content ends (before its line break)."""
        if line + 1 < len(self.byte_starts):
            end = self.byte_starts[line + 1]
            while end > self.byte_starts[line] and self.data[end - 1 : end] in (b"\n", b"\r"):
                end -= 1
            return end
        return len(self.data)


_Edit = tuple[int, int, int, Point, Point, Point]


def _advance(point: Point, chunk: bytes) -> Point:
    """The tree-sitter point after `chunk` when it starts at `point` (rows count \\n only, like tree-sitter)."""
    breaks = chunk.count(b"\n")
    if not breaks:
        return Point(point.row, point.column + len(chunk))
    return Point(point.row + breaks, len(chunk) - chunk.rfind(b"\n") - 1)


def edits_for_changes(previous_text: str, changes: Sequence[TextChange]) -> tuple[list[_Edit], str] | None:
    """The tree-sitter edits (bytes and points) that turn `previous_text` into the returned text, applying
    `changes` in order exactly as the workspace does; None when a change replaces the whole text."""
    text = previous_text
    edits: list[_Edit] = []
    for change in changes:
        if change.range is None:
            return None
        doc = Document("", text, 0, "")
        start = doc.offset_at(change.range.start)
        end = doc.offset_at(change.range.end)
        if end < start:
            return None
        prefix = _encode(text[:start])
        removed = _encode(text[start:end])
        inserted = _encode(change.text)
        start_byte = len(prefix)
        start_point = Point(prefix.count(b"\n"), len(prefix) - prefix.rfind(b"\n") - 1)
        edits.append(
            (
                start_byte,
                start_byte + len(removed),
                start_byte + len(inserted),
                start_point,
                _advance(start_point, removed),
                _advance(start_point, inserted),
            )
        )
        text = text[:start] + change.text + text[end:]
    return edits, text


# -- symbols -------------------------------------------------------------------------------------------
@dataclass(slots=True, eq=False)
class _Sym:
    """A symbol while it is extracted: byte ranges, later converted to code points."""

    name: str
    kind: SymbolKind
    start: int
    end: int
    sel_start: int
    sel_end: int
    detail: str | None = None
    scope: tuple[str, ...] = ()  # extra container parts: a Go receiver, a C++ `ns::Class::` qualifier
    container_name: str | None = None  # what children see as this symbol's container part (Rust impl: the type)
    indexed: bool = True
    children: list[_Sym] = field(default_factory=list)


_SYMBOL_KINDS: Final[frozenset[str]] = frozenset(get_args(SymbolKind))
_TYPE_KINDS: Final[frozenset[str]] = frozenset({"class", "struct", "interface", "enum", "object"})
_CALLABLE_KINDS: Final[frozenset[str]] = frozenset({"function", "method", "constructor"})
_DATA_KINDS: Final[frozenset[str]] = frozenset({"variable", "constant", "field", "property"})
_FUNCTION_VALUES: Final[frozenset[str]] = frozenset(
    {"arrow_function", "function_expression", "function", "generator_function", "lambda"}
)

_C_PATTERNS: Final = (
    "(function_definition declarator: (_) @declarator) @def.cfunction",
    "(translation_unit (declaration declarator: (_) @declarator) @def.cdecl)",
    "(translation_unit (type_definition declarator: (_) @declarator) @def.typedef)",
    "(preproc_ifdef (declaration declarator: (_) @declarator) @def.cdecl)",
    "(preproc_if (declaration declarator: (_) @declarator) @def.cdecl)",
    "(preproc_else (declaration declarator: (_) @declarator) @def.cdecl)",
    "(preproc_ifdef (type_definition declarator: (_) @declarator) @def.typedef)",
    "(preproc_if (type_definition declarator: (_) @declarator) @def.typedef)",
    "(struct_specifier name: (_) @name body: (_)) @def.struct",
    "(union_specifier name: (_) @name body: (_)) @def.struct",
    "(enum_specifier name: (_) @name body: (_)) @def.enum",
    "(enumerator name: (_) @name) @def.enum_member",
    "(field_declaration declarator: (_) @declarator) @def.cfield",
    "(preproc_def name: (_) @name) @def.constant",
    "(preproc_function_def name: (_) @name) @def.function",
)
_CPP_PATTERNS: Final = (
    *_C_PATTERNS,
    "(namespace_definition name: (_) @name) @def.namespace",
    "(class_specifier name: (_) @name body: (_)) @def.class",
    "(alias_declaration name: (_) @name) @def.type_parameter",
    "(field_declaration_list (declaration declarator: (_) @declarator) @def.cfield)",
    "(declaration_list (declaration declarator: (_) @declarator) @def.cdecl)",
    "(declaration_list (type_definition declarator: (_) @declarator) @def.typedef)",
    "(template_declaration (declaration declarator: (_) @declarator) @def.cdecl)",
    "(concept_definition name: (_) @name) @def.interface",
)
_JS_PATTERNS: Final = (
    "(class_declaration name: (_) @name) @def.class",
    "(class name: (_) @name) @def.class",
    "(function_declaration name: (_) @name) @def.function",
    "(generator_function_declaration name: (_) @name) @def.function",
    "(method_definition name: (_) @name) @def.method",
    "(field_definition property: (_) @name) @def.prop",
    "(program (lexical_declaration (variable_declarator name: (identifier) @name) @def.var))",
    "(program (variable_declaration (variable_declarator name: (identifier) @name) @def.var))",
    "(program (export_statement declaration: (lexical_declaration"
    " (variable_declarator name: (identifier) @name) @def.var)))",
    "(program (export_statement declaration: (variable_declaration"
    " (variable_declarator name: (identifier) @name) @def.var)))",
)
_TS_PATTERNS: Final = (
    *(pattern for pattern in _JS_PATTERNS if "field_definition" not in pattern),
    "(abstract_class_declaration name: (_) @name) @def.class",
    "(interface_declaration name: (_) @name) @def.interface",
    "(enum_declaration name: (_) @name) @def.enum",
    "(enum_body name: (_) @name @def.enum_member)",
    "(enum_assignment name: (_) @name) @def.enum_member",
    "(type_alias_declaration name: (_) @name) @def.type_parameter",
    "(function_signature name: (_) @name) @def.function",
    "(method_signature name: (_) @name) @def.method",
    "(abstract_method_signature name: (_) @name) @def.method",
    "(property_signature name: (_) @name) @def.property",
    "(public_field_definition name: (_) @name) @def.prop",
    "(internal_module name: (_) @name) @def.namespace",
    "(module name: (_) @name) @def.module",
)
SYMBOL_PATTERNS: Final[dict[str, tuple[str, ...]]] = {
    "python": (
        "(class_definition name: (identifier) @name) @def.class",
        "(function_definition name: (identifier) @name) @def.function",
        "(module (expression_statement (assignment left: (identifier) @name) @def.var))",
        "(module (assignment left: (identifier) @name) @def.var)",
        "(class_definition body: (block (expression_statement (assignment left: (identifier) @name) @def.attr)))",
        "(class_definition body: (block (assignment left: (identifier) @name) @def.attr))",
        "(module (type_alias_statement (type (identifier) @name)) @def.type_parameter)",
    ),
    "javascript": _JS_PATTERNS,
    "typescript": _TS_PATTERNS,
    "tsx": _TS_PATTERNS,
    "go": (
        "(function_declaration name: (_) @name) @def.function",
        "(method_declaration receiver: (parameter_list (parameter_declaration type: [(type_identifier) @scope"
        " (pointer_type (type_identifier) @scope) (generic_type type: (type_identifier) @scope)"
        " (pointer_type (generic_type type: (type_identifier) @scope))])) name: (_) @name) @def.method",
        "(method_declaration name: (_) @name) @def.method",
        "(type_spec name: (_) @name type: (struct_type)) @def.struct",
        "(type_spec name: (_) @name type: (interface_type)) @def.interface",
        "(type_spec name: (_) @name) @def.class",
        "(type_alias name: (_) @name) @def.type_parameter",
        "(source_file (const_declaration (const_spec name: (_) @name) @def.constant))",
        "(source_file (var_declaration (var_spec name: (_) @name) @def.variable))",
        "(source_file (var_declaration (var_spec_list (var_spec name: (_) @name) @def.variable)))",
        "(field_declaration_list (field_declaration name: (_) @name) @def.field)",
        "(interface_type (method_elem name: (_) @name) @def.method)",
    ),
    "rust": (
        "(function_item name: (_) @name) @def.function",
        "(function_signature_item name: (_) @name) @def.function",
        "(struct_item name: (_) @name) @def.struct",
        "(union_item name: (_) @name) @def.struct",
        "(enum_item name: (_) @name) @def.enum",
        "(enum_variant name: (_) @name) @def.enum_member",
        "(trait_item name: (_) @name) @def.interface",
        "(type_item name: (_) @name) @def.type_parameter",
        "(const_item name: (_) @name) @def.constant",
        "(static_item name: (_) @name) @def.constant",
        "(mod_item name: (_) @name) @def.module",
        "(macro_definition name: (_) @name) @def.function",
        "(field_declaration_list (field_declaration name: (_) @name) @def.field)",
        "(impl_item trait: (_) @impl_trait type: (_) @impl_type) @def.impl",
        "(impl_item type: (_) @impl_type) @def.impl",
    ),
    "c": _C_PATTERNS,
    "cpp": _CPP_PATTERNS,
    "cuda": _CPP_PATTERNS,
    "arduino": _CPP_PATTERNS,
    "java": (
        "(class_declaration name: (_) @name) @def.class",
        "(interface_declaration name: (_) @name) @def.interface",
        "(enum_declaration name: (_) @name) @def.enum",
        "(enum_constant name: (_) @name) @def.enum_member",
        "(record_declaration name: (_) @name) @def.class",
        "(annotation_type_declaration name: (_) @name) @def.interface",
        "(method_declaration name: (_) @name) @def.method",
        "(constructor_declaration name: (_) @name) @def.constructor",
        "(compact_constructor_declaration name: (_) @name) @def.constructor",
        "(annotation_type_element_declaration name: (_) @name) @def.method",
        "(field_declaration declarator: (variable_declarator name: (_) @name)) @def.jfield",
        "(constant_declaration declarator: (variable_declarator name: (_) @name)) @def.constant",
    ),
    "ruby": (
        "(module name: (_) @name) @def.module",
        "(class name: (_) @name) @def.class",
        "(method name: (_) @name) @def.method",
        "(singleton_method name: (_) @name) @def.method",
        "(program (assignment left: (constant) @name) @def.constant)",
        "(body_statement (assignment left: (constant) @name) @def.constant)",
        "(call method: (identifier) @_attr arguments: (argument_list (simple_symbol) @name)"
        ' (#match? @_attr "^attr_(reader|writer|accessor)$")) @def.property',
    ),
    "markdown": (
        "(section (atx_heading heading_content: (_) @name)) @def.string",
        "(section (setext_heading heading_content: (_) @name)) @def.string",
    ),
    "json": ("(pair key: (string (string_content) @name)) @def.key",),
    "yaml": (
        "(block_mapping_pair key: (_) @name) @def.key",
        "(flow_pair key: (_) @name) @def.key",
    ),
    "toml": (
        "(table [(bare_key) (dotted_key) (quoted_key)] @name) @def.module",
        "(table_array_element [(bare_key) (dotted_key) (quoted_key)] @name) @def.array",
        "(pair [(bare_key) (dotted_key) (quoted_key)] @name) @def.key",
    ),
}
"""Symbol queries of the languages outlined by hand; other grammars get the generic outline.

`@def.<tag>` captures the symbol's node (the tag is a SymbolKind or one of the refinements handled in
`_make_symbol`), `@name` its name, `@declarator` a C declarator to resolve, `@scope` a container part."""

_GENERIC_TYPE = re.compile(r"_(definition|declaration|item|specifier)$|^(class|module|method|function|object)$")
_GENERIC_SKIP = re.compile(
    r"import|include|using|use_|export|extern|parameter|argument|label|expression|statement|comment|attribute|"
    r"modifier|template|generic|lambda|anonymous|closure|annotation_type_element|accessor"
)
_GENERIC_KINDS: Final[tuple[tuple[re.Pattern[str], SymbolKind], ...]] = (
    (re.compile(r"enum_(member|entry|constant|variant|case|field)|enumerator"), "enum_member"),
    (re.compile(r"constructor|init_declaration|deinit"), "constructor"),
    (re.compile(r"method"), "method"),
    (re.compile(r"func|procedure|subroutine|macro|^fn_|_fn$|operator_declaration|^def"), "function"),
    (re.compile(r"interface|protocol|trait|signature_def|concept"), "interface"),
    (re.compile(r"struct|union|record"), "struct"),
    (re.compile(r"enum"), "enum"),
    (re.compile(r"namespace"), "namespace"),
    (re.compile(r"module|package"), "module"),
    (re.compile(r"class|object|extension|actor|impl"), "class"),
    (re.compile(r"const"), "constant"),
    (re.compile(r"property"), "property"),
    (re.compile(r"field|member"), "field"),
    (re.compile(r"alias|typedef"), "type_parameter"),
    (re.compile(r"type"), "class"),
    (re.compile(r"var|let|val|binding|global"), "variable"),
)
_SWIFT_KINDS: Final[dict[str, SymbolKind]] = {
    "class": "class",
    "struct": "struct",
    "enum": "enum",
    "extension": "class",
    "actor": "class",
    "protocol": "interface",
}
_IDENTIFIER_TYPE = re.compile(r"(^|_)identifier$|^(constant|name|variable_name|simple_identifier|bound_identifier)$")
_SKIP_FIELDS: Final[frozenset[str]] = frozenset(
    {"body", "type", "parameters", "value", "return_type", "result", "arguments", "superclass", "returns"}
)


@dataclass(frozen=True)
class _SymbolSpec:
    query: Query
    generic: bool


def _compile_patterns(language: Language, patterns: Sequence[str]) -> Query | None:
    """One query of `patterns`; patterns this grammar version refuses are dropped one by one."""
    if not patterns:
        return None
    try:
        return Query(language, "\n".join(patterns))
    except QueryError:
        pass
    valid = []
    for pattern in patterns:
        try:
            Query(language, pattern)
        except QueryError:
            continue
        valid.append(pattern)
    if not valid:
        return None
    return Query(language, "\n".join(valid))


def _node_kinds(language: Language) -> list[str]:
    kinds = []
    for kind_id in range(language.node_kind_count):
        name = language.node_kind_for_id(kind_id)
        if name and language.node_kind_is_named(kind_id) and language.node_kind_is_visible(kind_id):
            kinds.append(name)
    return sorted(set(kinds))


_SPEC_CACHE: dict[str, _SymbolSpec | None] = {}
_IDENT_CACHE: dict[str, Query | None] = {}
_SPEC_LOCK = threading.Lock()


def _symbol_spec(name: str) -> _SymbolSpec | None:
    """The compiled symbol query of a grammar (cached): hand-written, else generic from its node types."""
    try:
        return _SPEC_CACHE[name]
    except KeyError:
        pass
    with _SPEC_LOCK:
        if name in _SPEC_CACHE:
            return _SPEC_CACHE[name]
        language = load_language(name)
        spec: _SymbolSpec | None = None
        if language is not None:
            patterns = SYMBOL_PATTERNS.get(name)
            if patterns is not None:
                query = _compile_patterns(language, patterns)
                spec = _SymbolSpec(query, False) if query is not None else None
            else:
                kinds = [k for k in _node_kinds(language) if _GENERIC_TYPE.search(k) and not _GENERIC_SKIP.search(k)]
                query = _compile_patterns(language, [f"({kind}) @def.generic" for kind in kinds])
                spec = _SymbolSpec(query, True) if query is not None else None
        _SPEC_CACHE[name] = spec
        return spec


def _identifier_query(name: str) -> Query | None:
    """A query capturing every identifier-like leaf of a grammar (cached)."""
    try:
        return _IDENT_CACHE[name]
    except KeyError:
        pass
    with _SPEC_LOCK:
        if name not in _IDENT_CACHE:
            language = load_language(name)
            query = None
            if language is not None:
                kinds = [k for k in _node_kinds(language) if _IDENTIFIER_TYPE.search(k)]
                query = _compile_patterns(language, [f"({kind}) @id" for kind in kinds])
            _IDENT_CACHE[name] = query
        return _IDENT_CACHE[name]


def _text(data: bytes, node: Node) -> str:
    return _decode(data[node.start_byte : node.end_byte])


def _clean_name(raw: str) -> str:
    name = _WHITESPACE.sub(" ", raw).strip()
    return name[:MAX_NAME_CHARS]


def _detail(data: bytes, node: Node | None) -> str | None:
    if node is None:
        return None
    detail = _WHITESPACE.sub(" ", _text(data, node)).strip()
    if len(detail) > MAX_DETAIL_CHARS:
        detail = detail[: MAX_DETAIL_CHARS - 1] + "…"
    return detail or None


_DECLARATOR_NAMES: Final[frozenset[str]] = frozenset(
    {
        "identifier",
        "field_identifier",
        "type_identifier",
        "qualified_identifier",
        "destructor_name",
        "operator_name",
        "namespace_identifier",
        "template_function",
        "operator_cast",
        "primitive_type",
    }
)


@dataclass(frozen=True)
class _Declarator:
    name_node: Node
    name: str
    scope: tuple[str, ...]
    is_function: bool
    parameters: Node | None


def _resolve_declarator(node: Node, data: bytes) -> _Declarator | None:
    """The declared name inside a C/C++ declarator (`*name`, `name(...)`, `name[3]`, `ns::Class::name`)."""
    is_function = False
    parameters: Node | None = None
    current: Node | None = node
    for _ in range(32):
        if current is None:
            return None
        kind = current.type
        if kind in _DECLARATOR_NAMES:
            break
        if kind == "function_declarator":
            is_function = True
            parameters = current.child_by_field_name("parameters")
        elif kind == "pointer_declarator" and is_function:
            is_function = False  # a pointer to a function is a variable
        nested = current.child_by_field_name("declarator")
        if nested is None:
            named = [child for child in current.named_children if child.type != "type_qualifier"]
            nested = named[0] if named else None
        current = nested
    else:
        return None
    assert current is not None
    scope: list[str] = []
    while current.type == "qualified_identifier":
        scope_node = current.child_by_field_name("scope")
        if scope_node is not None:
            scope.append(_clean_name(_text(data, scope_node)))
        name_node = current.child_by_field_name("name")
        if name_node is None:
            return None
        current = name_node
    if current.type == "template_function":
        inner = current.child_by_field_name("name")
        if inner is not None:
            current = inner
    name = _clean_name(_text(data, current))
    if not name:
        return None
    return _Declarator(current, name, tuple(scope), is_function, parameters)


def _generic_name(node: Node) -> Node | None:
    """The name of a definition in a grammar without hand-written queries: its `name` field, else the
    first identifier-like node in its first levels, never inside its body, type or parameters."""
    direct = node.child_by_field_name("name")
    if direct is not None:
        return direct
    frontier = [node]
    for _depth in range(3):
        following: list[Node] = []
        for parent in frontier:
            for index, child in enumerate(parent.named_children):
                if parent.field_name_for_named_child(index) in _SKIP_FIELDS:
                    continue
                kind = child.type
                if "body" in kind or "block" in kind or "parameter" in kind or kind.endswith("type"):
                    continue
                if _IDENTIFIER_TYPE.search(kind):
                    return child
                named = child.child_by_field_name("name")
                if named is not None:
                    return named
                following.append(child)
        frontier = following
    return None


def _generic_kind(node: Node, data: bytes) -> SymbolKind | None:
    declaration_kind = node.child_by_field_name("declaration_kind")
    if declaration_kind is not None:
        keyword = _text(data, declaration_kind).strip()
        if keyword in _SWIFT_KINDS:
            return _SWIFT_KINDS[keyword]
    for pattern, kind in _GENERIC_KINDS:
        if pattern.search(node.type):
            return kind
    return None


def _impl_name(data: bytes, type_node: Node, trait_node: Node | None) -> tuple[str, str]:
    """The display name (`impl Trait for Type`) and the container name (`Type`) of a Rust impl block."""
    type_text = _clean_name(_text(data, type_node))
    base = type_node
    while base.type in ("generic_type", "scoped_type_identifier"):
        inner = base.child_by_field_name("type") or base.child_by_field_name("name")
        if inner is None:
            break
        base = inner
    container = _clean_name(_text(data, base))
    if trait_node is not None:
        return f"impl {_clean_name(_text(data, trait_node))} for {type_text}", container
    return f"impl {type_text}", container


def _make_symbol(tag: str, node: Node, captures: dict[str, list[Node]], data: bytes) -> _Sym | None:
    """One symbol from one query match; None when the match names nothing."""
    kind: SymbolKind
    detail: str | None = None
    scope: tuple[str, ...] = ()
    container_name: str | None = None
    indexed = True
    if tag == "generic":
        name_node = _generic_name(node)
        guessed = _generic_kind(node, data)
        if name_node is None or guessed is None:
            return None
        raw = _text(data, name_node)
        if "\n" in raw.strip():
            return None
        name = _clean_name(raw)
        kind = guessed
        if kind in _CALLABLE_KINDS:
            detail = _detail(data, node.child_by_field_name("parameters"))
    elif tag == "impl":
        type_node = captures["impl_type"][0]
        trait_nodes = captures.get("impl_trait")
        name, container_name = _impl_name(data, type_node, trait_nodes[0] if trait_nodes else None)
        name_node = type_node
        kind = "object"
        indexed = False
    elif "declarator" in captures:
        resolved = _resolve_declarator(captures["declarator"][0], data)
        if resolved is None:
            return None
        name_node, name, scope = resolved.name_node, resolved.name, resolved.scope
        if tag == "cfunction":
            kind = "method" if scope else "function"
        elif tag == "cfield":
            kind = "method" if resolved.is_function else "field"
        elif tag == "typedef":
            kind = "type_parameter"
        else:
            kind = "function" if resolved.is_function else "variable"
        if kind == "variable" and _CONSTANT_NAME.match(name):
            kind = "constant"
        if kind in _CALLABLE_KINDS:
            detail = _detail(data, resolved.parameters)
            if scope:
                detail = "::".join((*scope, name)) + (detail or "")
    else:
        names = captures.get("name")
        if not names:
            return None
        name_node = names[0]
        name = _clean_name(_text(data, name_node))
        if tag == "string":  # markdown headings
            name = name.rstrip("#").strip()
        elif tag == "property" and name.startswith(":"):  # ruby attr_reader :name
            name = name[1:]
        if tag in ("var", "attr", "prop"):
            value = node.child_by_field_name("value") or node.child_by_field_name("right")
            if value is not None and value.type in _FUNCTION_VALUES:
                kind = "method" if tag in ("attr", "prop") else "function"
                detail = _detail(data, value.child_by_field_name("parameters"))
            elif _CONSTANT_NAME.match(name):
                kind = "constant"
            else:
                kind = "variable" if tag == "var" else ("field" if tag == "attr" else "property")
        elif tag == "jfield":
            modifiers = " ".join(_text(data, child) for child in node.children if child.type == "modifiers")
            is_constant = "static" in modifiers and "final" in modifiers
            kind = "constant" if is_constant and _CONSTANT_NAME.match(name) else "field"
        elif tag in _SYMBOL_KINDS:
            kind = cast("SymbolKind", tag)
        else:
            return None
        if kind == "method" and name == "constructor":
            kind = "constructor"
        if kind in _CALLABLE_KINDS and detail is None:
            detail = _detail(data, node.child_by_field_name("parameters"))
        scope_nodes = captures.get("scope")
        if scope_nodes:
            scope = (_clean_name(_text(data, scope_nodes[0])),)
            receiver = node.child_by_field_name("receiver")
            detail = _detail(data, receiver)
    if not name:
        return None
    return _Sym(
        name=name,
        kind=kind,
        start=node.start_byte,
        end=node.end_byte,
        sel_start=name_node.start_byte,
        sel_end=name_node.end_byte,
        detail=detail,
        scope=scope,
        container_name=container_name,
        indexed=indexed,
    )


def _nest(symbols: list[_Sym]) -> list[_Sym]:
    """Symbols into a tree by range containment; functions in types become methods, and variables
    inside functions (locals) are dropped."""
    symbols.sort(key=lambda s: (s.start, -s.end, s.sel_start))
    roots: list[_Sym] = []
    stack: list[_Sym] = []
    for sym in symbols:
        while stack:
            top = stack[-1]
            if top.start <= sym.start and sym.end <= top.end and (top.start, top.end) != (sym.start, sym.end):
                break
            stack.pop()
        parent = stack[-1] if stack else None
        if parent is not None:
            if sym.kind in _DATA_KINDS and parent.kind in _CALLABLE_KINDS:
                continue
            if sym.sel_start == parent.sel_start:  # one symbol seen twice (a declaration and its declarator)
                continue
            if sym.kind == "function" and parent.kind in _TYPE_KINDS:
                sym.kind = "method"
        if len(stack) >= MAX_SYMBOL_DEPTH:
            continue
        (parent.children if parent is not None else roots).append(sym)
        stack.append(sym)
    return roots


def extract_symbols(language: str, tree: Tree, data: bytes) -> list[_Sym]:
    """The outline of a parsed file (byte ranges), nested."""
    spec = _symbol_spec(language)
    if spec is None:
        return []
    found: dict[tuple[int, int, int], tuple[int, _Sym]] = {}
    for pattern_index, captures in QueryCursor(spec.query).matches(tree.root_node):
        tag: str | None = None
        node: Node | None = None
        for capture, nodes in captures.items():
            if capture.startswith("def.") and nodes:
                tag, node = capture[4:], nodes[0]
                break
        if tag is None or node is None:
            continue
        sym = _make_symbol(tag, node, captures, data)
        if sym is None:
            continue
        key = (sym.start, sym.end, sym.sel_start)
        known = found.get(key)
        if known is None or known[0] > pattern_index:
            found[key] = (pattern_index, sym)
    return _nest([sym for _, sym in found.values()])


def _document_symbols(symbols: Iterable[_Sym], lines: _LineMap) -> list[DocumentSymbol]:
    return [
        DocumentSymbol(
            name=sym.name,
            kind=sym.kind,
            range=lines.range(sym.start, sym.end),
            selection_range=lines.range(sym.sel_start, sym.sel_end),
            detail=sym.detail,
            children=_document_symbols(sym.children, lines),
        )
        for sym in symbols
    ]


def _index_entries(symbols: Iterable[_Sym], lines: _LineMap, path: str, language: str) -> list[IndexEntry]:
    entries: list[IndexEntry] = []

    def visit(sym: _Sym, parents: tuple[str, ...]) -> None:
        parts = parents + sym.scope
        if sym.indexed:
            start_line, start_char = lines.line_char(sym.start)
            end_line, end_char = lines.line_char(sym.end)
            container = ".".join(parts) or None
            entries.append(
                IndexEntry(sym.name, sym.kind, path, start_line, start_char, end_line, end_char, container, language)
            )
        inner = (*parts, sym.container_name or sym.name)
        for child in sym.children:
            visit(child, inner)

    for sym in symbols:
        visit(sym, ())
    return entries


def _flatten(symbols: Iterable[_Sym]) -> Iterable[_Sym]:
    for sym in symbols:
        yield sym
        yield from _flatten(sym.children)


# -- diagnostics and identifiers -----------------------------------------------------------------------
def syntax_errors(tree: Tree, lines: _LineMap, limit: int = MAX_DIAGNOSTICS) -> list[Diagnostic]:
    """ERROR and MISSING nodes as error diagnostics; an ERROR spanning lines is shown on its first line."""
    root = tree.root_node
    if not root.has_error:
        return []
    found: list[tuple[int, int, str]] = []
    stack = [root]
    while stack and len(found) < limit:
        node = stack.pop()
        if node.is_missing:
            what = node.type if node.is_named else f"`{node.type}`"
            found.append((node.start_byte, node.end_byte, f"missing {what}"))
            continue
        if node.is_error:
            start, end = node.start_byte, node.end_byte
            start_line, _ = lines.line_char(start)
            end = min(end, max(start, lines.line_end_byte(start_line)))
            message = "syntax error"
            snippet = _decode(lines.data[start:end]).strip()
            if snippet and len(snippet) <= 30:
                message = f"syntax error: unexpected `{snippet}`"
            found.append((start, end, message))
            continue
        if node.has_error:
            stack.extend(reversed(node.children))
    found.sort()
    return [
        Diagnostic(range=lines.range(start, end), severity="error", message=message, source="tree-sitter")
        for start, end, message in found
    ]


def collect_identifiers(language: str, tree: Tree, data: bytes, text: str) -> list[str]:
    """The distinct identifiers of a file, in order of first appearance (comments and strings excluded
    when the grammar names its identifiers; a word scan of the text otherwise)."""
    query = _identifier_query(language)
    if query is None:
        return list(dict.fromkeys(_WORD.findall(text)))
    nodes: list[Node] = []
    for group in QueryCursor(query).captures(tree.root_node).values():
        nodes.extend(group)
    nodes.sort(key=lambda n: n.start_byte)
    seen: dict[str, None] = {}
    for node in nodes:
        word = _decode(data[node.start_byte : node.end_byte])
        if word and _WORD.fullmatch(word):
            seen.setdefault(word, None)
    return list(seen)


# -- parsed documents ----------------------------------------------------------------------------------
class _Parsed:
    """One parse of one text, with what is derived from it computed on first use."""

    def __init__(self, language: str, text: str, data: bytes, tree: Tree) -> None:
        self.language = language
        self.text = text
        self.data = data
        self.tree = tree
        self.lines = _LineMap(text, data)
        self._symbols: list[_Sym] | None = None
        self._identifiers: list[str] | None = None

    @property
    def symbols(self) -> list[_Sym]:
        if self._symbols is None:
            self._symbols = extract_symbols(self.language, self.tree, self.data)
        return self._symbols

    @property
    def identifiers(self) -> list[str]:
        if self._identifiers is None:
            self._identifiers = collect_identifiers(self.language, self.tree, self.data, self.text)
        return self._identifiers


def _parse(language: str, text: str, base: Tree | None = None, edits: Sequence[_Edit] = ()) -> _Parsed:
    """Parse `text`, reusing `base` (the tree of the text before `edits`) when given; thread-safe."""
    data = _encode(text)
    parser = _parser(language)
    if base is None:
        return _Parsed(language, text, data, parser.parse(data))
    old = base.copy()  # the base may be read by another thread: edit a copy
    for edit in edits:
        old.edit(*edit)
    return _Parsed(language, text, data, parser.parse(data, old))


def _source_text(data: bytes) -> tuple[str, bytes]:
    try:
        return data.decode(_UTF8), data
    except UnicodeDecodeError:
        text = data.decode(_UTF8, errors="replace")
        return text, _encode(text)


def _index_source(path: str, language: str, raw: bytes) -> list[IndexEntry]:
    text, data = _source_text(raw)
    parsed = _Parsed(language, text, data, _parser(language).parse(data))
    return _index_entries(parsed.symbols, parsed.lines, path, language)


@dataclass(eq=False)
class _DocState:
    """An open document as the engine tracks it: the last tree and the edits made since."""

    path: str
    language: str
    text: str
    version: int | None
    generation: int = 0
    epoch: int = 0  # bumps when the edit chain breaks (full replacement): older parses no longer apply
    tree: Tree | None = None
    tree_generation: int = -1
    pending: list[tuple[int, _Edit]] = field(default_factory=list)
    parsed: _Parsed | None = None
    inflight: tuple[int, asyncio.Future[_Parsed]] | None = None


class _WalkIgnore(GitIgnoreFilter):
    """A GitIgnoreFilter that learns of each .gitignore as a top-down walk finds it, so ignored folders
    are never entered (a folder's .gitignore is only consulted for paths below it, after it was seen)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, ())

    def found_gitignore(self, directory: str) -> None:
        """The folder `directory` (root-relative, '' for the root) holds a .gitignore."""
        self._has_gitignore.add(directory)


_COMPLETION_KINDS: Final[dict[str, CompletionKind]] = {
    "class": "class",
    "method": "method",
    "function": "function",
    "constructor": "constructor",
    "field": "field",
    "variable": "variable",
    "constant": "constant",
    "interface": "interface",
    "module": "module",
    "namespace": "module",
    "package": "module",
    "property": "property",
    "key": "property",
    "enum": "enum",
    "enum_member": "enum_member",
    "struct": "struct",
    "event": "event",
    "operator": "operator",
    "type_parameter": "type_parameter",
    "object": "class",
}


def _is_word_char(ch: str) -> bool:
    return ch == "_" or ch.isalnum()


# -- the engine ----------------------------------------------------------------------------------------
class TreeSitterEngine(Engine):
    """Structure for every tree-sitter grammar: outlines, syntax errors, completion from words and
    symbols, and a workspace symbol index kept current with open documents and the disk.

    `index_ready` is set once the first index build finished; until then `workspace_symbols` and
    `find_symbol` raise `EngineUnavailable("server_starting")`. `wait_for_index` waits for any
    condition on `index` with a timeout; `watch_ready` is set once the disk watcher is watching.
    """

    name = "tree-sitter"

    watch_step_ms = 50
    """The watcher returns a batch once no new change came for this long..."""
    watch_debounce_ms = 500
    """...or at the latest after this long."""

    def __init__(self, workspace: Workspace, config: AnalysisConfig, limiter: asyncio.Semaphore | None = None) -> None:
        self.workspace = workspace
        self.config = config
        self.limiter = limiter
        self.index = SymbolIndex()
        self.index_ready = asyncio.Event()
        self.watch_ready = asyncio.Event()
        self.index_generation = 0
        self.stats: dict[str, int] = {"full_parses": 0, "incremental_parses": 0, "index_builds": 0}
        self._docs: dict[str, _DocState] = {}
        self._scratch: OrderedDict[str, _Parsed] = OrderedDict()
        self._index_event = asyncio.Event()
        self._stop = threading.Event()
        self._stop_watch = asyncio.Event()
        self._closed = False
        self._started = False
        self._build_task: asyncio.Task[None] | None = None
        self._rebuild_requested = False
        self._watch_task: asyncio.Task[None] | None = None
        self._docs_task: asyncio.Task[None] | None = None
        self._disk_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._dirty_docs: set[str] = set()
        self._dirty_disk: set[str] = set()
        self._live: set[str] = set()  # paths updated by open documents or the watcher during a build
        self._ignore: GitIgnoreFilter | None = None
        self._walked = asyncio.Event()

    # -- languages ------------------------------------------------------------------------------------
    def language_of(self, path: str, language_id: str | None = None) -> str | None:
        """The grammar for a document: its language id when the pack knows it, else its file name."""
        name = language_for_id(language_id) or language_for_path(path)
        return name if name is not None and load_language(name) is not None else None

    def handles(self, path: str, language_id: str) -> bool:
        """True when tree-sitter-language-pack has a grammar for this file or language id."""
        return self.language_of(path, language_id) is not None

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def indexing(self) -> bool:
        """True while an index build runs (the first, or a rebuild after a .gitignore changed)."""
        return self._build_task is not None and not self._build_task.done()

    async def start(self) -> None:
        """Start watching the disk and building the index in the background; returns at once."""
        if self._started or self._closed:
            return
        self._started = True
        if self.config.watch:
            self._watch_task = asyncio.create_task(self._watch_loop(), name="tree-sitter watch")
        if self.config.index_on_start:
            self._start_build()

    async def close(self) -> None:
        """Stop the watcher, the index build and the update tasks; wait for them to end."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._stop_watch.set()
        tasks = [t for t in (self._watch_task, self._build_task, self._docs_task, self._disk_task) if t is not None]
        tasks += list(self._background)
        if self._watch_task is not None:
            await asyncio.wait({self._watch_task}, timeout=5.0)  # the stop event ends it within a step
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._docs.clear()
        self._scratch.clear()

    # -- running work ---------------------------------------------------------------------------------
    async def _in_thread(self, func: Callable[[], T]) -> T:
        """Run blocking work in a worker thread, behind the limiter when there is one."""
        if self.limiter is None:
            return await asyncio.to_thread(func)
        async with self.limiter:
            return await asyncio.to_thread(func)

    async def _offload(self, size: int, func: Callable[[], T]) -> T:
        """Small work inline (a thread hop costs more), big work in a thread."""
        if size <= INLINE_BYTES:
            return func()
        return await self._in_thread(func)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:  # no loop (a synchronous caller): the work happens on the next request
            coro.close()
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _parse_in_background(self, state: _DocState) -> None:
        try:
            await self._parsed_state(state)
        except Exception:
            log.warning("tree-sitter could not parse %s", state.path, exc_info=True)

    # -- document sync --------------------------------------------------------------------------------
    def document_opened(self, snapshot: DocumentSnapshot) -> None:
        """Track the document and parse it (inline when small, in a thread when big)."""
        language = self.language_of(snapshot.path, snapshot.language_id)
        if language is None:
            self._docs.pop(snapshot.path, None)
            return
        state = _DocState(snapshot.path, language, snapshot.text, snapshot.version)
        self._docs[snapshot.path] = state
        if len(snapshot.text) <= INLINE_BYTES:
            self._store(state, state.generation, state.epoch, False, _parse(language, snapshot.text))
        elif not self._index_active():
            self._spawn(self._parse_in_background(state))
        self._schedule_doc_index(snapshot.path)

    def document_changed(self, snapshot: DocumentSnapshot, changes: Sequence[TextChange], previous_text: str) -> None:
        """Edit the document's tree for each change; the reparse happens when something needs the tree."""
        state = self._docs.get(snapshot.path)
        language = self.language_of(snapshot.path, snapshot.language_id)
        if state is None or language != state.language:
            self.document_opened(snapshot)
            return
        result = edits_for_changes(previous_text, changes) if state.text == previous_text else None
        state.generation += 1
        if result is None or result[1] != snapshot.text or len(state.pending) + len(result[0]) > MAX_PENDING_EDITS:
            state.epoch += 1
            state.tree, state.tree_generation, state.pending = None, -1, []
        else:
            state.pending.extend((state.generation, edit) for edit in result[0])
        state.text = snapshot.text
        state.version = snapshot.version
        state.parsed = None
        self._schedule_doc_index(snapshot.path)

    def document_closed(self, path: str) -> None:
        """Drop the document's tree; its index entries come from the disk again."""
        if self._docs.pop(path, None) is not None and self._index_active():
            self._dirty_disk.add(path)
            self._kick_disk()

    # -- parsing --------------------------------------------------------------------------------------
    def _store(self, state: _DocState, generation: int, epoch: int, incremental: bool, parsed: _Parsed) -> None:
        """Keep a finished parse if it is newer than the tree the document has."""
        self.stats["incremental_parses" if incremental else "full_parses"] += 1
        if state.epoch != epoch or generation <= state.tree_generation:
            return
        state.tree, state.tree_generation = parsed.tree, generation
        state.pending = [(g, e) for g, e in state.pending if g > generation]
        if generation == state.generation:
            state.parsed = parsed

    async def _parsed_state(self, state: _DocState) -> _Parsed:
        if state.parsed is not None:
            return state.parsed
        generation, epoch = state.generation, state.epoch
        if state.inflight is not None and state.inflight[0] == generation:
            return await asyncio.shield(state.inflight[1])
        base = state.tree
        edits = [edit for g, edit in state.pending if g > state.tree_generation] if base is not None else []
        work = functools.partial(_parse, state.language, state.text, base, edits)
        if len(state.text) <= INLINE_BYTES:
            parsed = work()
            self._store(state, generation, epoch, base is not None, parsed)
            return parsed
        future: asyncio.Future[_Parsed] = asyncio.ensure_future(self._in_thread(work))
        state.inflight = (generation, future)
        try:
            parsed = await asyncio.shield(future)
        finally:
            if state.inflight is not None and state.inflight[1] is future:
                state.inflight = None
        self._store(state, generation, epoch, base is not None, parsed)
        return parsed

    async def _parsed(self, doc: DocumentSnapshot) -> _Parsed | None:
        """The parse of a snapshot: an open document's (incremental), else a fresh one (kept a while)."""
        language = self.language_of(doc.path, doc.language_id)
        if language is None:
            return None
        state = self._docs.get(doc.path)
        if state is not None and state.language == language and state.text == doc.text:
            return await self._parsed_state(state)
        cached = self._scratch.get(doc.path)
        if cached is not None and cached.language == language and cached.text == doc.text:
            self._scratch.move_to_end(doc.path)
            return cached
        parsed = await self._offload(len(doc.text), functools.partial(_parse, language, doc.text))
        self.stats["full_parses"] += 1
        self._scratch[doc.path] = parsed
        self._scratch.move_to_end(doc.path)
        while len(self._scratch) > SCRATCH_TREES:
            self._scratch.popitem(last=False)
        return parsed

    async def syntax_tree(self, doc: DocumentSnapshot) -> Tree | None:
        """The tree-sitter tree of `doc` (an open document's is maintained incrementally); None when
        no grammar handles it. Read it on the event loop; do not edit it."""
        parsed = await self._parsed(doc)
        return None if parsed is None else parsed.tree

    async def _symbols_of(self, parsed: _Parsed) -> list[_Sym]:
        if parsed._symbols is not None:
            return parsed._symbols
        return await self._offload(len(parsed.data), lambda: parsed.symbols)

    # -- operations -----------------------------------------------------------------------------------
    async def document_symbols(self, doc: DocumentSnapshot) -> list[DocumentSymbol] | None:
        """The outline of `doc`: classes with their methods, functions, types, constants, nested."""
        parsed = await self._parsed(doc)
        if parsed is None:
            return None
        symbols = await self._symbols_of(parsed)
        return await self._offload(len(parsed.data), functools.partial(_document_symbols, symbols, parsed.lines))

    async def diagnostics(self, doc: DocumentSnapshot) -> list[Diagnostic] | None:
        """Syntax errors (ERROR and MISSING nodes) of `doc`; [] for a file that parses cleanly."""
        parsed = await self._parsed(doc)
        if parsed is None:
            return None
        return await self._offload(len(parsed.data), functools.partial(syntax_errors, parsed.tree, parsed.lines))

    async def complete(self, doc: DocumentSnapshot, pos: Position) -> list[CompletionItem] | None:
        """Words for the identifier at `pos`: the document's identifiers first, then indexed symbol names,
        each replacing the typed prefix."""
        parsed = await self._parsed(doc)
        if parsed is None:
            return None
        line_text = parsed.lines.line_text(pos.line)
        column = min(pos.character, len(line_text))
        start = column
        while start > 0 and _is_word_char(line_text[start - 1]):
            start -= 1
        end = column
        while end < len(line_text) and _is_word_char(line_text[end]):
            end += 1
        prefix, word = line_text[start:column], line_text[start:end]
        if prefix[:1].isdigit():
            return []
        if parsed._identifiers is None:
            await self._offload(len(parsed.data), lambda: parsed.identifiers)
        symbols = await self._symbols_of(parsed)
        doc_kinds: dict[str, SymbolKind] = {}
        for sym in _flatten(symbols):
            doc_kinds.setdefault(sym.name, sym.kind)
        lowered = prefix.lower()
        limit = self.config.max_results
        candidates: dict[str, tuple[int, CompletionKind, str | None]] = {}
        for ident in parsed.identifiers:
            if ident in (word, prefix) or not ident.lower().startswith(lowered):
                continue
            kind = doc_kinds.get(ident)
            candidates[ident] = (0, _COMPLETION_KINDS.get(kind, "text") if kind else "text", None)
        if prefix and self.index_ready.is_set():
            for entry in self.index.names_with_prefix(prefix, limit):
                if entry.name in (word, prefix):
                    continue
                known = candidates.get(entry.name)
                kind_of = _COMPLETION_KINDS.get(entry.kind, "text")
                detail = f"{entry.qualified_name} — {entry.path}"
                if known is None:
                    candidates[entry.name] = (1, kind_of, detail)
                elif known[1] == "text":
                    candidates[entry.name] = (0, kind_of, detail)
        ordered = sorted(
            candidates.items(), key=lambda item: (item[1][0], not item[0].startswith(prefix), item[0].lower(), item[0])
        )
        edit_range = Range(
            start=Position(line=pos.line, character=start), end=Position(line=pos.line, character=column)
        )
        return [
            CompletionItem(
                label=label,
                kind=kind,
                detail=detail,
                sort_text=f"{index:06d}",
                edit=TextEdit(range=edit_range, new_text=label),
            )
            for index, (label, (_group, kind, detail)) in enumerate(ordered[:limit])
        ]

    def _require_index(self) -> None:
        """Raise EngineUnavailable until the first build finished (starting it if nothing did)."""
        if not self.index_ready.is_set():
            if self._build_task is None:
                self._start_build()
            raise EngineUnavailable("server_starting", "indexing the workspace")

    async def workspace_symbols(self, query: str, language_id: str | None) -> list[SymbolInfo] | None:
        """Indexed symbols whose names match `query`: exact, prefix, substring, then subsequence matches."""
        language: str | None = None
        if language_id:
            language = language_for_id(language_id)
            if language is None:
                return None
        if self._closed:
            return None
        self._require_index()
        entries = self.index.search(query, language, self.config.max_results)
        return [entry.to_symbol_info() for entry in entries]

    async def find_symbol(self, name_path: str, kind: str | None) -> list[SymbolInfo] | None:
        """Indexed symbols named `name_path`, or whose dotted path (`Class.method`) ends with it."""
        if self._closed:
            return None
        self._require_index()
        entries = self.index.find(name_path, kind, self.config.max_results)
        return [entry.to_symbol_info() for entry in entries]

    # -- the index ------------------------------------------------------------------------------------
    async def wait_for_index(self, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        """Wait until `predicate()` (checked after every index update) is true; TimeoutError after `timeout`."""

        async def wait() -> None:
            while not predicate():
                await self._index_event.wait()

        await asyncio.wait_for(wait(), timeout)

    def _index_updated(self) -> None:
        self.index_generation += 1
        event, self._index_event = self._index_event, asyncio.Event()
        event.set()

    def _index_active(self) -> bool:
        return not self._closed and self._build_task is not None

    def _start_build(self) -> None:
        if self._closed:
            return
        if self.indexing:
            self._rebuild_requested = True
            return
        self._build_task = asyncio.get_running_loop().create_task(self._build_loop(), name="tree-sitter index")

    async def _build_loop(self) -> None:
        while True:
            self._rebuild_requested = False
            try:
                await self._build_index()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("tree-sitter index build failed")
            finally:
                if not self.index_ready.is_set():
                    self.index_ready.set()
                    self._index_updated()
            if not self._rebuild_requested or self._closed:
                return

    def _walk(self) -> tuple[list[tuple[str, str, int]], _WalkIgnore]:
        """The files to index, in walk order, .gitignore respected and ignored folders never entered."""
        root = self.workspace.root
        ignore = _WalkIgnore(root)
        files: list[tuple[str, str, int]] = []
        limit, max_bytes = self.config.index_max_files, self.config.index_max_file_bytes
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            if self._stop.is_set():
                break
            rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
            rel_dir = "" if rel_dir == "." else rel_dir
            prefix = rel_dir + "/" if rel_dir else ""
            if ".gitignore" in filenames:
                ignore.found_gitignore(rel_dir)
            dirnames[:] = sorted(d for d in dirnames if d != ".git" and not ignore.dir_ignored(prefix + d))
            for name in sorted(filenames):
                rel = prefix + name
                language = self.language_of(rel)
                if language is None or language in NOT_INDEXED or ignore.ignored(rel):
                    continue
                full = os.path.join(dirpath, name)
                try:
                    if os.path.islink(full):
                        self.workspace.relative_of_absolute(Path(full))
                    info = os.stat(full)
                except (OSError, PathOutsideRoot):
                    continue
                if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
                    continue
                files.append((rel, language, info.st_size))
                if len(files) >= limit:
                    return files, ignore
        return files, ignore

    def _index_files(self, items: Sequence[tuple[str, str]]) -> list[tuple[str, list[IndexEntry] | None]]:
        """Read, parse and extract files in a worker thread; None for a file that cannot be indexed."""
        results: list[tuple[str, list[IndexEntry] | None]] = []
        max_bytes = self.config.index_max_file_bytes
        root = self.workspace.root
        for rel, language in items:
            if self._stop.is_set():
                break
            try:
                with open(root / rel, "rb") as fh:
                    raw = fh.read(max_bytes + 1)
            except OSError:
                results.append((rel, None))
                continue
            if len(raw) > max_bytes or b"\x00" in raw[:BINARY_SNIFF_BYTES]:
                results.append((rel, None))
                continue
            try:
                results.append((rel, _index_source(rel, language, raw)))
            except Exception:
                log.warning("tree-sitter could not index %s", rel, exc_info=True)
                results.append((rel, None))
        return results

    @staticmethod
    def _chunks(files: Sequence[tuple[str, str, int]]) -> Iterable[list[tuple[str, str]]]:
        chunk: list[tuple[str, str]] = []
        total = 0
        for rel, language, size in files:
            chunk.append((rel, language))
            total += size
            if len(chunk) >= INDEX_CHUNK_FILES or total >= INDEX_CHUNK_BYTES:
                yield chunk
                chunk, total = [], 0
        if chunk:
            yield chunk

    async def _build_index(self) -> None:
        self.stats["index_builds"] += 1
        self._live = set()
        files, ignore = await self._in_thread(self._walk)
        self._ignore = ignore
        self._walked.set()
        seen: set[str] = set()
        for chunk in self._chunks(files):
            if self._closed:
                return
            results = await self._in_thread(functools.partial(self._index_files, chunk))
            for rel, entries in results:
                if rel in self._docs or rel in self._live:
                    seen.add(rel)
                    continue
                if entries is None:
                    self.index.remove(rel)
                    continue
                seen.add(rel)
                self.index.replace(rel, entries)
            self._index_updated()
        for rel in self.index.paths():
            if rel not in seen and rel not in self._docs and rel not in self._live:
                self.index.remove(rel)
        self._index_updated()

    # -- index updates: open documents ----------------------------------------------------------------
    def _schedule_doc_index(self, path: str) -> None:
        if not self._index_active():
            return
        self._dirty_docs.add(path)
        if self._docs_task is None or self._docs_task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._docs_task = loop.create_task(self._flush_docs(), name="tree-sitter document index")

    async def _flush_docs(self) -> None:
        while self._dirty_docs and not self._closed:
            path = self._dirty_docs.pop()
            state = self._docs.get(path)
            if state is None or state.language in NOT_INDEXED:
                continue
            try:
                parsed = await self._parsed_state(state)
                symbols = await self._symbols_of(parsed)
            except Exception:
                log.warning("tree-sitter could not index open document %s", path, exc_info=True)
                continue
            entries = await self._offload(
                len(parsed.data), functools.partial(_index_entries, symbols, parsed.lines, path, state.language)
            )
            if self._docs.get(path) is not state:
                continue
            self.index.replace(path, entries)
            self._live.add(path)
            self._index_updated()

    # -- index updates: the disk ----------------------------------------------------------------------
    def _kick_disk(self) -> None:
        if self._disk_task is None or self._disk_task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._disk_task = loop.create_task(self._flush_disk(), name="tree-sitter disk index")

    async def _flush_disk(self) -> None:
        await self._walked.wait()
        while self._dirty_disk and not self._closed:
            paths = sorted(self._dirty_disk)
            self._dirty_disk.clear()
            items: list[tuple[str, str, int]] = []
            for rel in paths:
                if rel in self._docs:
                    continue
                language = self.language_of(rel)
                ignored = self._ignore is not None and self._ignore.ignored(rel)
                if language is None or language in NOT_INDEXED or ignored:
                    if self.index.remove(rel):
                        self._live.add(rel)
                    continue
                items.append((rel, language, 0))
            if self.index.file_count >= self.config.index_max_files:
                items = [item for item in items if item[0] in self.index]
            for chunk in self._chunks(items):
                results = await self._in_thread(functools.partial(self._index_files, chunk))
                for rel, entries in results:
                    if rel in self._docs:
                        continue
                    self._live.add(rel)
                    if entries is None:
                        self.index.remove(rel)
                    else:
                        self.index.replace(rel, entries)
            self._index_updated()

    def _watch_filter(self, change: Change, path: str) -> bool:
        from watchfiles import Change

        if self._default_filter is not None and not self._default_filter(change, path):
            return False
        name = os.path.basename(path)
        if name == ".gitignore" or change != Change.modified:
            return True
        return self.language_of(name) is not None

    _default_filter: DefaultFilter | None = None  # set by the watch loop, which imports watchfiles

    def _on_disk_changes(self, changes: Iterable[tuple[Change, str]]) -> None:
        from watchfiles import Change

        if not self._index_active():
            return  # no index yet: the first build's walk will see the disk as it is then
        rebuild = False
        touched = False
        for change, absolute in changes:
            try:
                rel = self.workspace.relative_of_absolute(Path(absolute))
            except (PathOutsideRoot, OSError):
                continue
            if rel == "." or rel in self._docs:
                continue
            if os.path.basename(rel) == ".gitignore":
                rebuild = True
                continue
            if change == Change.deleted:
                if rel in self.index:
                    self._dirty_disk.add(rel)
                elif self.index.remove_under(rel):
                    touched = True
                continue
            if os.path.isdir(absolute):
                rebuild = True  # a folder arrived (moved in, checked out): walk again
                continue
            self._dirty_disk.add(rel)
        if touched:
            self._index_updated()
        if rebuild:
            self._start_build()
        if self._dirty_disk:
            self._kick_disk()

    async def _watch_loop(self) -> None:
        from watchfiles import DefaultFilter, awatch

        self._default_filter = DefaultFilter()
        changes = awatch(
            self.workspace.root,
            watch_filter=self._watch_filter,
            debounce=self.watch_debounce_ms,
            step=self.watch_step_ms,
            stop_event=self._stop_watch,
        )
        pending: asyncio.Future[set[tuple[Change, str]]] = asyncio.ensure_future(anext(changes))
        try:
            # The generator's first step creates the OS watches before it first suspends: once this task
            # runs again, that step has run, so changes made from now on are seen.
            await asyncio.sleep(0)
            self.watch_ready.set()
            while True:
                try:
                    batch = await pending
                except StopAsyncIteration:
                    return
                try:
                    self._on_disk_changes(batch)
                except Exception:
                    log.exception("tree-sitter could not apply disk changes")
                pending = asyncio.ensure_future(anext(changes))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("tree-sitter stopped watching %s", self.workspace.root, exc_info=True)
        finally:
            self.watch_ready.set()
            self._stop_watch.set()
            if not pending.done():
                pending.cancel()
            await asyncio.wait({pending})
            if not pending.cancelled():
                pending.exception()  # retrieved, so it is not reported as lost
            await changes.aclose()


__all__ = [
    "EXTENSIONS",
    "LANGUAGE_IDS",
    "NOT_INDEXED",
    "TreeSitterEngine",
    "edits_for_changes",
    "extract_symbols",
    "language_for_id",
    "language_for_path",
    "load_language",
    "syntax_errors",
]
