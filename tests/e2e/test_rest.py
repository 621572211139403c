"""REST end to end against a real `gateway serve` subprocess."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from support.server import GATEWAY, ServerProcess, make_workspace, start_gateway
from support.sse import sse_events

PROBLEM = "application/problem+json"


@pytest.fixture
async def http(gateway_server: ServerProcess) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(gateway_server.url, timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def call(http: aiohttp.ClientSession, name: str, body: object) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with http.post(f"/v1/capabilities/{name}", json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_health_ready_and_metrics(http: aiohttp.ClientSession) -> None:
    async with http.get("/healthz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ok"
    async with http.get("/readyz") as resp:
        body = await resp.json()
        assert resp.status == 200 and body["bus"]["kind"] == "memory"
    await call(http, "list_files", {})
    async with http.get("/metrics") as resp:
        text = await resp.text()
    assert 'gateway_executions_total{capability="list_files",door="rest",status="finished"}' in text
    assert "gateway_execution_duration_seconds_bucket" in text
    assert 'gateway_open_connections{door="rest"}' in text
    assert "gateway_bus_queue_depth" in text and "gateway_bus_dropped_events" in text


async def test_capabilities_and_openapi_come_from_the_registry(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/capabilities") as resp:
        caps = {c["name"]: c for c in (await resp.json())["capabilities"]}
    expected = {"open_document", "change_document", "close_document", "read_document", "list_files", "read_file"}
    assert expected | {"search"} <= set(caps)
    assert caps["search"]["params_schema"]["properties"]["query"]["type"] == "string"
    async with http.get("/openapi.json") as resp:
        doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    for name in caps:
        op = doc["paths"][f"/v1/capabilities/{name}"]["post"]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.split("/")[-1] in doc["components"]["schemas"]
    assert "/v1/executions/{id}" in doc["paths"]


async def test_document_lifecycle_and_unsaved_text(http: aiohttp.ClientSession) -> None:
    status, info = await call(http, "open_document", {"path": "src/app.py", "version": 1})
    assert status == 200 and info["version"] == 1 and info["language_id"] == "python"
    change = {
        "path": "src/app.py",
        "version": 2,
        "changes": [
            {
                "range": {"start": {"line": 1, "character": 12}, "end": {"line": 1, "character": 17}},
                "text": "goodbye 😀",
            }
        ],
    }
    status, info = await call(http, "change_document", change)
    assert status == 200 and info["version"] == 2
    status, doc = await call(http, "read_document", {"path": "src/app.py"})
    assert "return 'goodbye 😀 world'" in doc["text"]
    status, content = await call(http, "read_file", {"path": "src/app.py", "start_line": 2, "end_line": 2})
    assert content["source"] == "document" and "goodbye 😀" in content["text"]
    status, found = await call(http, "search", {"query": "goodbye"})
    assert [(m["path"], m["line"]) for m in found["items"]] == [("src/app.py", 2)]
    status, stale = await call(http, "change_document", {**change, "version": 2})
    assert status == 409 and stale["code"] == "content_modified"
    status, _ = await call(http, "close_document", {"path": "src/app.py"})
    assert status == 200
    status, content = await call(http, "read_file", {"path": "src/app.py"})
    assert content["source"] == "disk" and "goodbye" not in content["text"]
    status, missing = await call(http, "read_document", {"path": "src/app.py"})
    assert status == 404 and missing["code"] == "not_found"


async def test_list_files_respects_gitignore_and_pages(http: aiohttp.ClientSession) -> None:
    status, page = await call(http, "list_files", {"limit": 2})
    assert status == 200
    paths = [f["path"] for f in page["items"]]
    while page["next_cursor"]:
        status, page = await call(http, "list_files", {"limit": 2, "cursor": page["next_cursor"]})
        paths += [f["path"] for f in page["items"]]
    assert paths == [".gitignore", "notes.md", "src/app.py", "src/util.py"]
    status, bad = await call(http, "list_files", {"cursor": "not-a-cursor"})
    assert status == 422 and bad["code"] == "invalid_params"


async def test_search_regex_and_read_file_with_unicode(http: aiohttp.ClientSession) -> None:
    status, found = await call(http, "search", {"query": r"hel+o\b", "regex": True, "case_sensitive": True})
    assert status == 200
    assert {m["path"] for m in found["items"]} == {"notes.md", "src/app.py"}
    status, bad = await call(http, "search", {"query": "(", "regex": True})
    assert status == 422 and bad["code"] == "invalid_params"
    status, content = await call(http, "read_file", {"path": "notes.md", "start_line": 3})
    assert content["text"].startswith("hello from 😀 and 中文")


async def test_sse_streams_progress_before_the_result(http: aiohttp.ClientSession) -> None:
    async with http.post(
        "/v1/capabilities/search", json={"query": "hello"}, headers={"Accept": "text/event-stream"}
    ) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        events = [e async for e in sse_events(resp)]
    kinds = [k for k, _ in events]
    assert kinds[0] == "started" and kinds[-1] == "result"
    assert "progress" in kinds[1:-1]
    assert events[-1][1]["total"] >= 2
    execution_id = events[0][1]["execution_id"]
    async with http.get(f"/v1/executions/{execution_id}") as resp:
        record = await resp.json()
    assert record["status"] == "finished" and record["capability"] == "search"


async def test_respond_async_then_poll(http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/capabilities/list_files", json={}, headers={"Prefer": "respond-async"}) as resp:
        assert resp.status == 202
        location = resp.headers["Location"]
    for _ in range(200):
        async with http.get(location) as resp:
            record = await resp.json()
        if record["status"] != "running":
            break
        await asyncio.sleep(0.01)
    assert record["status"] == "finished" and record["result"]["total"] == 4
    async with http.delete(location) as resp:
        assert resp.status == 409 and (await resp.json())["code"] == "already_finished"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 422, "invalid_params"),
        (b"[1, 2]", "application/json", 422, "invalid_params"),
        (b'{"path": 5}', "application/json", 422, "invalid_params"),
        (b'{"path": "../../etc/passwd"}', "application/json", 403, "path_outside_root"),
        (b'{"path": "/etc/passwd"}', "application/json", 403, "path_outside_root"),
        (b'{"path": "nope.txt"}', "application/json", 404, "not_found"),
    ],
)
async def test_bad_input_gets_problem_json(
    http: aiohttp.ClientSession, body: bytes, content_type: str, status: int, code: str
) -> None:
    async with http.post("/v1/capabilities/read_file", data=body, headers={"Content-Type": content_type}) as resp:
        assert resp.status == status
        assert resp.headers["Content-Type"].startswith(PROBLEM)
        problem = await resp.json(content_type=None)
    assert problem["code"] == code and problem["status"] == status
    assert "Traceback" not in str(problem)
    assert (await call(http, "list_files", {}))[0] == 200  # still serving


async def test_unknown_capability_route_and_method(http: aiohttp.ClientSession) -> None:
    status, problem = await call(http, "no_such_thing", {})
    assert status == 404 and problem["code"] == "not_found"
    async with http.get("/v1/nowhere") as resp:
        assert resp.status == 404 and resp.headers["Content-Type"].startswith(PROBLEM)
    async with http.get("/v1/capabilities/search") as resp:
        assert resp.status == 405 and (await resp.json(content_type=None))["code"] == "method_not_allowed"
    async with http.get("/v1/executions/deadbeef") as resp:
        assert resp.status == 404


async def test_oversized_body_gets_413(http: aiohttp.ClientSession) -> None:
    big = b'{"query": "' + b"x" * 2_000_000 + b'"}'
    async with http.post("/v1/capabilities/search", data=big, headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 413
        assert (await resp.json(content_type=None))["code"] == "payload_too_large"
    assert (await call(http, "list_files", {}))[0] == 200


@pytest.fixture(scope="module")
def big_server(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    root = tmp_path_factory.mktemp("big")
    block = "".join(f"line {i} with some text to scan through\n" for i in range(200))
    for d in range(40):
        sub = root / f"d{d}"
        sub.mkdir()
        for f in range(100):
            (sub / f"f{f}.txt").write_text(block)
    server = start_gateway(root)
    yield server  # type: ignore[misc]
    assert server.stop() == 0


async def test_cancel_a_running_search_over_rest(big_server: ServerProcess) -> None:
    async with aiohttp.ClientSession(big_server.url) as http:
        async with http.post(
            "/v1/capabilities/search",
            json={"query": r"through\s+zzz\d+", "regex": True},
            headers={"Accept": "text/event-stream"},
        ) as resp:
            stream = sse_events(resp)
            kind, started = await anext(stream)
            assert kind == "started"
            kind, _ = await anext(stream)
            assert kind == "progress"
            async with http.delete(f"/v1/executions/{started['execution_id']}") as cancel:
                assert cancel.status == 200
                assert (await cancel.json())["status"] == "cancelled"
            rest = [e async for e in stream]
        assert rest[-1][0] == "error" and rest[-1][1]["code"] == "cancelled"
        async with http.get("/metrics") as resp:
            assert 'capability="search",door="rest",status="cancelled"} 1.0' in await resp.text()


async def test_deadline_from_request_timeout_header(big_server: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession(big_server.url) as http,
        http.post(
            "/v1/capabilities/search",
            json={"query": r"through\s+zzz\d+", "regex": True},
            headers={"Request-Timeout": "0.05"},
        ) as resp,
    ):
        assert resp.status == 504
        assert (await resp.json(content_type=None))["code"] == "timeout"


def test_shutdown_lets_running_executions_finish(tmp_path: Path) -> None:
    server = start_gateway(make_workspace(tmp_path / "ws"))
    assert server.stop() == 0
    assert any("shutting down" in line for line in server.lines)


def test_refuses_to_bind_beyond_loopback_without_auth(tmp_path: Path) -> None:
    out = subprocess.run(
        [*GATEWAY, "serve", "--host", "0.0.0.0", "--http-port", "0", "--workspace", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "no auth is configured" in out.stderr


def test_config_check_reports_clear_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[server]\nhttp_port = 9999\n")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nhttp_port = 'x'\nbogus = 1\n")
    ok = subprocess.run([*GATEWAY, "config", "check", "--config", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0 and "config ok" in ok.stdout
    err = subprocess.run([*GATEWAY, "config", "check", "--config", str(bad)], capture_output=True, text=True)
    assert err.returncode == 1
    assert "server.http_port" in err.stderr and "server.bogus" in err.stderr
    assert "Traceback" not in err.stderr


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "gateway"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "serve" in out.stdout
