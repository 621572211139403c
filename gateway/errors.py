"""One error hierarchy for the whole core; each door maps these to its own wire errors."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base of every error the core raises on purpose; `code` is stable and safe to put on the wire."""

    code: str = "internal"

    def __init__(self, message: str, *, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data or {}


class InvalidParams(GatewayError):
    code = "invalid_params"


class NotFound(GatewayError):
    code = "not_found"


class Unsupported(GatewayError):
    code = "unsupported"


class Cancelled(GatewayError):
    code = "cancelled"


class ContentModified(GatewayError):
    code = "content_modified"


class Timeout(GatewayError):
    code = "timeout"


class UpstreamFailure(GatewayError):
    code = "upstream_failure"


class ToolFailed(GatewayError):
    code = "tool_failed"


class Unauthorized(GatewayError):
    code = "unauthorized"


class Forbidden(GatewayError):
    code = "forbidden"


class PathOutsideRoot(Forbidden):
    code = "path_outside_root"


class RateLimited(GatewayError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, data: dict[str, Any] | None = None) -> None:
        super().__init__(message, data={**(data or {}), "retry_after": retry_after})
        self.retry_after = retry_after


class PayloadTooLarge(GatewayError):
    code = "payload_too_large"


class Internal(GatewayError):
    """An unexpected failure; the message is generic and the details stay in the log."""

    code = "internal"


ERROR_TYPES: tuple[type[GatewayError], ...] = (
    InvalidParams,
    NotFound,
    Unsupported,
    Cancelled,
    ContentModified,
    Timeout,
    UpstreamFailure,
    ToolFailed,
    Unauthorized,
    Forbidden,
    PathOutsideRoot,
    RateLimited,
    PayloadTooLarge,
    Internal,
)
