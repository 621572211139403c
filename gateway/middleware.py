"""The middleware chain around every execution: structured log line, metrics, auth check, rate limit."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

from pydantic import BaseModel

from .errors import Forbidden, GatewayError, RateLimited, Unauthorized
from .execution import Execution, Middleware, Next
from .metrics import Metrics
from .ratelimit import RateLimiter

if TYPE_CHECKING:
    from .capabilities.admin import Membership

access_log = logging.getLogger("gateway.access")


def logging_middleware() -> Middleware:
    """One structured log line per execution, whatever its outcome."""

    async def mw(execution: Execution, nxt: Next) -> BaseModel:
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
            access_log.info(json.dumps(line))

    return mw


def metrics_middleware(metrics: Metrics) -> Middleware:
    """Count executions by capability, door and status and time them."""

    async def mw(execution: Execution, nxt: Next) -> BaseModel:
        cap, door = execution.capability.name, execution.call.door.value
        status = "finished"
        metrics.in_flight.labels(door).inc()
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
            metrics.in_flight.labels(door).dec()
            metrics.executions.labels(cap, door, status).inc()
            metrics.duration.labels(cap, door).observe(time.perf_counter() - started)

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
