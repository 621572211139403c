"""Error mapping tables: one per door, from the core's error hierarchy to wire errors."""

from __future__ import annotations

import json
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


# MCP: a core error raised by a `tools/call` execution becomes a tool result with `isError: true` and the
# message as text (the model can read it and correct itself). Everywhere else (`resources/read`,
# `prompts/get`, `completion/complete`, an unknown tool name, a malformed request) it is a JSON-RPC error
# with the code below. Unknown names and resources are -32602 (2026-07-28 spec, SEP-2164).
MCP_INVALID_PARAMS = -32602
MCP_METHOD_NOT_FOUND = -32601
MCP_INTERNAL_ERROR = -32603
MCP_REQUEST_CANCELLED = -32800
MCP_CODES: dict[type[e.GatewayError], int] = {
    e.InvalidParams: MCP_INVALID_PARAMS,
    e.NotFound: MCP_INVALID_PARAMS,
    e.Unsupported: MCP_METHOD_NOT_FOUND,
    e.Cancelled: MCP_REQUEST_CANCELLED,
    e.ContentModified: MCP_INTERNAL_ERROR,
    e.Timeout: MCP_INTERNAL_ERROR,
    e.UpstreamFailure: MCP_INTERNAL_ERROR,
    e.ToolFailed: MCP_INTERNAL_ERROR,
    e.Unauthorized: MCP_INTERNAL_ERROR,
    e.Forbidden: MCP_INTERNAL_ERROR,
    e.PathOutsideRoot: MCP_INVALID_PARAMS,
    e.RateLimited: MCP_INTERNAL_ERROR,
    e.PayloadTooLarge: MCP_INVALID_PARAMS,
    e.Internal: MCP_INTERNAL_ERROR,
}


def mcp_code(error: e.GatewayError) -> int:
    """The JSON-RPC error code for `error` outside `tools/call` on the MCP door."""
    for cls in type(error).__mro__:
        if cls in MCP_CODES:
            return MCP_CODES[cls]
    return MCP_INTERNAL_ERROR


def mcp_error_data(error: e.GatewayError) -> dict[str, Any]:
    """The `data` of an MCP JSON-RPC error: the stable core code plus the error's own wire-safe data."""
    return {"code": error.code, **error.data}


def mcp_tool_error_text(error: e.GatewayError) -> str:
    """The text of an `isError` tool result: `code: message`, then the error's data as JSON when it has any."""
    text = f"{error.code}: {error.message}"
    if error.data:
        text += "\n" + json.dumps(error.data, ensure_ascii=False, default=str)
    return text
