"""A workspace symbol index: every symbol's name, kind, place and container, searchable by name.

Pure data, no parsing and no I/O: an engine fills it per file (`replace`, `remove`) and asks it
(`search`, `find`, `names_with_prefix`). Positions count code points, like the rest of the core.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .models import Location, Position, Range, SymbolInfo, SymbolKind

_SEPARATORS = re.compile(r"::|[./#\\]")


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One symbol of one file: compact, so a big workspace's index stays small."""

    name: str
    kind: SymbolKind
    path: str
    start_line: int
    start_character: int
    end_line: int
    end_character: int
    container: str | None
    language: str

    @property
    def qualified_name(self) -> str:
        """The dotted path of the symbol: its container, a dot, its name."""
        return f"{self.container}.{self.name}" if self.container else self.name

    def to_symbol_info(self) -> SymbolInfo:
        """The core model of this entry."""
        return SymbolInfo(
            name=self.name,
            kind=self.kind,
            location=Location(
                path=self.path,
                range=Range(
                    start=Position(line=self.start_line, character=self.start_character),
                    end=Position(line=self.end_line, character=self.end_character),
                ),
            ),
            container=self.container,
        )


def normalise_name_path(name_path: str) -> str:
    """`Class::method`, `Class/method` and `Class#method` all become `Class.method`."""
    return ".".join(part for part in _SEPARATORS.split(name_path.strip()) if part)


def _subsequence_pattern(query: str) -> re.Pattern[str]:
    return re.compile(".*?".join(re.escape(ch) for ch in query))


class SymbolIndex:
    """Symbols by file and by name; replacing a file's symbols costs only that file's symbols."""

    def __init__(self) -> None:
        self._by_path: dict[str, list[IndexEntry]] = {}
        self._by_name: dict[str, dict[str, list[IndexEntry]]] = {}
        self._lower: dict[str, str] = {}
        self._count = 0

    # -- updates --------------------------------------------------------------------------------------
    def replace(self, path: str, entries: Iterable[IndexEntry]) -> None:
        """Make `entries` the symbols of `path`, dropping what the file had before."""
        self.remove(path)
        items = list(entries)
        self._by_path[path] = items
        self._count += len(items)
        for entry in items:
            per_path = self._by_name.get(entry.name)
            if per_path is None:
                per_path = self._by_name[entry.name] = {}
                self._lower[entry.name] = entry.name.lower()
            per_path.setdefault(path, []).append(entry)

    def remove(self, path: str) -> bool:
        """Forget the symbols of `path`; False when it was not indexed."""
        old = self._by_path.pop(path, None)
        if old is None:
            return False
        self._count -= len(old)
        for name in {entry.name for entry in old}:
            per_path = self._by_name.get(name)
            if per_path is None:
                continue
            per_path.pop(path, None)
            if not per_path:
                del self._by_name[name]
                del self._lower[name]
        return True

    def remove_under(self, directory: str) -> list[str]:
        """Forget every file below the folder `directory`; returns the paths dropped."""
        prefix = directory.rstrip("/") + "/"
        dropped = [path for path in self._by_path if path.startswith(prefix)]
        for path in dropped:
            self.remove(path)
        return dropped

    def clear(self) -> None:
        """Forget everything."""
        self._by_path.clear()
        self._by_name.clear()
        self._lower.clear()
        self._count = 0

    # -- questions ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    def __contains__(self, path: object) -> bool:
        return path in self._by_path

    @property
    def file_count(self) -> int:
        """How many files are indexed (files without symbols included)."""
        return len(self._by_path)

    def paths(self) -> list[str]:
        """The indexed files."""
        return list(self._by_path)

    def entries(self, path: str) -> list[IndexEntry]:
        """The symbols of `path` in document order ([] when not indexed)."""
        return list(self._by_path.get(path, ()))

    def _entries_named(self, name: str) -> Iterator[IndexEntry]:
        for items in self._by_name.get(name, {}).values():
            yield from items

    def search(self, query: str, language: str | None = None, limit: int | None = None) -> list[IndexEntry]:
        """Symbols whose name matches `query`, best first: exact, case-insensitive exact, prefix,
        substring, then subsequence (`gtN` finds `getName`). An empty query matches every symbol."""
        query = query.strip()
        lowered = query.lower()
        scored: list[tuple[int, int, str]] = []
        if not query:
            scored = [(0, len(name), name) for name in self._by_name]
        else:
            subsequence = _subsequence_pattern(lowered)
            for name, low in self._lower.items():
                if name == query:
                    score = 0
                elif low == lowered:
                    score = 1
                elif low.startswith(lowered):
                    score = 2
                elif lowered in low:
                    score = 3
                elif subsequence.search(low) is not None:
                    score = 4
                else:
                    continue
                scored.append((score, len(name), name))
        scored.sort()
        results: list[IndexEntry] = []
        for _score, _length, name in scored:
            matches = [e for e in self._entries_named(name) if language is None or e.language == language]
            matches.sort(key=lambda e: (e.path, e.start_line, e.start_character))
            results.extend(matches)
            if limit is not None and len(results) >= limit:
                return results[:limit]
        return results

    def find(self, name_path: str, kind: str | None = None, limit: int | None = None) -> list[IndexEntry]:
        """Symbols whose dotted path (container and name) is `name_path` or ends with `.name_path`."""
        wanted = normalise_name_path(name_path)
        if not wanted:
            return []
        name = wanted.rpartition(".")[2]
        suffix = "." + wanted
        results = []
        for entry in self._entries_named(name):
            if kind is not None and entry.kind != kind:
                continue
            qualified = entry.qualified_name
            if qualified == wanted or qualified.endswith(suffix):
                results.append(entry)
        results.sort(key=lambda e: (e.path, e.start_line, e.start_character))
        return results if limit is None else results[:limit]

    def names_with_prefix(self, prefix: str, limit: int | None = None) -> list[IndexEntry]:
        """One entry (the first by path) per distinct name that starts with `prefix`, ignoring case."""
        lowered = prefix.lower()
        names = sorted(name for name, low in self._lower.items() if low.startswith(lowered))
        if limit is not None:
            names = names[:limit]
        results = []
        for name in names:
            per_path = self._by_name[name]
            first_path = min(per_path)
            results.append(per_path[first_path][0])
        return results


__all__ = ["IndexEntry", "SymbolIndex", "normalise_name_path"]
