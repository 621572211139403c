"""The run queue's records and request bodies; the single schema source for the runs endpoints."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..agents.models import INPUT_MAX
from ..errors import InvalidParams
from ..execution import ErrorInfo
from ..identity import Identity, Role
from ..llm.models import TokenUsage


class Priority(StrEnum):
    """How urgent a run is; higher priorities are taken first, FIFO within one priority."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for low up to 3 for critical."""
        return PRIORITY_RANK[self]


PRIORITY_RANK: dict[Priority, int] = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}
# The order workers look at the priorities in: most urgent first.
PRIORITY_ORDER: tuple[Priority, ...] = (Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW)


class RunStatus(StrEnum):
    """Where a run is in its life; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True once the run will not change any more."""
        return self in TERMINAL


TERMINAL: frozenset[RunStatus] = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


class SubmitRun(BaseModel):
    """Body of `POST /v1/agents/{name}/runs`: the task, optional context and a priority."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(min_length=1, max_length=INPUT_MAX, description="What the agent should do")
    context: dict[str, Any] | None = Field(None, description="Extra facts for the agent")
    priority: Priority = Field(Priority.NORMAL, description="low, normal, high or critical")


def parse_submit(body: Mapping[str, Any]) -> SubmitRun:
    """Validate a submit body; InvalidParams lists what is wrong."""
    try:
        return SubmitRun.model_validate(dict(body))
    except ValidationError as exc:
        errors = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidParams("invalid run request", data={"errors": errors}) from None


class RunRecord(BaseModel):
    """What `GET /v1/runs/{id}` shows: one queued agent run, its attempts and its outcome."""

    id: str
    agent: str
    input: str
    context: dict[str, Any] | None = None
    priority: Priority = Priority.NORMAL
    status: RunStatus = RunStatus.QUEUED
    subject: str = Field(description="Who asked: the subject of the identity that submitted the run")
    attempts: int = Field(0, ge=0, description="Attempts started so far (an interrupted attempt counts)")
    max_attempts: int = Field(1, ge=1)
    steps: int = Field(0, ge=0, description="Model calls in the latest attempt")
    tool_calls: int = Field(0, ge=0, description="Tool calls in the latest attempt")
    usage: TokenUsage = Field(default_factory=TokenUsage, description="Tokens spent by the latest attempt")
    stop_reason: str | None = None
    created_at: float
    started_at: float | None = Field(None, description="When the first attempt started")
    finished_at: float | None = None
    duration_ms: float | None = Field(None, description="From the first start to the end")
    next_attempt_at: float | None = Field(None, description="When a retry after a failed attempt is due")
    cancel_requested: bool = False
    error: ErrorInfo | None = None
    result: dict[str, Any] | None = None


class RunPage(BaseModel):
    """Body of `GET /v1/runs`: the caller's runs, newest first."""

    runs: list[RunRecord]
    next_cursor: str | None = Field(None, description="Pass as cursor for the next page; null at the end")


def identity_to_json(identity: Identity) -> str:
    """The identity a run executes with, as stored next to the run."""
    return json.dumps(
        {
            "subject": identity.subject,
            "method": identity.method,
            "role": identity.role.name.lower(),
            "claims": dict(identity.claims),
        },
        default=str,
    )


def identity_from_json(raw: str) -> Identity:
    """The identity stored by `identity_to_json`."""
    data = json.loads(raw)
    role = Role.parse(str(data.get("role", ""))) or Role.VIEWER
    method = data.get("method", "anonymous")
    if method not in ("anonymous", "api_key", "jwt"):
        method = "anonymous"
    return Identity(subject=str(data["subject"]), method=method, role=role, claims=data.get("claims") or {})


def encode_cursor(created_at: float, run_id: str, status: str | None) -> str:
    """A keyset cursor: the last run of a page (newest first), bound to the status filter."""
    raw = json.dumps({"t": created_at, "i": run_id, "s": status or ""}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, status: str | None) -> tuple[float, str] | None:
    """The (created_at, id) in `cursor`; refuses cursors that are malformed or made for another filter."""
    if not cursor:
        return None
    try:
        data: Any = json.loads(base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
        created_at, run_id = data["t"], data["i"]
        if not isinstance(created_at, int | float) or not isinstance(run_id, str) or data.get("s") != (status or ""):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise InvalidParams("invalid cursor", data={"cursor": cursor}) from None
    return float(created_at), run_id
