"""Opaque cursors and pages for every list result."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from .errors import InvalidParams

T = TypeVar("T")


class PageParams(BaseModel):
    """Mixin for list params: how many items and where to continue."""

    limit: int = Field(100, ge=1, le=1000, description="Items per page")
    cursor: str | None = Field(None, description="The next_cursor of the previous page")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(None, description="Pass as cursor to get the next page; null at the end")
    total: int | None = Field(None, description="How many items in all, when known")


def encode_cursor(offset: int, key: str = "") -> str:
    raw = json.dumps({"o": offset, "k": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, key: str = "") -> int:
    """The offset in `cursor`; refuses cursors that are malformed or made for another query."""
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data: Any = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = data["o"]
        if not isinstance(offset, int) or offset < 0 or data.get("k", "") != key:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise InvalidParams("invalid cursor", data={"cursor": cursor}) from None
    return offset


def paginate(items: Sequence[T], params: PageParams, key: str = "") -> tuple[list[T], str | None]:
    """Slice `items` for `params`; returns the page and the cursor of the next one."""
    start = decode_cursor(params.cursor, key)
    end = start + params.limit
    nxt = encode_cursor(end, key) if end < len(items) else None
    return list(items[start:end]), nxt
