"""Schemathesis against the `/openapi.json` of a real `gateway serve`: no 5xx, and responses match the schema.

Every capability's POST, GET/DELETE /v1/executions/{id}, /v1/capabilities, /healthz and /readyz get
schemathesis' coverage cases (boundary values, wrong types, other methods) and a few dozen fuzzed inputs,
valid and invalid. The run is deterministic: a fixed schemathesis seed (mixed with each operation's label),
`derandomize` and no example database.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from support.server import ServerProcess

SEED = 20240611
MAX_EXAMPLES = 40
REQUEST_TIMEOUT = 15.0
CHECKS = [not_a_server_error, response_schema_conformance]
EXECUTIONS = "/v1/executions/{id}"
# Files (and a folder) that `make_workspace` creates, so generated `path` params sometimes name something real.
WORKSPACE_PATHS = ("src/app.py", "src/util.py", "notes.md", ".gitignore", "debug.log", "build/out.py", "src")
# `X-Execution-Id`s of earlier responses, so the execution endpoints also get ids that exist.
seen_execution_ids: list[str] = []

# Hypothesis writes caches (local constants, charmaps) to `.hypothesis/` in the working directory, starting at
# collection, before any fixture runs; send them to the temp folder. No example database is kept at all.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "gateway-tests-hypothesis")


def flatmap_body(ctx: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    if isinstance(body, dict) and isinstance(body.get("path"), str):
        return st.one_of(st.just(body), st.sampled_from(WORKSPACE_PATHS).map(lambda path: {**body, "path": path}))
    return st.just(body)


def flatmap_path_parameters(ctx: schemathesis.HookContext, params: dict[str, Any]) -> st.SearchStrategy[Any]:
    if ctx.operation is None or ctx.operation.path != EXECUTIONS or not seen_execution_ids:
        return st.just(params)
    known = st.sampled_from(list(seen_execution_ids)).map(lambda execution_id: {**params, "id": execution_id})
    return st.one_of(st.just(params), known)


@pytest.fixture(autouse=True)
def _pytest_node_id_shim(request: pytest.FixtureRequest) -> None:
    """Schemathesis 4.32.5's `from_fixture` reads and writes `node._nodeid`, which pytest 9.2 no longer has."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@pytest.fixture(scope="module")
def gateway_schema(gateway_server: ServerProcess) -> schemathesis.BaseSchema:
    config = schemathesis.Config(seed=SEED)
    schema = schemathesis.openapi.from_url(f"{gateway_server.url}/openapi.json", config=config, timeout=10)
    schema.hook(flatmap_body)
    schema.hook(flatmap_path_parameters)
    return schema


def test_openapi_has_every_operation(gateway_schema: schemathesis.BaseSchema) -> None:
    paths = gateway_schema.raw_schema["paths"]
    assert {"/healthz", "/readyz", "/v1/capabilities", EXECUTIONS} <= set(paths)
    assert set(paths[EXECUTIONS]) == {"get", "delete"}
    assert {"/v1/capabilities/search", "/v1/capabilities/read_file"} <= set(paths)


def test_successful_responses_match_the_schema(gateway_schema: schemathesis.BaseSchema) -> None:
    """Valid calls for every 2xx the fuzzing below rarely reaches, each response checked against the schema."""

    def call(method: str, path: str, statuses: set[int], headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        case = gateway_schema[path][method].Case(**kwargs)
        response = case.call(headers=headers, timeout=REQUEST_TIMEOUT)
        assert response.status_code in statuses, response.text
        case.validate_response(response, checks=CHECKS)
        return response.json()

    for path in ("/healthz", "/readyz", "/v1/capabilities"):
        call("GET", path, {200})
    cap = "/v1/capabilities/{name}".format
    call("POST", cap(name="open_document"), {200}, body={"path": "src/util.py", "version": 1})
    change = {"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 5}}, "text": "HI"}
    call("POST", cap(name="change_document"), {200}, body={"path": "src/util.py", "changes": [change]})
    call("POST", cap(name="read_document"), {200}, body={"path": "src/util.py"})
    call("POST", cap(name="close_document"), {200}, body={"path": "src/util.py"})
    call("POST", cap(name="list_files"), {200}, body={"limit": 2})
    call("POST", cap(name="read_file"), {200}, body={"path": "notes.md", "start_line": 2, "max_bytes": 5})
    assert call("POST", cap(name="search"), {200}, body={"query": "hello", "limit": 1})["items"]
    started = call("POST", cap(name="search"), {202}, headers={"Prefer": "respond-async"}, body={"query": "HELLO"})
    call("GET", EXECUTIONS, {200}, path_parameters={"id": started["id"]})
    call("DELETE", EXECUTIONS, {200, 409}, path_parameters={"id": started["id"]})  # 200 if still running
    call("DELETE", EXECUTIONS, {409}, path_parameters={"id": started["id"]})


schema = schemathesis.pytest.from_fixture("gateway_schema")


@schema.parametrize()
@hypothesis.settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None)
def test_fuzzed_requests_get_no_5xx_and_conforming_responses(
    case: schemathesis.Case, gateway_server: ServerProcess
) -> None:
    response = case.call(timeout=REQUEST_TIMEOUT)
    for execution_id in response.headers.get("x-execution-id", []):  # lowercase names, lists of values
        if execution_id not in seen_execution_ids:
            seen_execution_ids.append(execution_id)
    try:
        case.validate_response(response, checks=CHECKS)
    except BaseException:
        if response.status_code >= 500:
            print("gateway log (tail):\n" + "".join(gateway_server.lines[-20:]))
        raise


def test_gateway_logged_no_unhandled_error(gateway_server: ServerProcess) -> None:
    """After the fuzzing: no error or traceback in the gateway log, even behind a response that looked fine."""
    bad = [line for line in gateway_server.lines if "Traceback" in line or '"level": "error"' in line]
    assert not bad, "".join(bad)[-4000:]
