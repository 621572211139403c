"""Agents end to end: a real `gateway serve` whose model is a scripted OpenAI-compatible server on 127.0.0.1.

One agent run through each way in (REST SSE, the durable run queue, an LSP command with work-done progress),
cancellation, the step limit, runs surviving a restart of the embedded gateway, and LSP inline completion.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
import pytest
import pytest_asyncio
from lsprotocol import types as lsp
from mcp import Client
from pygls.lsp.client import LanguageClient
from support.scripted_llm import Recorded, ScriptedLLM, hang, text, tool_call
from support.server import ServerProcess, make_workspace, start_gateway
from support.sse import sse_events

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

KEY_ENV = {"SCRIPTED_LLM_KEY": "sk-scripted"}
SSE = {"Accept": "text/event-stream"}


class GatedLLM(ScriptedLLM):
    """The scripted server, plus a gate: while it is closed, requests are recorded but not answered."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()

    async def _record(self, request: Any) -> tuple[dict[str, Any], Any]:
        recorded = await super()._record(request)
        await self.gate.wait()
        return recorded


def config_text(base_url: str, *, inline: bool = True, workers: int = 2) -> str:
    """A gateway config: one model on the scripted server, two agents, inline completion, a fast queue."""
    inline_section = '[inline_completion]\nmodel = "m"\ndebounce_ms = 300\n' if inline else ""
    return f"""
[server]
shutdown_grace_seconds = 0.5

[[models]]
name = "m"
model = "openai/scripted"
api_base = "{base_url}"
api_key_env = "SCRIPTED_LLM_KEY"
max_retries = 0
timeout_seconds = 30

[[agents]]
name = "helper"
description = "Answers questions about the code"
model = "m"
system_prompt = "You are careful."
tools = ["read_file", "search"]
max_steps = 4

[[agents]]
name = "limited"
model = "m"
tools = ["read_file", "search"]
max_steps = 2

{inline_section}
[queue]
workers = {workers}
backoff_initial_seconds = 0.1
"""


async def start(workspace: Path, config: Path) -> ServerProcess:
    """`gateway serve` in a thread, so the scripted server on this loop keeps answering meanwhile."""
    return await asyncio.to_thread(start_gateway, workspace, "--config", str(config), env=KEY_ENV)


async def stop(server: ServerProcess) -> None:
    assert await asyncio.to_thread(server.stop) == 0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def llm() -> AsyncIterator[GatedLLM]:
    async with GatedLLM() as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory, llm: GatedLLM) -> AsyncIterator[ServerProcess]:
    root = tmp_path_factory.mktemp("agents")
    workspace = make_workspace(root / "ws")
    config = root / "gateway.toml"
    config.write_text(config_text(llm.base_url))
    server = await start(workspace, config)
    yield server
    llm.gate.set()
    await stop(server)


@pytest_asyncio.fixture(loop_scope="module")
async def http(gateway: ServerProcess, llm: GatedLLM) -> AsyncIterator[aiohttp.ClientSession]:
    llm.script.clear()  # every test scripts its own replies
    llm.gate.set()
    async with aiohttp.ClientSession(gateway.url, timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session
    assert not llm.script, f"replies left unused: {llm.script}"


async def events_of(resp: aiohttp.ClientResponse) -> list[tuple[str, Any]]:
    assert resp.status == 200, await resp.text()
    return [item async for item in sse_events(resp)]


def kinds(events: list[tuple[str, Any]]) -> list[str]:
    return [data["data"]["kind"] for event, data in events if event == "progress" and data.get("data")]


def user_text(recorded: Recorded) -> str:
    return next(str(m["content"]) for m in recorded.body["messages"] if m["role"] == "user")


# -- the three ways in ---------------------------------------------------------------------------------------
async def test_agent_run_over_rest_sse(http: aiohttp.ClientSession, llm: GatedLLM) -> None:
    llm.push(
        tool_call("read_file", {"path": "src/app.py"}, id="call_1"),
        tool_call("search", {"query": "hello"}, id="call_2"),
        text("src/app.py defines hello()."),
    )
    async with http.post("/v1/capabilities/agent.helper", json={"input": "What is in src/app.py?"}, headers=SSE) as r:
        events = await events_of(r)
    names = [event for event, _ in events]
    assert names[0] == "started" and names[-1] == "result"
    assert {"step", "text", "tool_call", "tool_result", "final"} <= set(kinds(events))
    calls = [d["data"] for e, d in events if e == "progress" and d.get("data", {}).get("kind") == "tool_result"]
    assert [(c["name"], c["ok"]) for c in calls] == [("read_file", True), ("search", True)]
    result = events[-1][1]
    assert result["output"] == "src/app.py defines hello()." and result["stop_reason"] == "final"
    assert result["steps"] == 3 and [c["name"] for c in result["tool_calls"]] == ["read_file", "search"]
    second = llm.bodies("/chat/completions")[-2]
    assert "def hello" in second["messages"][-1]["content"]  # the file went back to the model


@pytest.mark.parametrize("mode", ["legacy", "auto"], ids=["2025-11-25", "2026-07-28"])
async def test_agent_as_an_mcp_tool_with_progress(
    http: aiohttp.ClientSession, gateway: ServerProcess, llm: GatedLLM, mode: str
) -> None:
    llm.push(tool_call("read_file", {"path": "src/app.py"}, id="call_1"), text("It greets."))
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    async with Client(gateway.url + "/mcp", mode=mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert "agent.helper" in tools and "run_agent" in tools
        result = await client.call_tool(
            "agent.helper", {"input": "What does app.py do?"}, progress_callback=on_progress
        )
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["output"] == "It greets."
    assert [c["name"] for c in result.structured_content["tool_calls"]] == ["read_file"]
    messages = [m for _, m in progress if m]
    assert any(m.startswith("calling read_file") for m in messages), messages  # tool calls streamed before the end
    values = [v for v, _ in progress]
    assert values == sorted(values) and len(values) >= 3


async def test_agent_run_through_the_queue_streams_to_the_final_record(
    http: aiohttp.ClientSession, llm: GatedLLM
) -> None:
    llm.push(tool_call("read_file", {"path": "src/util.py"}), text("HELLO is 1."))
    llm.gate.clear()  # hold the model so the stream below starts before the run ends
    seen = len(llm.requests)
    body = {"input": "What is HELLO?", "context": {"path": "src/util.py"}, "priority": "high"}
    async with http.post("/v1/agents/helper/runs", json=body) as resp:
        assert resp.status == 202, await resp.text()
        record = await resp.json()
        location = resp.headers["Location"]
    assert location == f"/v1/runs/{record['id']}"
    assert (record["status"], record["priority"], record["agent"], record["subject"]) == (
        "queued",
        "high",
        "helper",
        "local",
    )
    await llm.wait_for_requests(seen + 1)
    async with http.get(location, headers=SSE) as resp:
        llm.gate.set()
        events = await events_of(resp)
    names = [event for event, _ in events]
    assert names[0] == "run" and names[-1] == "final"
    assert {"tool_call", "tool_result", "final"} <= set(kinds(events))
    final = events[-1][1]
    assert final["status"] == "succeeded" and final["attempts"] == 1
    assert (final["steps"], final["tool_calls"], final["stop_reason"]) == (2, 1, "final")
    assert final["usage"]["total_tokens"] == 30 and final["result"]["output"] == "HELLO is 1."
    assert final["started_at"] >= final["created_at"] and final["duration_ms"] > 0
    async with http.get(location) as resp:
        assert (await resp.json())["status"] == "succeeded"
    async with http.get("/v1/runs", params={"status": "succeeded", "limit": "1"}) as resp:
        page = await resp.json()
    assert [r["id"] for r in page["runs"]] == [record["id"]]


async def test_agent_command_over_lsp_with_work_done_progress(
    gateway: ServerProcess, http: aiohttp.ClientSession, llm: GatedLLM
) -> None:
    llm.push(tool_call("read_file", {"path": "notes.md"}), text("Notes say hello."))
    client = await lsp_client(gateway)
    created: list[Any] = []
    progress: list[str] = []

    @client.feature(lsp.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def on_create(params: lsp.WorkDoneProgressCreateParams) -> None:
        created.append(params.token)

    @client.feature(lsp.PROGRESS)
    def on_progress(params: lsp.ProgressParams) -> None:
        value = params.value
        progress.append(value["kind"] if isinstance(value, dict) else value.kind)

    try:
        await initialize(client, gateway, work_done_progress=True)
        result = await asyncio.wait_for(
            client.workspace_execute_command_async(
                lsp.ExecuteCommandParams(command="gateway.agent.helper", arguments=[{"input": "Read the notes."}])
            ),
            30,
        )
    finally:
        await close(client)
    assert result["output"] == "Notes say hello." and result["tool_calls"][0]["name"] == "read_file"
    assert len(created) == 1
    assert progress[0] == "begin" and progress[-1] == "end" and "report" in progress


# -- cancellation, limits --------------------------------------------------------------------------------------
async def test_cancelling_a_queued_run_while_the_model_hangs(http: aiohttp.ClientSession, llm: GatedLLM) -> None:
    llm.push(hang())
    seen = len(llm.requests)
    async with http.post("/v1/agents/helper/runs", json={"input": "Take your time."}) as resp:
        run_id = (await resp.json())["id"]
    await llm.wait_for_requests(seen + 1, timeout=15)
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with http.delete(f"/v1/runs/{run_id}") as resp:
        assert resp.status == 200, await resp.text()
        record = await resp.json()
    assert loop.time() - began < 5
    assert record["status"] == "cancelled" and record["error"]["code"] == "cancelled" and record["attempts"] == 1
    async with asyncio.timeout(10):
        await llm.hang_ended.wait()  # the model request was dropped, not left running
    async with http.delete(f"/v1/runs/{run_id}") as resp:
        assert resp.status == 409 and (await resp.json())["code"] == "already_finished"
    async with http.get("/v1/runs/not-a-run") as resp:
        assert resp.status == 404


async def test_the_step_limit_stops_the_agent(http: aiohttp.ClientSession, llm: GatedLLM) -> None:
    seen = len(llm.requests)
    llm.push(tool_call("read_file", {"path": "src/app.py"}), tool_call("search", {"query": "hello"}))
    async with http.post("/v1/capabilities/agent.limited", json={"input": "Loop forever."}) as resp:
        assert resp.status == 200, await resp.text()
        result = await resp.json()
    assert (result["stop_reason"], result["steps"]) == ("max_steps", 2)
    assert len(llm.requests) - seen == 2


async def test_bad_run_requests(http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/agents/nobody/runs", json={"input": "x"}) as resp:
        assert resp.status == 404
    async with http.post("/v1/agents/helper/runs", json={"input": "x", "priority": "urgent"}) as resp:
        assert resp.status == 422 and (await resp.json())["code"] == "invalid_params"
    async with http.get("/v1/runs", params={"status": "done"}) as resp:
        assert resp.status == 422


# -- a restart of the embedded gateway -------------------------------------------------------------------------
async def test_runs_queued_when_the_gateway_stops_finish_after_a_restart(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    config = tmp_path / "gateway.toml"
    async with GatedLLM() as llm:
        config.write_text(config_text(llm.base_url, inline=False, workers=2))
        first = await start(workspace, config)
        llm.push(hang(), hang())  # both workers stuck on the model
        inputs = [f"job {i}" for i in range(4)]
        try:
            async with aiohttp.ClientSession(first.url) as http:
                ids = []
                for value in inputs:
                    async with http.post("/v1/agents/helper/runs", json={"input": value}) as resp:
                        assert resp.status == 202
                        ids.append((await resp.json())["id"])
                await llm.wait_for_requests(2, timeout=15)
                async with http.get("/v1/runs") as resp:
                    statuses = sorted(r["status"] for r in (await resp.json())["runs"])
                assert statuses == ["queued", "queued", "running", "running"]
        finally:
            await stop(first)  # SIGINT: the running attempts are cut short and go back to the queue

        llm.push(*(text(f"done {i}") for i in range(4)))
        second = await start(workspace, config)
        try:
            async with aiohttp.ClientSession(second.url) as http:
                finals = {}
                for run_id in ids:
                    async with http.get(f"/v1/runs/{run_id}", headers=SSE) as resp:
                        finals[run_id] = (await events_of(resp))[-1][1]
                async with http.get("/v1/runs", params={"limit": "10"}) as resp:
                    listed = (await resp.json())["runs"]
        finally:
            await stop(second)
    assert all(f["status"] == "succeeded" for f in finals.values())
    assert sorted(f["attempts"] for f in finals.values()) == [1, 1, 2, 2]  # the interrupted attempt counts
    assert sorted(r["id"] for r in listed) == sorted(ids)
    answered = [user_text(r) for r in llm.requests[2:]]  # every request after the two that hung got an answer
    assert sorted(answered) == sorted(inputs)  # none lost, none run to completion twice
    assert sorted(f["result"]["output"] for f in finals.values()) == [f"done {i}" for i in range(4)]


async def test_with_redis_a_run_queued_on_one_instance_streams_from_another(tmp_path: Path, redis_url: str) -> None:
    workspace = make_workspace(tmp_path / "ws")
    config = tmp_path / "gateway.toml"
    async with GatedLLM() as llm:
        config.write_text(f'redis_url = "{redis_url}"\n' + config_text(llm.base_url, inline=False, workers=1))
        first, second = await asyncio.gather(start(workspace, config), start(workspace, config))
        try:
            llm.push(tool_call("read_file", {"path": "src/util.py"}), text("HELLO is 1."))
            llm.gate.clear()
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{first.url}/v1/agents/helper/runs", json={"input": "What is HELLO?"}) as resp:
                    assert resp.status == 202
                    location = resp.headers["Location"]
                await llm.wait_for_requests(1, timeout=15)
                async with http.get(f"{second.url}{location}", headers=SSE) as resp:
                    llm.gate.set()
                    events = await events_of(resp)
        finally:
            await asyncio.gather(stop(first), stop(second))
    assert events[0][0] == "run" and events[-1][0] == "final"
    assert {"tool_call", "tool_result", "final"} <= set(kinds(events))  # progress from whichever instance ran it
    final = events[-1][1]
    assert final["status"] == "succeeded" and final["attempts"] == 1 and final["result"]["output"] == "HELLO is 1."
    assert len(llm.requests) == 2


# -- inline completion over LSP ----------------------------------------------------------------------------------
async def test_inline_completion_is_debounced_per_document(
    gateway: ServerProcess, http: aiohttp.ClientSession, llm: GatedLLM
) -> None:
    llm.push(text("return 42"))
    client = await lsp_client(gateway)
    try:
        result = await initialize(client, gateway)
        assert result.capabilities.inline_completion_provider is not None
        uri = (gateway.workspace / "src" / "answer.py").as_uri()
        client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(
                text_document=lsp.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text="def answer():\n    \n"
                )
            )
        )
        params = lsp.InlineCompletionParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            position=lsp.Position(line=1, character=4),
            context=lsp.InlineCompletionContext(trigger_kind=lsp.InlineCompletionTriggerKind.Automatic),
        )
        seen = len(llm.requests)
        first = asyncio.ensure_future(client.text_document_inline_completion_async(params))
        await asyncio.sleep(0)  # the first request goes out before the second
        second = asyncio.ensure_future(client.text_document_inline_completion_async(params))
        outcomes = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 30)
    finally:
        await close(client)
    assert isinstance(outcomes[0], Exception) and "cancel" in str(outcomes[0]).lower()
    answer = outcomes[1]
    assert isinstance(answer, lsp.InlineCompletionList), answer
    assert [item.insert_text for item in answer.items] == ["return 42"]
    assert len(llm.requests) - seen == 1  # the superseded request never reached the model


async def test_without_a_completion_model_inline_completion_is_not_advertised(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    server = await asyncio.to_thread(start_gateway, workspace)
    client = await lsp_client(server)
    try:
        result = await initialize(client, server)
    finally:
        await close(client)
        await stop(server)
    assert result.capabilities.inline_completion_provider is None
    assert not (workspace / ".gateway").exists()  # no agents: no run queue and no state directory


# -- LSP client helpers ------------------------------------------------------------------------------------------
async def lsp_client(server: ServerProcess) -> LanguageClient:
    assert server.lsp_url is not None
    where = urlparse(server.lsp_url)
    assert where.hostname is not None and where.port is not None
    client = LanguageClient("agents-e2e", "1.0")
    await client.start_tcp(where.hostname, where.port)
    return client


async def initialize(
    client: LanguageClient, server: ServerProcess, *, work_done_progress: bool = False
) -> lsp.InitializeResult:
    window = lsp.WindowClientCapabilities(work_done_progress=work_done_progress)
    result = await asyncio.wait_for(
        client.initialize_async(
            lsp.InitializeParams(capabilities=lsp.ClientCapabilities(window=window), root_uri=server.workspace.as_uri())
        ),
        15,
    )
    client.initialized(lsp.InitializedParams())
    return result


async def close(client: LanguageClient) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.shutdown_async(None), 5)
        client.exit(None)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.stop(), 5)


async def test_an_agent_run_is_live_on_the_hub_with_who_started_it(gateway: ServerProcess, llm: GatedLLM) -> None:
    llm.push(tool_call("read_file", {"path": "src/app.py"}, id="call_h"), text("hub saw it"))
    async with aiohttp.ClientSession() as http:
        caller = await http.ws_connect(f"{gateway.url}/ws")
        watcher = await http.ws_connect(f"{gateway.url}/ws")
        for ws in (caller, watcher):
            await ws.send_json({"type": "join", "watch": ["executions", "runs"]})
            while (await ws.receive_json(timeout=10))["type"] != "welcome":
                pass
        await caller.send_json(
            {"type": "call", "id": "run1", "capability": "agent.helper", "params": {"input": "read app.py"}}
        )
        progress: list[dict[str, Any]] = []
        while True:
            message = await caller.receive_json(timeout=30)
            if message.get("id") == "run1" and message["type"] == "progress":
                progress.append(message)
            if message.get("id") == "run1" and message["type"] in ("result", "error"):
                break
        assert message["type"] == "result" and message["result"]["output"] == "hub saw it"
        assert any(p.get("data", {}).get("kind") == "tool_call" for p in progress)
        seen: list[dict[str, Any]] = []
        while not any(
            e["data"].get("capability") == "agent.helper" and e["event"] == "execution.finished" for e in seen
        ):
            message = await watcher.receive_json(timeout=10)
            if message["type"] == "event" and message["topic"] == "executions":
                seen.append(message)
        started = [e for e in seen if e["data"].get("capability") == "agent.helper"]
        assert started[0]["data"]["subject"] == "local" and started[0]["data"]["door"] == "hub"
        assert any(e["data"].get("capability") == "read_file" for e in seen)  # the agent's tool call, live
        await caller.close()
        await watcher.close()
