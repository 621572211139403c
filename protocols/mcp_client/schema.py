"""Pydantic models built at run time from an upstream tool's JSON Schemas.

A federated tool is a registry capability like any other, so it needs a params model and a result model.
Both are built here from the upstream's `inputSchema` / `outputSchema`: the params model accepts any
object (`extra="allow"`) and validates it with `jsonschema` against the upstream's exact schema, and both
models report that exact schema from `model_json_schema()` (MCP `tools/list`, the REST capability list)
and, with local `$ref`s inlined, to OpenAPI generation. No schema is rewritten into pydantic fields: the
upstream stays the single source of its own schema.
"""

from __future__ import annotations

import copy
import re
from typing import Any, ClassVar, Literal

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, model_validator
from pydantic.json_schema import DEFAULT_REF_TEMPLATE, GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

EMPTY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}

# The result envelope every federated tool returns (an MCP CallToolResult, camelCase as on the wire).
_CONTENT_ITEM: dict[str, Any] = {
    "type": "object",
    "description": "An MCP content block: text, image, audio, resource_link or embedded resource",
    "properties": {"type": {"type": "string"}},
    "required": ["type"],
    "additionalProperties": True,
}


def _validator_for(schema: dict[str, Any]) -> Validator:
    """A validator for `schema` in the draft it names (2020-12 when it names none)."""
    cls = jsonschema.validators.validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError:
        # A schema the upstream got slightly wrong still validates what it can; the upstream has the last word.
        cls = Draft202012Validator
    validator: Validator = cls(schema)
    return validator


def inline_local_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with `#/$defs/...` (and `#/definitions/...`) references replaced by their targets.

    Used where the schema is embedded in another document (OpenAPI components), in which a root-relative
    `$ref` would point at the wrong root. A recursive reference is left as an open object.
    """
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        found = schema.get(key)
        if isinstance(found, dict):
            defs.update({f"#/{key}/{name}": value for name, value in found.items()})

    def walk(node: Any, seen: frozenset[str]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref in defs:
                if ref in seen:
                    return {"type": "object", "description": f"recursive reference {ref}"}
                target = walk(copy.deepcopy(defs[ref]), seen | {ref})
                rest = {k: walk(v, seen) for k, v in node.items() if k != "$ref"}
                return {**target, **rest} if rest else target
            return {k: walk(v, seen) for k, v in node.items() if k not in ("$defs", "definitions")}
        if isinstance(node, list):
            return [walk(item, seen) for item in node]
        return node

    result = walk(schema, frozenset())
    assert isinstance(result, dict)
    result.pop("$schema", None)
    return result


class UpstreamParams(BaseModel):
    """Base of a federated tool's params model: any object, validated against the upstream's inputSchema."""

    model_config = ConfigDict(extra="allow")

    upstream_schema: ClassVar[dict[str, Any]] = EMPTY_OBJECT_SCHEMA
    upstream_validator: ClassVar[Validator | None] = None

    @model_validator(mode="before")
    @classmethod
    def _check_upstream_schema(cls, data: Any) -> Any:
        validator = cls.upstream_validator
        if validator is None:
            return data
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            first = errors[0]
            where = ".".join(str(p) for p in first.absolute_path) or "(root)"
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise PydanticCustomError(
                "upstream_schema", "{where}: {message}{more}", {"where": where, "message": first.message, "more": more}
            )
        return data

    @classmethod
    def model_json_schema(
        cls,
        by_alias: bool | None = None,
        ref_template: str = DEFAULT_REF_TEMPLATE,
        schema_generator: type[GenerateJsonSchema] = GenerateJsonSchema,
        mode: JsonSchemaMode = "validation",
        *,
        union_format: Literal["any_of", "primitive_type_array"] = "any_of",
    ) -> dict[str, Any]:
        """The upstream's inputSchema, exactly as it sent it."""
        return copy.deepcopy(cls.upstream_schema)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """For documents that embed this model (OpenAPI): the upstream schema with local refs inlined."""
        return inline_local_refs(cls.upstream_schema)

    def arguments(self) -> dict[str, Any]:
        """The arguments as they go upstream: exactly the fields the caller sent."""
        return dict(self.__pydantic_extra__ or {})


class UpstreamToolResult(BaseModel):
    """A federated tool's result: the upstream's MCP `CallToolResult` in its wire (camelCase) form.

    `mcp_passthrough` tells the MCP door to answer `tools/call` with `wire()` as it is (content blocks,
    `structuredContent`, `isError`, or a 2026-07-28 `InputRequiredResult` with `resultType`
    "input_required") rather than wrapping the model as structured content. `mcp_output_schema` is the
    upstream's outputSchema (or None), for the door's `tools/list`. REST and LSP see the same JSON object.
    """

    model_config = ConfigDict(extra="allow")

    mcp_passthrough: ClassVar[bool] = True
    mcp_output_schema: ClassVar[dict[str, Any] | None] = None

    def wire(self) -> dict[str, Any]:
        """The result as the upstream sent it (camelCase keys, unset keys absent)."""
        return dict(self.__pydantic_extra__ or {})

    @property
    def is_error(self) -> bool:
        """True when the upstream reported a tool error (`isError`)."""
        return bool(self.wire().get("isError"))

    @property
    def input_required(self) -> bool:
        """True when this is a 2026-07-28 `InputRequiredResult` the client must answer and retry."""
        return self.wire().get("resultType") == "input_required"

    @classmethod
    def envelope_schema(cls) -> dict[str, Any]:
        """JSON Schema of the CallToolResult envelope, with structuredContent typed by the outputSchema."""
        structured: dict[str, Any] = (
            copy.deepcopy(cls.mcp_output_schema) if cls.mcp_output_schema else {"type": "object"}
        )
        return {
            "type": "object",
            "title": cls.__name__,
            "description": "The upstream MCP server's CallToolResult",
            "properties": {
                "content": {"type": "array", "items": _CONTENT_ITEM},
                "structuredContent": structured,
                "isError": {"type": "boolean"},
            },
            "additionalProperties": True,
        }

    @classmethod
    def model_json_schema(
        cls,
        by_alias: bool | None = None,
        ref_template: str = DEFAULT_REF_TEMPLATE,
        schema_generator: type[GenerateJsonSchema] = GenerateJsonSchema,
        mode: JsonSchemaMode = "validation",
        *,
        union_format: Literal["any_of", "primitive_type_array"] = "any_of",
    ) -> dict[str, Any]:
        """The CallToolResult envelope (see `envelope_schema`)."""
        return cls.envelope_schema()

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """For documents that embed this model (OpenAPI): the envelope with local refs inlined."""
        return inline_local_refs(cls.envelope_schema())


_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def _class_name(tool_name: str, suffix: str) -> str:
    parts = [p for p in _NAME_UNSAFE.split(tool_name) if p]
    return "Upstream" + "".join(p[:1].upper() + p[1:] for p in parts) + suffix


def params_model(tool_name: str, input_schema: dict[str, Any] | None) -> type[UpstreamParams]:
    """A params model for the gateway tool `tool_name` that validates against `input_schema`."""
    schema = copy.deepcopy(input_schema) if input_schema else copy.deepcopy(EMPTY_OBJECT_SCHEMA)
    namespace: dict[str, Any] = {
        "__doc__": f"Arguments of {tool_name}, validated against the upstream's inputSchema.",
        "upstream_schema": schema,
        "upstream_validator": _validator_for(schema),
        "__module__": __name__,
    }
    return type(_class_name(tool_name, "Params"), (UpstreamParams,), namespace)


def result_model(tool_name: str, output_schema: dict[str, Any] | None) -> type[UpstreamToolResult]:
    """A result model for the gateway tool `tool_name` that carries the upstream CallToolResult as is."""
    namespace: dict[str, Any] = {
        "__doc__": f"Result of {tool_name}: the upstream's CallToolResult.",
        "mcp_output_schema": copy.deepcopy(output_schema) if output_schema else None,
        "__module__": __name__,
    }
    return type(_class_name(tool_name, "Result"), (UpstreamToolResult,), namespace)
