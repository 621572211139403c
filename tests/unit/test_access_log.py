"""The access line of every execution: its fields, and that it is written after the answer, not before."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.cli import JsonFormatter
from gateway.errors import InvalidParams
from gateway.events import InMemoryBus
from gateway.execution import CallContext, Core, ExecutionContext
from gateway.middleware import ACCESS_LINES_DELAY, access_lines, logging_middleware
from gateway.registry import Registry
from gateway.workspace import Workspace


class Params(BaseModel):
    fail: bool = False


class Result(BaseModel):
    ok: bool


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(self.format(r)) for r in self.records]


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    logger = logging.getLogger("gateway.access")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


def build(tmp_path: Path) -> Core:
    registry = Registry()

    @registry.register("probe", Params, Result)
    async def probe(ctx: ExecutionContext, params: Params) -> Result:
        """Answer, or fail with invalid params."""
        if params.fail:
            raise InvalidParams("asked to fail")
        return Result(ok=True)

    core = Core(registry, Workspace(tmp_path), InMemoryBus())
    core.middleware.append(logging_middleware())
    return core


async def test_access_lines_follow_the_answer_in_order(tmp_path: Path, capture: Capture) -> None:
    core = build(tmp_path)
    call = CallContext()
    first = await core.execute(call, "probe", {})
    with pytest.raises(InvalidParams):
        await core.execute(call, "probe", {"fail": True})
    assert first == Result(ok=True)
    assert capture.records == []  # nothing written on the way to the answer
    async with asyncio.timeout(5):  # a moment later, both together
        while len(capture.records) < 2:
            await asyncio.sleep(0.001)
    lines = capture.lines()
    assert [(line["capability"], line["status"], line["error"]) for line in lines] == [
        ("probe", "finished", None),
        ("probe", "failed", "invalid_params"),
    ]
    assert all(line["event"] == "execution" and line["door"] == "internal" for line in lines)
    assert all(isinstance(line["duration_ms"], float) and isinstance(line["ts"], float) for line in lines)
    assert lines[0]["execution_id"] != lines[1]["execution_id"]
    # Nothing is written twice, and an explicit flush (Gateway.close does one) with nothing queued is harmless.
    access_lines.flush()
    await asyncio.sleep(ACCESS_LINES_DELAY * 2)
    assert len(capture.records) == 2


def test_without_an_event_loop_the_line_is_written_at_once(capture: Capture) -> None:
    access_lines.add({"event": "execution", "capability": "sync", "status": "finished"})
    assert [line["capability"] for line in capture.lines()] == ["sync"]
