"""The middleware chain around every execution: structured log line, metrics, auth check, rate limit."""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .errors import Forbidden, GatewayError, RateLimited, Unauthorized
from .execution import Execution, Middleware, Next
from .metrics import Metrics
from .ratelimit import RateLimiter

if TYPE_CHECKING:
    from .capabilities.admin import Membership

access_log = logging.getLogger("gateway.access")
ACCESS_LINES_DELAY = 0.005


class StructuredMessage:
    """A log message made of fields: its text is their JSON object, built only when a handler asks for it.

    The gateway's JSON formatter (`gateway.cli.JsonFormatter`) takes the fields as they are, so an access
    line is encoded once instead of being encoded, parsed back and encoded again.
    """

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return json.dumps(self.fields)


def logging_middleware() -> Middleware:
    """One structured log line per execution, whatever its outcome."""

    async def mw(execution: Execution, nxt: Next) -> BaseModel:
        if not access_log.isEnabledFor(logging.INFO):
            return await nxt()
        started = time.monotonic()
        outcome = "finished"
        code: str | None = None
        try:
            return await nxt()
        except GatewayError as exc:
            outcome, code = ("cancelled" if exc.code == "cancelled" else "failed"), exc.code
            raise
        except BaseException:
            outcome, code = "cancelled", "cancelled"
            raise
        finally:
            line = {
                "event": "execution",
                "execution_id": execution.id,
                "capability": execution.capability.name,
                "door": execution.call.door.value,
                "subject": execution.call.identity.subject,
                "status": outcome,
                "error": code,
                "duration_ms": round((time.monotonic() - started) * 1000, 3),
            }
            access_lines.add(line)

    return mw


class _AccessLines:
    """Access lines are written after the answer has gone out, not on its way.

    A line is queued with its fields and the time it was made, and the queue is written `ACCESS_LINES_DELAY`
    later from one timer: formatting and writing (a flush, a syscall, per line) no longer delay the reply,
    even one that takes a few more turns of the event loop to leave (an MCP result crosses the SDK's
    streams and tasks), and the lines of a busy moment are written together. Without a running loop a
    line is written at once; what is queued when the gateway closes, or at exit, is written then."""

    def __init__(self) -> None:
        self._pending: list[tuple[float, dict[str, Any]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop a flush is scheduled on

    def add(self, fields: dict[str, Any]) -> None:
        self._pending.append((time.time(), fields))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._loop is not loop:  # none scheduled here yet (or on a loop that has gone away)
            self._loop = loop
            loop.call_later(ACCESS_LINES_DELAY, self.flush)

    def flush(self) -> None:
        self._loop = None
        pending, self._pending = self._pending, []
        for created, fields in pending:
            # `access_log.info(StructuredMessage(fields))` without `Logger.findCaller`, a walk up the stack
            # to learn a file and line that are always these (and that no formatter of ours shows).
            record = access_log.makeRecord(
                access_log.name, logging.INFO, __file__, 0, StructuredMessage(fields), (), None, "logging_middleware"
            )
            record.created = created
            record.msecs = (created - int(created)) * 1000
            access_log.handle(record)


access_lines = _AccessLines()
atexit.register(access_lines.flush)


def metrics_middleware(metrics: Metrics) -> Middleware:
    """Count executions by capability, door and status and time them."""

    # The labelled children, looked up once per label set: `labels()` takes a lock and builds tuples on
    # every call, four times per execution otherwise. Metrics of a process are never removed.
    in_flight: dict[str, Any] = {}
    counted: dict[tuple[str, str, str], Any] = {}
    timed: dict[tuple[str, str], Any] = {}

    async def mw(execution: Execution, nxt: Next) -> BaseModel:
        cap, door = execution.capability.name, execution.call.door.value
        status = "finished"
        gauge = in_flight.get(door)
        if gauge is None:
            gauge = in_flight[door] = metrics.in_flight.labels(door)
        gauge.inc()
        started = time.perf_counter()
        try:
            return await nxt()
        except GatewayError as exc:
            status = "cancelled" if exc.code == "cancelled" else "failed"
            raise
        except BaseException:
            status = "cancelled"
            raise
        finally:
            elapsed = time.perf_counter() - started
            gauge.dec()
            counter = counted.get((cap, door, status))
            if counter is None:
                counter = counted[(cap, door, status)] = metrics.executions.labels(cap, door, status)
            counter.inc()
            histogram = timed.get((cap, door))
            if histogram is None:
                histogram = timed[(cap, door)] = metrics.duration.labels(cap, door)
            histogram.observe(elapsed)

    return mw


def auth_middleware(auth_required: bool, membership: Membership | None = None) -> Middleware:
    """Refuse anonymous callers when auth is on, and callers whose role is below the capability's.

    A workspace role set by an owner (`set_member_role`) overrides the role the credentials carry.
    """

    async def mw(execution: Execution, nxt: Next) -> BaseModel:
        identity = execution.call.identity
        if membership is not None and membership.roles:
            identity = execution.call.identity = membership.effective(identity)
        if auth_required and not identity.authenticated:
            raise Unauthorized("authentication required")
        needed = execution.capability.required_role
        if identity.role < needed:
            raise Forbidden(
                f"{execution.capability.name} needs the {needed.name.lower()} role",
                data={"required_role": needed.name.lower(), "role": identity.role.name.lower()},
            )
        return await nxt()

    return mw


def rate_limit_middleware(limiter: RateLimiter, metrics: Metrics | None = None) -> Middleware:
    """Token bucket per identity; refusals carry the seconds to wait."""

    async def mw(execution: Execution, nxt: Next) -> BaseModel:
        wait = await limiter.acquire(execution.call.identity.subject)
        if wait > 0:
            if metrics is not None:
                metrics.rate_limited.labels(execution.call.door.value).inc()
            raise RateLimited("rate limit exceeded", retry_after=wait)
        return await nxt()

    return mw
