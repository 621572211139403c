"""Error mapping tables: one per door, from the core's error hierarchy to wire errors."""

from __future__ import annotations

from typing import Any

from gateway import errors as e

# REST: HTTP status for each core error (RFC 9457 problem+json bodies carry the code).
REST_STATUS: dict[type[e.GatewayError], int] = {
    e.InvalidParams: 422,
    e.NotFound: 404,
    e.Unsupported: 501,
    e.Cancelled: 409,
    e.ContentModified: 409,
    e.Timeout: 504,
    e.UpstreamFailure: 502,
    e.ToolFailed: 422,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.PathOutsideRoot: 403,
    e.RateLimited: 429,
    e.PayloadTooLarge: 413,
    e.Internal: 500,
}

TITLES: dict[int, str] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def rest_status(error: e.GatewayError) -> int:
    """The HTTP status for `error`, walking up its class hierarchy."""
    for cls in type(error).__mro__:
        if cls in REST_STATUS:
            return REST_STATUS[cls]
    return 500


def problem(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """An RFC 9457 problem document."""
    body: dict[str, Any] = {
        "type": f"urn:gateway:error:{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def problem_from_error(error: e.GatewayError) -> tuple[int, dict[str, Any]]:
    """Status and problem body for a core error; `data` fields become extension members."""
    status = rest_status(error)
    return status, problem(status, error.code, error.message, **error.data)


# LSP: JSON-RPC error codes for each core error (LSP 3.17 codes where the spec has one).
LSP_REQUEST_FAILED = -32803
LSP_CODES: dict[type[e.GatewayError], int] = {
    e.InvalidParams: -32602,
    e.NotFound: -32602,
    e.Unsupported: -32601,
    e.Cancelled: -32800,
    e.ContentModified: -32801,
    e.Timeout: LSP_REQUEST_FAILED,
    e.UpstreamFailure: LSP_REQUEST_FAILED,
    e.ToolFailed: LSP_REQUEST_FAILED,
    e.Unauthorized: LSP_REQUEST_FAILED,
    e.Forbidden: LSP_REQUEST_FAILED,
    e.PathOutsideRoot: LSP_REQUEST_FAILED,
    e.RateLimited: LSP_REQUEST_FAILED,
    e.PayloadTooLarge: -32600,
    e.Internal: -32603,
}


def lsp_code(error: e.GatewayError) -> int:
    """The JSON-RPC error code for `error` on the LSP door."""
    for cls in type(error).__mro__:
        if cls in LSP_CODES:
            return LSP_CODES[cls]
    return -32603
