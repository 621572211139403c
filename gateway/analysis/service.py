"""The analysis service: the engines for each language, tried in order, and why an answer is empty.

Order per document: the managed language servers whose languages or globs match (in config order),
then the built-in jedi engine (Python), then the built-in tree-sitter engine. The first engine that
offers the operation answers. An engine that is starting or restarting is skipped for the next one;
if no engine answers, the result says why (`EmptyReason`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..errors import GatewayError
from ..workspace import DocumentSnapshot, TextChange, Workspace
from .engine import Engine, EngineUnavailable
from .models import EmptyReason

log = logging.getLogger("gateway.analysis")

T = TypeVar("T")


@dataclass
class Answer(Generic[T]):
    """What the engines said: a value, or None with the reason it is empty."""

    value: T | None
    engine: str | None = None
    reason: EmptyReason | None = None
    message: str | None = None


class AnalysisService:
    """Routes each operation to the right engine and keeps every engine in sync with the documents."""

    def __init__(self, workspace: Workspace, engines: Sequence[Engine]) -> None:
        self.workspace = workspace
        self.engines = list(engines)
        workspace.listeners.append(self)

    async def start(self) -> None:
        for engine in self.engines:
            try:
                await engine.start()
            except Exception:
                log.exception("analysis engine %s failed to start", engine.name)

    async def close(self) -> None:
        for engine in self.engines:
            try:
                await engine.close()
            except Exception:
                log.exception("analysis engine %s failed to close", engine.name)
        if self in self.workspace.listeners:
            self.workspace.listeners.remove(self)

    def engines_for(self, path: str, language_id: str) -> list[Engine]:
        return [e for e in self.engines if e.handles(path, language_id)]

    # -- document sync ----------------------------------------------------------------------------
    def document_opened(self, snapshot: DocumentSnapshot) -> None:
        for engine in self.engines_for(snapshot.path, snapshot.language_id):
            engine.document_opened(snapshot)

    def document_changed(self, snapshot: DocumentSnapshot, changes: Sequence[TextChange], previous_text: str) -> None:
        for engine in self.engines_for(snapshot.path, snapshot.language_id):
            engine.document_changed(snapshot, changes, previous_text)

    def document_closed(self, path: str) -> None:
        for engine in self.engines:
            engine.document_closed(path)

    # -- routing ------------------------------------------------------------------------------------
    async def ask(self, doc: DocumentSnapshot, call: Callable[[Engine], Awaitable[T | None]]) -> Answer[T]:
        """Ask the engines for `doc` in order; the first that offers the operation answers."""
        engines = self.engines_for(doc.path, doc.language_id)
        if not engines:
            return Answer(
                None, reason="language_not_configured", message=f"no analysis engine for {doc.language_id} files"
            )
        return await self._first(engines, call)

    async def ask_all(self, call: Callable[[Engine], Awaitable[list[T] | None]]) -> Answer[list[T]]:
        """Ask every engine (workspace-wide operations) and concatenate what they answer, in engine order."""
        combined: list[T] = []
        answered: list[str] = []
        unavailable: list[EngineUnavailable] = []
        for engine in self.engines:
            try:
                value = await call(engine)
            except EngineUnavailable as exc:
                unavailable.append(exc)
                continue
            except GatewayError as exc:
                log.warning("engine %s failed: %s", engine.name, exc.message)
                continue
            if value is not None:
                answered.append(engine.name)
                combined.extend(value)
        if answered:
            return Answer(combined, engine=",".join(answered))
        if unavailable:
            return Answer(None, reason=unavailable[0].reason, message=unavailable[0].message)
        return Answer(None, reason="unsupported", message="no engine offers this operation")

    async def _first(self, engines: Sequence[Engine], call: Callable[[Engine], Awaitable[T | None]]) -> Answer[T]:
        unavailable: list[EngineUnavailable] = []
        failures: list[str] = []
        for engine in engines:
            try:
                value = await call(engine)
            except EngineUnavailable as exc:
                unavailable.append(exc)
                continue
            except GatewayError as exc:
                if exc.code not in ("upstream_failure", "timeout"):
                    raise
                log.warning("engine %s failed, trying the next: %s", engine.name, exc.message)
                failures.append(f"{engine.name}: {exc.message}")
                continue
            if value is not None:
                return Answer(value, engine=engine.name)
        if unavailable:
            return Answer(None, reason=unavailable[0].reason, message=unavailable[0].message)
        if failures:
            return Answer(None, reason="server_restarting", message="; ".join(failures))
        return Answer(None, reason="unsupported", message="no engine for this language offers this operation")
