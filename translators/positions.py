"""Position encodings: the core counts code points; LSP clients count UTF-16 units or UTF-8 bytes.

Each function takes the text of one line (without its line break) and converts a character offset
on that line. Offsets past the end of the line clamp to the line's end, as LSP asks; an offset that
falls inside a surrogate pair or a multi-byte sequence rounds down to the start of that character.
"""

from __future__ import annotations

from typing import Literal

Encoding = Literal["utf-8", "utf-16", "utf-32"]


def _unit_len(ch: str, encoding: Encoding) -> int:
    cp = ord(ch)
    if encoding == "utf-16":
        return 2 if cp > 0xFFFF else 1
    if encoding == "utf-8":
        if cp < 0x80:
            return 1
        if cp < 0x800:
            return 2
        if cp < 0x10000:
            return 3
        return 4
    return 1


def to_code_points(line: str, offset: int, encoding: Encoding) -> int:
    """Convert an `encoding` offset on `line` to a code-point offset."""
    if offset <= 0:
        return 0
    if encoding == "utf-32" or line.isascii():  # one unit per character: nothing to convert
        return min(offset, len(line))
    units = 0
    for index, ch in enumerate(line):
        units += _unit_len(ch, encoding)
        if units > offset:
            return index
        if units == offset:
            return index + 1
    return len(line)


def from_code_points(line: str, offset: int, encoding: Encoding) -> int:
    """Convert a code-point offset on `line` to an `encoding` offset."""
    offset = max(0, min(offset, len(line)))
    if encoding == "utf-32" or line.isascii():
        return offset
    if encoding == "utf-16":
        return len(line[:offset].encode("utf-16-le")) // 2
    return len(line[:offset].encode("utf-8", "surrogatepass"))


def line_length(line: str, encoding: Encoding) -> int:
    """The length of `line` in `encoding` units."""
    return from_code_points(line, len(line), encoding)
