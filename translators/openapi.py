"""The OpenAPI document, derived from the capability registry's pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.execution import ExecutionRecord
from gateway.registry import Capability, Door

REF = "#/components/schemas/{model}"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail", "code"],
}


def capability_path(name: str) -> str:
    return f"/v1/capabilities/{name}"


def _problem_responses(*statuses: int) -> dict[str, Any]:
    content = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {str(s): {"description": "Error", "content": content} for s in statuses}


def build_openapi(
    caps: list[Capability[Any, Any]], *, version: str, auth: bool, run_record: type[BaseModel] | None = None
) -> dict[str, Any]:
    """An OpenAPI 3.1 document with one path per capability and schemas from its models."""
    models: list[tuple[type[BaseModel], Any]] = []
    for cap in caps:
        models.append((cap.params_model, "validation"))
        models.append((cap.result_model, "serialization"))
    models.append((ExecutionRecord, "serialization"))
    if run_record is not None:
        models.append((run_record, "serialization"))
    keys, top = models_json_schema(models, ref_template=REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    schemas["Problem"] = PROBLEM_SCHEMA

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return dict(keys[(model, mode)])  # type: ignore[index]

    errors = _problem_responses(401, 403, 404, 409, 413, 422, 429, 500, 504)
    paths: dict[str, Any] = {}
    for cap in caps:
        paths[capability_path(cap.name)] = {
            "post": {
                "operationId": cap.name,
                "summary": cap.summary,
                "description": cap.description or cap.summary,
                "tags": ["capabilities"],
                "requestBody": {
                    # A capability whose params are all optional also accepts an empty body.
                    "required": any(f.is_required() for f in cap.params_model.model_fields.values()),
                    "content": {"application/json": {"schema": ref(cap.params_model, "validation")}},
                },
                "responses": {
                    "200": {
                        "description": "The result",
                        "content": {
                            "application/json": {"schema": ref(cap.result_model, "serialization")},
                            "text/event-stream": {
                                "schema": {"type": "string"},
                                "description": "When asked for: started, progress, then result or error events",
                            },
                        },
                    },
                    "202": {
                        "description": "With `Prefer: respond-async`: the execution started",
                        "content": {"application/json": {"schema": ref(ExecutionRecord, "serialization")}},
                    },
                    **errors,
                },
            }
        }
    record_ref = {"application/json": {"schema": ref(ExecutionRecord, "serialization")}}
    id_param = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    paths["/v1/executions/{id}"] = {
        "get": {
            "operationId": "get_execution",
            "summary": "The state of an execution",
            "parameters": id_param,
            "responses": {"200": {"description": "The record", "content": record_ref}, **errors},
        },
        "delete": {
            "operationId": "cancel_execution",
            "summary": "Cancel a running execution",
            "parameters": id_param,
            "responses": {
                "200": {"description": "The record after cancelling", "content": record_ref},
                **errors,
            },
        },
    }
    paths["/v1/capabilities"] = {
        "get": {
            "operationId": "list_capabilities",
            "summary": "Every capability this door exposes, with its schemas",
            "responses": {"200": {"description": "The list", "content": {"application/json": {"schema": {}}}}},
        }
    }
    if run_record is not None:
        run_ref = {"application/json": {"schema": ref(run_record, "serialization")}}
        name_param = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
        paths["/v1/agents/{name}/runs"] = {
            "post": {
                "operationId": "submit_run",
                "summary": "Queue a run of an agent; 202 with the run record and its Location",
                "parameters": name_param,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "input": {"type": "string"},
                                    "context": {"type": "object"},
                                    "priority": {"enum": ["low", "normal", "high", "critical"]},
                                },
                                "required": ["input"],
                            }
                        }
                    },
                },
                "responses": {"202": {"description": "Queued", "content": run_ref}, **errors},
            }
        }
        paths["/v1/runs"] = {
            "get": {
                "operationId": "list_runs",
                "summary": "The caller's runs, newest first",
                "parameters": [
                    {"name": n, "in": "query", "required": False, "schema": {"type": t}}
                    for n, t in (("status", "string"), ("limit", "integer"), ("cursor", "string"))
                ],
                "responses": {"200": {"description": "A page of runs"}, **errors},
            }
        }
        paths["/v1/runs/{id}"] = {
            "get": {
                "operationId": "get_run",
                "summary": "A run's record; with Accept: text/event-stream, its progress until it ends",
                "parameters": id_param,
                "responses": {"200": {"description": "The record", "content": run_ref}, **errors},
            },
            "delete": {
                "operationId": "cancel_run",
                "summary": "Cancel a queued or running run",
                "parameters": id_param,
                "responses": {"200": {"description": "The final record", "content": run_ref}, **errors},
            },
        }
    for path, summary in (("/healthz", "Liveness"), ("/readyz", "Readiness (reports Redis state)")):
        paths[path] = {
            "get": {
                "operationId": path.strip("/"),
                "summary": summary,
                "security": [],
                "responses": {"200": {"description": "OK"}, "503": {"description": "Not ready"}},
            }
        }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "gateway", "version": version},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc


def rest_capabilities(caps: list[Capability[Any, Any]]) -> list[Capability[Any, Any]]:
    return [c for c in caps if c.exposed_on(Door.REST)]
