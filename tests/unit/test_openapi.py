"""The OpenAPI document is derived from the registry's models, with the run queue when agents exist."""

from __future__ import annotations

from typing import Any

from gateway.capabilities import documents
from gateway.registry import Registry
from gateway.runs import RunRecord
from translators.openapi import build_openapi


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node)) if node else set()
    return set()


def test_paths_per_capability_and_every_ref_resolves() -> None:
    registry = Registry()
    documents.register(registry)
    doc = build_openapi(list(registry), version="t", auth=False)
    assert {"/v1/capabilities/open_document", "/v1/executions/{id}"} <= set(doc["paths"])
    assert "/v1/runs/{id}" not in doc["paths"]
    with_runs = build_openapi(list(registry), version="t", auth=True, run_record=RunRecord)
    assert {"/v1/agents/{name}/runs", "/v1/runs", "/v1/runs/{id}"} <= set(with_runs["paths"])
    assert with_runs["security"] == [{"bearer": []}]
    for d in (doc, with_runs):
        for ref in refs(d):
            assert ref.split("/")[-1] in d["components"]["schemas"], ref
