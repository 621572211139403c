"""The capability registry: one entry per capability, the single source every door derives from."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from .errors import NotFound
from .identity import Role

if TYPE_CHECKING:
    from .execution import ExecutionContext


class Door(StrEnum):
    """The ways a request can come in."""

    REST = "rest"
    LSP = "lsp"
    MCP = "mcp"
    HUB = "hub"
    INTERNAL = "internal"


ALL_DOORS: frozenset[Door] = frozenset(Door)

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)

Handler = Callable[["ExecutionContext", P], Awaitable[R]]


@dataclass(frozen=True)
class Capability(Generic[P, R]):
    """A named operation with typed params and result, exposed on some doors."""

    name: str
    params_model: type[P]
    result_model: type[R]
    handler: Handler[P, R]
    summary: str
    description: str = ""
    doors: frozenset[Door] = ALL_DOORS
    lsp_method: str | None = None
    required_role: Role = Role.VIEWER
    read_only: bool = True
    destructive: bool = False
    idempotent: bool = True
    tags: tuple[str, ...] = field(default_factory=tuple)

    def exposed_on(self, door: Door) -> bool:
        return door in self.doors or door is Door.INTERNAL


class DuplicateCapability(ValueError):
    """A capability name was registered twice."""


def _doc_parts(handler: Callable[..., Any]) -> tuple[str, str]:
    doc = inspect.getdoc(handler) or ""
    summary, _, rest = doc.partition("\n\n")
    return " ".join(summary.split()), rest.strip()


class Registry:
    """Holds every capability by name; listeners hear about additions and removals."""

    def __init__(self) -> None:
        self._caps: dict[str, Capability[Any, Any]] = {}
        self._listeners: list[Callable[[], None]] = []

    def add(self, cap: Capability[Any, Any]) -> None:
        if cap.name in self._caps:
            raise DuplicateCapability(f"capability {cap.name!r} is already registered")
        self._caps[cap.name] = cap
        self._changed()

    def remove(self, name: str) -> None:
        if self._caps.pop(name, None) is not None:
            self._changed()

    def register(
        self,
        name: str,
        params_model: type[P],
        result_model: type[R],
        *,
        doors: frozenset[Door] = ALL_DOORS,
        lsp_method: str | None = None,
        required_role: Role = Role.VIEWER,
        read_only: bool = True,
        destructive: bool = False,
        idempotent: bool = True,
        tags: tuple[str, ...] = (),
    ) -> Callable[[Handler[P, R]], Handler[P, R]]:
        """Decorator: register `handler` under `name`; its docstring gives summary and description."""

        def decorate(handler: Handler[P, R]) -> Handler[P, R]:
            summary, description = _doc_parts(handler)
            self.add(
                Capability(
                    name=name,
                    params_model=params_model,
                    result_model=result_model,
                    handler=handler,
                    summary=summary or name,
                    description=description,
                    doors=doors,
                    lsp_method=lsp_method,
                    required_role=required_role,
                    read_only=read_only,
                    destructive=destructive,
                    idempotent=idempotent,
                    tags=tags,
                )
            )
            return handler

        return decorate

    def get(self, name: str) -> Capability[Any, Any]:
        try:
            return self._caps[name]
        except KeyError:
            raise NotFound(f"unknown capability {name!r}", data={"capability": name}) from None

    def __contains__(self, name: object) -> bool:
        return name in self._caps

    def __iter__(self) -> Iterator[Capability[Any, Any]]:
        return iter(sorted(self._caps.values(), key=lambda c: c.name))

    def __len__(self) -> int:
        return len(self._caps)

    def for_door(self, door: Door) -> list[Capability[Any, Any]]:
        return [c for c in self if c.exposed_on(door)]

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def off_change(self, listener: Callable[[], None]) -> None:
        """Stop telling `listener` about changes (a door session that ended)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()
