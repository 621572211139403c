"""Params models made from a JSON Schema: the schema is shown as given and `jsonschema` validates.

Configured tools (and federated upstream tools) describe their parameters with a JSON Schema, not a
pydantic model. `model_from_schema` wraps such a schema in a pydantic model so the registry can hold it
like any other capability: `model_json_schema()` returns the schema exactly as given (so MCP
`inputSchema` and OpenAPI show it), and validation is done by `jsonschema` against that same schema, so
what is advertised and what is enforced never drift apart.

Format checks are off (`"format"` is an annotation; tools use `"format": "path"` as a marker). A schema
with its own `$schema` is validated by that draft's validator; the default is Draft 2020-12. Remote
`$ref`s are never fetched. Known limit: refs into the schema's own `$defs` resolve in `model_json_schema()`
but not once the schema is bundled into a larger document (OpenAPI components).
"""

from __future__ import annotations

import copy
import keyword
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, relevance
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, create_model, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from ..errors import InvalidParams

MAX_REPORTED_ERRORS = 10
"""At most this many schema violations are listed in an InvalidParams error."""
MAX_MESSAGE_CHARS = 300
"""A violation's message is cut to this many characters (jsonschema quotes the offending value)."""

_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_CLASS_NAME_JUNK = re.compile(r"[^A-Za-z0-9_]")


class SchemaParams(BaseModel):
    """Base of every schema-made params model; `arguments()` gives the validated values."""

    model_config = ConfigDict(extra="allow", frozen=True)

    jsonschema_source: ClassVar[dict[str, Any]] = {"type": "object"}
    """The schema exactly as given; `model_json_schema()` returns a copy of it."""
    jsonschema_validator: ClassVar[Validator]
    """The `jsonschema` validator for `json_schema`."""
    jsonschema_label: ClassVar[str] = "params"
    """Names the model in error messages."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """The configured schema instead of one derived from the (loose) pydantic fields."""
        return copy.deepcopy(cls.jsonschema_source)

    @model_validator(mode="before")
    @classmethod
    def _validate_with_jsonschema(cls, data: Any) -> Any:
        if isinstance(data, BaseModel):
            data = data.model_dump(exclude_unset=True)
        if not isinstance(data, Mapping):
            raise InvalidParams("params must be an object")
        check_instance(cls.jsonschema_validator, dict(data), cls.jsonschema_label)
        return data

    def arguments(self) -> dict[str, Any]:
        """The validated parameters as given: only the keys the caller sent, values untouched."""
        return self.model_dump(exclude_unset=True)

    def arguments_with_defaults(self) -> dict[str, Any]:
        """`arguments()` plus the schema's top-level `default` for each property the caller left out."""
        values = self.arguments()
        properties = self.jsonschema_source.get("properties")
        if isinstance(properties, Mapping):
            for name, sub in properties.items():
                if name not in values and isinstance(sub, Mapping) and "default" in sub:
                    values[name] = copy.deepcopy(sub["default"])
        return values


def check_instance(validator: Validator, instance: Any, label: str) -> None:
    """Raise `InvalidParams` listing the schema violations of `instance`, most relevant first."""
    try:
        errors = sorted(validator.iter_errors(instance), key=relevance)
    except Exception as exc:  # an unresolvable $ref and the like: the schema, not the caller, is at fault
        raise InvalidParams(f"{label}: the parameters could not be checked against the schema: {exc}") from None
    if not errors:
        return
    listed = [_describe(error) for error in errors[:MAX_REPORTED_ERRORS]]
    first = listed[0]
    where = f" at {first['loc']}" if first["loc"] else ""
    raise InvalidParams(
        f"invalid params for {label}: {first['msg']}{where}",
        data={"errors": listed, "error_count": len(errors)},
    )


def _describe(error: ValidationError) -> dict[str, str]:
    message = error.message
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return {
        "loc": ".".join(str(part) for part in error.absolute_path),
        "msg": message,
        "type": str(error.validator),
    }


def compile_schema(schema: dict[str, Any]) -> Validator:
    """A `jsonschema` validator for `schema` (its `$schema` draft, else 2020-12), format checks off.

    Raises `ValueError` when the schema itself is invalid.
    """
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        location = "/".join(str(p) for p in exc.absolute_path)
        raise ValueError(f"invalid JSON Schema{f' at {location}' if location else ''}: {exc.message}") from None
    return cls(schema)


def _field_name_ok(name: str) -> bool:
    """Whether a property can also be a declared pydantic field (others still validate, as extras)."""
    return (
        bool(_IDENTIFIER.match(name))
        and not keyword.iskeyword(name)
        and not name.startswith("model_")
        and not hasattr(SchemaParams, name)
    )


def model_from_schema(name: str, schema: Mapping[str, Any]) -> type[SchemaParams]:
    """A pydantic params model whose JSON Schema is `schema` and whose validation `jsonschema` does.

    `schema` must describe an object (`"type": "object"` or no type). Its top-level properties
    become loosely typed fields, so `model_fields` names them and says which are required; the
    validated values come back from `instance.arguments()`. Violations raise `InvalidParams` with
    the jsonschema message and the path of the offending value. Raises `ValueError` for an invalid
    schema.
    """
    if not isinstance(schema, Mapping):
        raise ValueError("a parameters schema must be a JSON object")
    kind = schema.get("type", "object")
    if kind != "object" and not (isinstance(kind, list) and "object" in kind):
        raise ValueError(f"a parameters schema must describe an object, not {kind!r}")
    frozen_schema = copy.deepcopy(dict(schema))
    validator = compile_schema(frozen_schema)
    properties = frozen_schema.get("properties")
    required = frozen_schema.get("required")
    fields: dict[str, Any] = {}
    if isinstance(properties, Mapping):
        needed = set(required) if isinstance(required, list) else set()
        for prop in properties:
            if isinstance(prop, str) and _field_name_ok(prop):
                fields[prop] = (Any, ... if prop in needed else None)
    class_name = _CLASS_NAME_JUNK.sub("_", name) or "Params"
    if not class_name[0].isalpha():
        class_name = "P_" + class_name
    model = create_model(class_name, __base__=SchemaParams, **fields)
    model.jsonschema_source = frozen_schema
    model.jsonschema_validator = validator
    model.jsonschema_label = name
    return model
