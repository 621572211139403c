from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from translators.positions import from_code_points, line_length, to_code_points

# (line, code-point offset, utf-16 offset, utf-8 offset)
CASES = [
    ("abc", 2, 2, 2),
    ("a😀b", 1, 1, 1),
    ("a😀b", 2, 3, 5),
    ("a😀b", 3, 4, 6),
    ("中文x", 2, 2, 6),
    ("中文x", 3, 3, 7),
    ("e\u0301x", 2, 2, 3),  # e + combining acute accent: two code points
    ("e\u0301x", 3, 3, 4),
    ("👩\u200d💻!", 3, 5, 11),  # ZWJ sequence: three code points
]


@pytest.mark.parametrize(("line", "cp", "u16", "u8"), CASES)
def test_round_trips_between_code_points_and_utf16_utf8(line: str, cp: int, u16: int, u8: int) -> None:
    assert from_code_points(line, cp, "utf-16") == u16
    assert from_code_points(line, cp, "utf-8") == u8
    assert from_code_points(line, cp, "utf-32") == cp
    assert to_code_points(line, u16, "utf-16") == cp
    assert to_code_points(line, u8, "utf-8") == cp
    assert to_code_points(line, cp, "utf-32") == cp


def test_offsets_inside_a_character_round_down() -> None:
    assert to_code_points("a😀b", 2, "utf-16") == 1  # between the surrogates
    assert to_code_points("中x", 1, "utf-8") == 0
    assert to_code_points("中x", 2, "utf-8") == 0


def test_offsets_past_the_end_clamp() -> None:
    assert to_code_points("ab", 99, "utf-16") == 2
    assert from_code_points("ab", 99, "utf-8") == 2
    assert to_code_points("ab", -1, "utf-8") == 0


def test_line_length_counts_units() -> None:
    assert line_length("a😀中", "utf-16") == 4
    assert line_length("a😀中", "utf-8") == 8
    assert line_length("a😀中", "utf-32") == 3


@given(st.text(max_size=40), st.integers(min_value=-2, max_value=45))
def test_conversions_agree_with_encoding_the_prefix(line: str, offset: int) -> None:
    """Whatever the line (ASCII takes a shortcut), a code-point offset converts to the length of the encoded
    prefix, and converting back returns it."""
    cp = max(0, min(offset, len(line)))
    u16 = len(line[:cp].encode("utf-16-le", "surrogatepass")) // 2
    u8 = len(line[:cp].encode("utf-8", "surrogatepass"))
    assert from_code_points(line, offset, "utf-16") == u16
    assert from_code_points(line, offset, "utf-8") == u8
    assert to_code_points(line, u16, "utf-16") == cp
    assert to_code_points(line, u8, "utf-8") == cp
