"""A catastrophic regular expression is refused within bounded time instead of hanging a worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.capabilities import files
from gateway.config import LimitsConfig
from gateway.errors import InvalidParams
from gateway.events import InMemoryBus
from gateway.execution import CallContext, Core
from gateway.registry import Registry
from gateway.workspace import Workspace


async def test_exponential_backtracking_is_cut_off(tmp_path: Path) -> None:
    (tmp_path / "evil.txt").write_text("a" * 40 + "b\n")
    registry = Registry()
    files.register(registry, LimitsConfig())
    core = Core(registry, Workspace(tmp_path), InMemoryBus())
    with pytest.raises(InvalidParams, match="took over") as info:
        await core.execute(CallContext(), "search", {"query": r"(a|aa)+$", "regex": True})
    assert info.value.data == {"path": "evil.txt", "line": 1}
    found = await core.execute(CallContext(), "search", {"query": r"a+b", "regex": True})
    assert found.model_dump()["total"] == 1
