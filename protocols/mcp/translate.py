"""Pure mappings between the core's models and MCP wire types; no I/O.

Capabilities become tools (schemas from the pydantic models, hints from the capability's flags), results
become `CallToolResult`s (structured content plus the same JSON as text), core errors become `isError`
results or JSON-RPC errors (the tables are in `translators.errors`), progress reports become MCP progress
values, and config prompts are rendered here.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import mcp_types as types
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

from gateway.config import PromptConfig
from gateway.errors import GatewayError, InvalidParams
from gateway.execution import ProgressReport
from gateway.pagination import decode_cursor, encode_cursor
from gateway.registry import Capability
from translators.errors import MCP_INVALID_PARAMS, mcp_code, mcp_error_data, mcp_tool_error_text

T = TypeVar("T")

COMPLETION_MAX_VALUES = 100
"""The spec caps one completion answer at 100 values."""

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)\}")


# -- tools ------------------------------------------------------------------------------------------
def tool_output_schema(cap: Capability[Any, Any]) -> dict[str, Any] | None:
    """The tool's `outputSchema`: the result model's JSON Schema when it is an object schema, else none.

    A result model may say otherwise with a `mcp_output_schema` class attribute (federated tools carry the
    upstream's schema there, or None).
    """
    model = cap.result_model
    if hasattr(model, "mcp_output_schema"):
        custom = model.mcp_output_schema
        return dict(custom) if isinstance(custom, Mapping) and custom.get("type") == "object" else None
    schema = _result_schema(model)
    return dict(schema) if schema.get("type") == "object" else None


_RESULT_SCHEMAS: weakref.WeakKeyDictionary[type[BaseModel], dict[str, Any]] = weakref.WeakKeyDictionary()
_INPUT_SCHEMAS: weakref.WeakKeyDictionary[type[BaseModel], dict[str, Any]] = weakref.WeakKeyDictionary()
"""Schemas per model class, computed once: pydantic builds them anew on every call, and the 2026-07-28
transport asks for the called tool's input schema on every `tools/call` (`Mcp-Param-*` header checks).
Weak keys: federated tools' models come and go with their upstreams."""
_ANNOTATED: weakref.WeakKeyDictionary[type[BaseModel], bool] = weakref.WeakKeyDictionary()
"""Per params model: whether its input schema annotates a property with `x-mcp-header`."""
X_MCP_HEADER = '"x-mcp-header"'  # as a key in the schema's JSON (a false hit only costs the SDK's check)


def _result_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A result model's JSON Schema, computed once per model (pydantic builds it anew on every call)."""
    schema = _RESULT_SCHEMAS.get(model)
    if schema is None:
        schema = _RESULT_SCHEMAS[model] = model.model_json_schema(mode="serialization")
    return schema


def _has_output_schema(model: type[BaseModel]) -> bool:
    custom = getattr(model, "mcp_output_schema", None)
    if hasattr(model, "mcp_output_schema"):
        return isinstance(custom, Mapping) and custom.get("type") == "object"
    return _result_schema(model).get("type") == "object"


def tool_input_schema(cap: Capability[Any, Any]) -> dict[str, Any]:
    """The tool's `inputSchema`: the params model's JSON Schema (always an object schema).

    Computed once per params model and shared: callers must not change it.
    """
    model = cap.params_model
    schema = _INPUT_SCHEMAS.get(model)
    if schema is None:
        schema = model.model_json_schema()
        if schema.get("type") != "object":
            schema = {"type": "object", **{k: v for k, v in schema.items() if k != "type"}}
        _INPUT_SCHEMAS[model] = schema
    return schema


def header_checked_schema(cap: Capability[Any, Any]) -> dict[str, Any] | None:
    """The tool's input schema when it annotates a property with `x-mcp-header`, else None.

    The SDK compares a 2026-07-28 call's `Mcp-Param-*` headers with the annotated properties only, walking
    the whole schema twice per call to find them; a schema without any has nothing to compare, and None
    tells the SDK so.
    """
    schema = tool_input_schema(cap)
    annotated = _ANNOTATED.get(cap.params_model)
    if annotated is None:
        annotated = _ANNOTATED[cap.params_model] = X_MCP_HEADER in json.dumps(schema)
    return schema if annotated else None


def tool_title(name: str) -> str:
    """A display title from a capability name: `read_file` -> `Read file`."""
    words = name.replace("_", " ").replace(".", " ").strip()
    return words[:1].upper() + words[1:]


def capability_tool(cap: Capability[Any, Any]) -> types.Tool:
    """The MCP tool for a capability: name, description, schemas and behaviour hints."""
    description = cap.summary if not cap.description else f"{cap.summary}\n\n{cap.description}"
    return types.Tool(
        name=cap.name,
        title=tool_title(cap.name),
        description=description,
        input_schema=tool_input_schema(cap),
        output_schema=tool_output_schema(cap),
        annotations=types.ToolAnnotations(
            read_only_hint=cap.read_only,
            destructive_hint=cap.destructive,
            idempotent_hint=cap.idempotent,
            open_world_hint="open_world" in cap.tags,
        ),
    )


def tool_result(cap: Capability[Any, Any], result: BaseModel) -> types.CallToolResult | dict[str, Any]:
    """The `tools/call` answer for a finished execution.

    Structured content is the result as JSON (when the tool declares an object output schema), and the
    same JSON goes in one text block for clients that read only text. A result whose model sets
    `mcp_passthrough` (federated tools) is already an MCP result in wire form and is returned as it is.
    """
    if getattr(type(result), "mcp_passthrough", False) and callable(getattr(result, "wire", None)):
        wire = result.wire()  # type: ignore[attr-defined]
        if isinstance(wire, dict):
            return wire
    data = result.model_dump(mode="json")
    text = json.dumps(data, ensure_ascii=False)
    has_schema = _has_output_schema(cap.result_model)
    structured = data if has_schema and isinstance(data, dict) else None
    return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=structured)


def tool_error_result(error: GatewayError) -> types.CallToolResult:
    """A failed execution as a tool result the model can read: `isError: true` and the message."""
    return types.CallToolResult(content=[types.TextContent(text=mcp_tool_error_text(error))], is_error=True)


def upstream_error(error: GatewayError) -> MCPError | None:
    """An upstream MCP server's own JSON-RPC error that a federated call carries (`data["mcp_error"]`)."""
    original = error.data.get("mcp_error") if isinstance(error.data, dict) else None
    if (
        isinstance(original, Mapping)
        and isinstance(original.get("code"), int)
        and not isinstance(original["code"], bool)
    ):
        return MCPError(
            code=original["code"], message=str(original.get("message", error.message)), data=original.get("data")
        )
    return None


def protocol_error(error: GatewayError) -> MCPError:
    """A core error as a JSON-RPC error (outside `tools/call`); an upstream's own error passes as it is."""
    passed = upstream_error(error)
    if passed is not None:
        return passed
    return MCPError(code=mcp_code(error), message=error.message, data=mcp_error_data(error))


def unknown(what: str, name: str, data: dict[str, Any] | None = None) -> MCPError:
    """The JSON-RPC error for a name the server does not know (-32602, as the 2026-07-28 spec says)."""
    return MCPError(code=MCP_INVALID_PARAMS, message=f"{what} not found: {name}", data=data)


# -- pagination -------------------------------------------------------------------------------------
def page(items: Sequence[T], cursor: str | None, size: int, key: str) -> tuple[list[T], str | None]:
    """One page of `items` after `cursor`; an unreadable cursor is a -32602 error."""
    try:
        start = decode_cursor(cursor, key)
    except InvalidParams as exc:
        raise protocol_error(exc) from None
    end = start + size
    return list(items[start:end]), (encode_cursor(end, key) if end < len(items) else None)


# -- progress ---------------------------------------------------------------------------------------
class ProgressCounter:
    """Turns core progress reports into MCP progress values, which must grow with every notification.

    A report carrying MCP numbers of its own (`data={"progress", "total"}`, as federated tools pass on an
    upstream's) keeps them; one with a percentage becomes `progress=percentage, total=100`; one with
    neither counts up by one. A report that would not make the value grow is nudged just above the last
    value when it has a message (an agent's "calling read_file" at the same percentage is worth showing),
    and skipped when it has none.
    """

    def __init__(self) -> None:
        self.last: float = 0.0
        self.sent = 0

    def next(self, report: ProgressReport) -> tuple[float, float | None, str | None] | None:
        """`(progress, total, message)` for the notification, or None to skip this report."""
        data = report.data or {}
        own, own_total = data.get("progress"), data.get("total")
        total: float | None
        if isinstance(own, int | float) and not isinstance(own, bool):
            value = float(own)
            total = float(own_total) if isinstance(own_total, int | float) and not isinstance(own_total, bool) else None
        elif report.percentage is not None:
            value, total = float(report.percentage), 100.0
        else:
            value, total = self.last + 1.0, None
        if self.sent and value <= self.last:
            if not report.message:
                return None
            value = round(self.last + 0.001, 6)
        self.last = value
        self.sent += 1
        return value, total, report.message


# -- prompts and completion -------------------------------------------------------------------------
def config_prompt(prompt: PromptConfig) -> types.Prompt:
    """A configured prompt as MCP lists it."""
    return types.Prompt(
        name=prompt.name,
        description=prompt.description,
        arguments=[
            types.PromptArgument(name=a.name, description=a.description, required=a.required) for a in prompt.arguments
        ],
    )


def render_prompt(prompt: PromptConfig, arguments: Mapping[str, str] | None) -> types.GetPromptResult:
    """Fill the template's `{argument}` placeholders; a missing required argument is a -32602 error.

    Only declared arguments are replaced, so other braces in the template (code, JSON) stay as they are.
    """
    given = dict(arguments or {})
    missing = [a.name for a in prompt.arguments if a.required and not given.get(a.name)]
    if missing:
        raise MCPError(
            code=MCP_INVALID_PARAMS,
            message=f"prompt {prompt.name} needs the argument(s): {', '.join(missing)}",
            data={"missing": missing},
        )
    declared = {a.name for a in prompt.arguments}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return given.get(name, "") if name in declared else match.group(0)

    text = _PLACEHOLDER.sub(fill, prompt.template)
    return types.GetPromptResult(
        description=prompt.description,
        messages=[types.PromptMessage(role="user", content=types.TextContent(text=text))],
    )


def complete_values(candidates: Iterable[str], prefix: str, *, has_more: bool = False) -> types.Completion:
    """The candidates that start with `prefix` (case-insensitive), at most 100, with the total."""
    folded = prefix.casefold()
    matches = [c for c in dict.fromkeys(candidates) if c.casefold().startswith(folded)]
    return types.Completion(
        values=matches[:COMPLETION_MAX_VALUES],
        total=len(matches),
        has_more=has_more or len(matches) > COMPLETION_MAX_VALUES,
    )
