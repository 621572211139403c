from __future__ import annotations

import pytest
from pydantic import BaseModel

from gateway.errors import NotFound
from gateway.execution import ExecutionContext
from gateway.registry import Capability, Door, DuplicateCapability, Registry


class P(BaseModel):
    x: int = 0


class R(BaseModel):
    y: int


def make_registry() -> Registry:
    registry = Registry()

    @registry.register("double", P, R, doors=frozenset({Door.REST, Door.MCP}))
    async def double(ctx: ExecutionContext, params: P) -> R:
        """Double a number.

        Longer description here.
        """
        return R(y=params.x * 2)

    return registry


def test_register_takes_summary_and_description_from_docstring() -> None:
    cap = make_registry().get("double")
    assert cap.summary == "Double a number."
    assert cap.description == "Longer description here."
    assert cap.params_model is P and cap.result_model is R


def test_duplicate_names_are_rejected() -> None:
    registry = make_registry()
    cap = registry.get("double")
    with pytest.raises(DuplicateCapability):
        registry.add(Capability(name="double", params_model=P, result_model=R, handler=cap.handler, summary="x"))


def test_unknown_capability_is_not_found() -> None:
    with pytest.raises(NotFound):
        make_registry().get("nope")


def test_doors_filter_what_each_door_sees() -> None:
    registry = make_registry()
    assert [c.name for c in registry.for_door(Door.REST)] == ["double"]
    assert registry.for_door(Door.LSP) == []
    assert [c.name for c in registry.for_door(Door.INTERNAL)] == ["double"]


def test_listeners_hear_additions_and_removals() -> None:
    registry = make_registry()
    seen: list[int] = []
    registry.on_change(lambda: seen.append(len(registry)))
    registry.remove("double")
    registry.remove("double")  # removing twice is quiet and not a change
    assert seen == [0]
