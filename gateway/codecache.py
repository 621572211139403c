"""A bytecode cache for the methods attrs and cattrs generate at run time.

lsprotocol defines ~570 attrs classes. For each one attrs writes the source of its `__init__`, `__repr__`,
`__eq__`, ... and `compile()`s it, and cattrs does the same for every structure and unstructure hook it
builds; ~550 `compile()` calls are roughly half the time `gateway lsp` needs to answer `initialize`
(~140 ms of ~450 ms measured here). Python caches the bytecode of files in `__pycache__`, but not of source
made up at run time. This module does that for these two libraries: it puts a caching `compile` into
their module namespaces, keyed by a hash of the exact source, file name, mode and inherited `__future__`
flags. The cached code object is the one `compile()` returns for that key, so the classes and hooks are the
same either way; only the compiling is skipped.

The cache is one marshal file per interpreter version (`marshal` is the format of `.pyc` files, and its
code objects are only valid for the version that wrote them) under `$XDG_CACHE_HOME/gateway`
(`~/.cache/gateway`). It is written after start-up (`save()`, atomically, only when something new was
compiled), holding what this process used, and read at the next start; the entries start-up did not use are
then dropped from memory. A missing, unreadable or foreign file is ignored and rewritten.
`[server] code_cache = false` turns it off; `code_cache_dir` puts it elsewhere.
"""

from __future__ import annotations
import __future__

import atexit
import builtins
import contextlib
import hashlib
import importlib.util
import marshal
import os
import sys
import tempfile
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

# The modules whose `compile` calls go through the cache (each calls the builtin by its global name).
MODULES = ("attr._make", "cattrs.gen", "cattrs.gen.typeddicts")
MAX_ENTRIES = 10_000  # a bound on one process's entries (a start needs ~600, a long-running serve a few more)
# Rewrite the file only for this many new entries: a few sources differ in every process (attrs puts a hash
# of a string, randomised per process, into the `__hash__` of hashable classes), and those never hit.
MIN_NEW = 16
_FUTURE_MASK = 0
for _name in __future__.all_feature_names:
    _FUTURE_MASK |= getattr(__future__, _name).compiler_flag
_HEADER = b"gateway-codecache-1\0" + importlib.util.MAGIC_NUMBER


def default_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gateway"


class CodeCache:
    """Code objects by key; `compile` is a drop-in for the builtin that consults them first."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[bytes, CodeType] = {}  # what the file held, until `release()`
        self.used: dict[bytes, CodeType] = {}  # what this process compiled or took from the file
        self.unsaved = 0  # entries compiled since the file was last written
        self.hits = 0
        self.misses = 0
        self.installed: list[ModuleType] = []
        if path is not None:
            self.entries = self._read(path)

    @staticmethod
    def _read(path: Path) -> dict[bytes, CodeType]:
        try:
            data = path.read_bytes()
        except OSError:
            return {}
        if not data.startswith(_HEADER):
            return {}
        try:
            loaded = marshal.loads(memoryview(data)[len(_HEADER) :])
        except (EOFError, ValueError, TypeError):
            return {}
        if not isinstance(loaded, dict):
            return {}
        return {k: v for k, v in loaded.items() if isinstance(k, bytes) and isinstance(v, CodeType)}

    def compile(self, source: Any, filename: Any, mode: str, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not isinstance(source, str) or not isinstance(filename, str):
            return builtins.compile(source, filename, mode, *args, **kwargs)
        # What the builtin would inherit: the caller's __future__ flags (attrs and cattrs use annotations).
        flags = sys._getframe(1).f_code.co_flags & _FUTURE_MASK
        key = hashlib.blake2b(
            b"%d\0%s\0%s\0%s"
            % (
                flags,
                mode.encode(),
                filename.encode("utf-8", "surrogatepass"),
                source.encode("utf-8", "surrogatepass"),
            ),
            digest_size=20,
        ).digest()
        code = self.entries.get(key)
        if code is not None:
            self.hits += 1
            self.used[key] = code
            return code
        code = self.used.get(key)
        if code is not None:  # compiled earlier in this process
            self.hits += 1
            return code
        self.misses += 1
        code = builtins.compile(source, filename, mode, flags, True)
        if len(self.used) < MAX_ENTRIES:
            self.used[key] = code
            self.unsaved += 1
        return code

    def release(self) -> None:
        """Forget the file's entries this process did not use (after start-up: they only take memory)."""
        self.entries = {}

    def install(self) -> None:
        """Route the generating libraries' `compile` calls through this cache (imports them if needed)."""
        for name in MODULES:
            try:
                __import__(name)
            except ImportError:
                continue
            module = sys.modules[name]
            if module not in self.installed:
                module.compile = self.compile  # type: ignore[attr-defined]  # shadows the builtin there
                self.installed.append(module)

    def uninstall(self) -> None:
        for module in self.installed:
            with contextlib.suppress(AttributeError):
                del module.compile
        self.installed.clear()

    def save(self, min_new: int = 1) -> bool:
        """Write the cache if this process compiled at least `min_new` new entries; True when it wrote.
        Never raises."""
        if self.path is None or self.unsaved == 0 or self.unsaved < min_new:
            return False
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # What this process used: the file follows what the gateway needs now (an entry no start needs
            # any more, from an older lsprotocol for instance, is dropped at the next write).
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".codecache-")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(_HEADER + marshal.dumps(self.used))
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except (OSError, ValueError):
            return False
        self.unsaved = 0
        return True


_active: CodeCache | None = None


def enable(directory: Path | None = None) -> CodeCache:
    """Install the process-wide cache (once), kept in `directory` (default: `default_dir()`)."""
    global _active
    if _active is None:
        where = directory if directory is not None else default_dir()
        _active = CodeCache(where / f"generated-{sys.implementation.cache_tag}.marshal")
        _active.install()
        atexit.register(save)
    return _active


def save() -> None:
    """Write what this process compiled (after start-up; again at exit if more came), then drop the file's
    entries start-up did not use."""
    if _active is not None:
        _active.save(MIN_NEW)
        _active.release()
