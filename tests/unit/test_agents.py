"""The agent loop end to end in-process: Core + Registry + a workspace, litellm against a scripted server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from support.scripted_llm import ScriptedCall, ScriptedLLM, hang, text, tool_call, tool_calls

from gateway.agents import (
    AgentResult,
    agent_capability_name,
    agent_messages,
    build_tools,
    check_agent_tools,
    openai_tool_name,
)
from gateway.agents import register as register_agents
from gateway.app import StartupRefused, build_gateway
from gateway.capabilities import files
from gateway.config import AgentConfig, GatewayConfig, LimitsConfig, ModelConfig
from gateway.errors import Cancelled, Forbidden, NotFound
from gateway.events import InMemoryBus
from gateway.execution import CallContext, Core, ExecutionContext, ExecutionStatus, ProgressReport
from gateway.identity import Identity, Role
from gateway.llm import LLMService
from gateway.metrics import Metrics
from gateway.middleware import auth_middleware
from gateway.registry import Door, Registry
from gateway.workspace import Workspace

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

KEY_ENV = "SCRIPTED_LLM_KEY"


class SlowParams(BaseModel):
    label: str = "x"


class SlowResult(BaseModel):
    label: str


class Probe:
    """A `slow` capability that waits until released; tells whether it started and was cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.release = asyncio.Event()

    def register(self, registry: Registry) -> None:
        @registry.register("tools.slow", SlowParams, SlowResult)
        async def slow(ctx: ExecutionContext, params: SlowParams) -> SlowResult:
            """Wait until released."""
            self.started.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
            return SlowResult(label=params.label)


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-scripted")


@pytest.fixture
async def server() -> AsyncIterator[ScriptedLLM]:
    async with ScriptedLLM() as llm:
        yield llm


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "a.py").write_text("def hello():\n    return 'hi'\n")
    return tmp_path


def agent(**fields: Any) -> AgentConfig:
    base: dict[str, Any] = {
        "name": "helper",
        "description": "Answers questions about the code",
        "model": "m",
        "system_prompt": "You are careful.",
        "tools": ["read_file", "search"],
        "temperature": 0.1,
    }
    return AgentConfig.model_validate({**base, **fields})


def build(
    root: Path, server: ScriptedLLM, *agents: AgentConfig, probe: Probe | None = None
) -> tuple[Core, LLMService, Metrics]:
    registry = Registry()
    files.register(registry, LimitsConfig())
    if probe is not None:
        probe.register(registry)
    metrics = Metrics()
    models = [ModelConfig(name="m", model="openai/scripted", api_base=server.base_url, api_key_env=KEY_ENV)]
    llm = LLMService(models, metrics, backoff_initial=0.001, backoff_max=0.01)
    register_agents(registry, llm, agents or [agent()])
    core = Core(registry, Workspace(root), InMemoryBus())
    core.middleware = [auth_middleware(False)]
    return core, llm, metrics


async def run(core: Core, name: str, params: dict[str, Any], **call: Any) -> AgentResult:
    result = await asyncio.wait_for(core.execute(CallContext(**call), name, params), 20)
    assert isinstance(result, AgentResult)
    return result


async def test_tool_call_result_is_fed_back_until_a_final_answer(workspace: Path, server: ScriptedLLM) -> None:
    core, _, metrics = build(workspace, server)
    server.push(
        tool_call("read_file", {"path": "a.py"}, id="call_1", prompt_tokens=20, completion_tokens=5),
        text("a.py defines hello().", prompt_tokens=40, completion_tokens=6),
    )
    reports: list[ProgressReport] = []
    result = await run(
        core,
        "agent.helper",
        {"input": "What does a.py define?", "context": {"path": "a.py"}},
        on_progress=reports.append,
    )
    assert result.output == "a.py defines hello()."
    assert result.stop_reason == "final"
    assert result.steps == 2
    assert [(c.name, c.ok, c.step) for c in result.tool_calls] == [("read_file", True, 1)]
    assert result.tool_calls[0].arguments == {"path": "a.py"}
    assert "def hello" in result.tool_calls[0].result_preview
    assert result.usage.model_dump() == {
        "prompt_tokens": 60,
        "completion_tokens": 11,
        "total_tokens": 71,
        "cost_usd": 0.0,
    }

    first, second = server.bodies("/chat/completions")
    assert first["messages"][0] == {"role": "system", "content": "You are careful."}
    assert first["messages"][1]["content"].startswith("What does a.py define?\n\nContext:")
    assert first["temperature"] == 0.1
    names = [t["function"]["name"] for t in first["tools"]]
    assert names == ["read_file", "search"]
    assert "path" in first["tools"][0]["function"]["parameters"]["properties"]
    assistant, tool_message = second["messages"][-2:]
    assert assistant["tool_calls"][0]["id"] == "call_1"
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_1"
    assert json.loads(tool_message["content"])["text"].startswith("def hello():")

    kinds = [r.data["kind"] for r in reports if r.data]
    assert kinds[0] == "step" and kinds[-1] == "final"
    assert {"text", "tool_call", "tool_result"} <= set(kinds)
    call_report = next(r for r in reports if r.data and r.data["kind"] == "tool_call")
    assert call_report.data == {
        "kind": "tool_call",
        "agent": "helper",
        "step": 1,
        "id": "call_1",
        "name": "read_file",
        "arguments": {"path": "a.py"},
    }
    deltas = "".join(r.data["delta"] for r in reports if r.data and r.data["kind"] == "text")
    assert deltas == "a.py defines hello()."
    percentages = [r.percentage for r in reports if r.percentage is not None]
    assert percentages == sorted(percentages) and percentages[-1] == 100.0
    assert metrics.registry.get_sample_value("gateway_llm_tokens_total", {"model": "m", "kind": "prompt"}) == 60


async def test_tool_calls_are_nested_executions_with_the_callers_identity(workspace: Path, server: ScriptedLLM) -> None:
    core, _, _ = build(workspace, server)
    events = core.bus.subscribe("executions")
    server.push(tool_call("read_file", {"path": "a.py"}), text("done"))
    member = Identity(subject="alice", method="api_key", role=Role.MEMBER)
    await run(core, "run_agent", {"agent": "helper", "input": "read it"}, identity=member, door=Door.MCP)
    started = []
    while events.depth:  # every event of the finished run is already queued
        event = await events.get(timeout=1)
        if event.type == "execution.started":
            started.append((event.data["capability"], event.data["subject"], event.data["door"]))
    assert started == [("run_agent", "alice", "mcp"), ("read_file", "alice", "mcp")]


async def test_tool_errors_are_fed_back_to_the_model(workspace: Path, server: ScriptedLLM) -> None:
    core, _, _ = build(workspace, server)
    server.push(
        tool_calls(
            ScriptedCall("read_file", {"path": "missing.py"}, id="c1"),
            ScriptedCall("no_such_tool", {}, id="c2"),
            ScriptedCall("search", "{not json", id="c3"),
        ),
        text("The file does not exist."),
    )
    result = await run(core, "agent.helper", {"input": "read missing.py"})
    assert result.stop_reason == "final" and result.output == "The file does not exist."
    assert [(c.name, c.ok) for c in result.tool_calls] == [
        ("read_file", False),
        ("no_such_tool", False),
        ("search", False),
    ]
    messages = server.bodies("/chat/completions")[1]["messages"]
    errors = {m["tool_call_id"]: json.loads(m["content"])["error"] for m in messages if m["role"] == "tool"}
    assert errors["c1"]["code"] == "not_found"
    assert errors["c2"]["code"] == "unknown_tool"
    assert errors["c3"]["code"] == "invalid_arguments"


async def test_step_limit_stops_the_run(workspace: Path, server: ScriptedLLM) -> None:
    core, _, _ = build(workspace, server, agent(max_steps=2))
    server.push(
        tool_call("read_file", {"path": "a.py"}),
        tool_call("read_file", {"path": "a.py"}),
        text("never asked for"),
    )
    result = await run(core, "agent.helper", {"input": "loop"})
    assert result.stop_reason == "max_steps"
    assert result.steps == 2
    assert len(result.tool_calls) == 1  # the last step's calls would never reach the model
    assert len(server.requests) == 2


async def test_token_budget_stops_the_run(workspace: Path, server: ScriptedLLM) -> None:
    core, _, _ = build(workspace, server, agent(token_budget=25))
    server.push(
        tool_call("read_file", {"path": "a.py"}, prompt_tokens=10, completion_tokens=5),
        tool_call("read_file", {"path": "a.py"}, prompt_tokens=10, completion_tokens=5),
        text("never asked for"),
    )
    result = await run(core, "agent.helper", {"input": "spend"})
    assert result.stop_reason == "token_budget"
    assert result.steps == 2
    assert result.usage.total_tokens == 30
    assert len(server.requests) == 2


async def test_cancel_during_the_model_request_ends_the_run_promptly(workspace: Path, server: ScriptedLLM) -> None:
    core, _, metrics = build(workspace, server)
    server.push(hang())
    execution = core.start(CallContext(), "agent.helper", {"input": "think"})
    await asyncio.wait_for(server.hanging.wait(), 10)
    assert execution.cancel()
    with pytest.raises(Cancelled):
        await asyncio.wait_for(execution.wait(), 3)
    assert execution.record.status is ExecutionStatus.CANCELLED
    await asyncio.wait_for(server.hang_ended.wait(), 3)  # the model request was aborted
    assert metrics.registry.get_sample_value("gateway_llm_requests_total", {"model": "m", "status": "cancelled"}) == 1


async def test_cancel_during_a_tool_call_cancels_the_tool(workspace: Path, server: ScriptedLLM) -> None:
    probe = Probe()
    core, _, _ = build(workspace, server, agent(tools=["tools.slow"]), probe=probe)
    server.push(tool_call("tools_slow", {"label": "z"}))
    execution = core.start(CallContext(), "agent.helper", {"input": "wait"})
    await asyncio.wait_for(probe.started.wait(), 10)
    nested = [e for e in core.running if e.capability.name == "tools.slow"]
    assert len(nested) == 1
    assert execution.cancel()
    with pytest.raises(Cancelled):
        await asyncio.wait_for(execution.wait(), 3)
    await asyncio.wait_for(probe.cancelled.wait(), 3)
    assert nested[0].record.status is ExecutionStatus.CANCELLED


async def test_dotted_capability_names_map_to_openai_safe_names(workspace: Path, server: ScriptedLLM) -> None:
    probe = Probe()
    probe.release.set()
    core, _, _ = build(workspace, server, agent(tools=["tools.slow"]), probe=probe)
    server.push(tool_call("tools_slow", {"label": "dots"}), text("ok"))
    result = await run(core, "agent.helper", {"input": "go"})
    assert [(c.name, c.ok) for c in result.tool_calls] == [("tools.slow", True)]
    assert server.bodies()[0]["tools"][0]["function"]["name"] == "tools_slow"


def test_openai_tool_names_are_safe_and_unique() -> None:
    assert openai_tool_name("read_file") == "read_file"
    assert openai_tool_name("agent.helper") == "agent_helper"
    clash = openai_tool_name("agent.helper", taken={"agent_helper"})
    assert clash != "agent_helper" and clash.startswith("agent_helper_")
    long = openai_tool_name("x" * 100)
    assert len(long) <= 64


async def test_run_agent_refuses_unknown_agents_and_viewers(workspace: Path, server: ScriptedLLM) -> None:
    core, _, _ = build(workspace, server)
    with pytest.raises(NotFound, match="no agent named 'nobody'"):
        await run(core, "run_agent", {"agent": "nobody", "input": "hi"})
    viewer = Identity(subject="v", method="api_key", role=Role.VIEWER)
    with pytest.raises(Forbidden):
        await run(core, "agent.helper", {"input": "hi"}, identity=viewer)
    assert server.requests == []


def test_nothing_is_registered_without_agents() -> None:
    registry = Registry()
    register_agents(registry, LLMService([]), [])
    assert len(registry) == 0


def test_agent_capabilities_are_tagged_for_the_doors(workspace: Path) -> None:
    registry = Registry()
    files.register(registry, LimitsConfig())
    register_agents(registry, LLMService([]), [agent()])
    cap = registry.get(agent_capability_name("helper"))
    assert cap.tags == ("agent", "code_action")  # an LSP code action too
    assert cap.summary == "Answers questions about the code"
    assert cap.required_role is Role.MEMBER and cap.read_only is False
    assert cap.params_model.model_json_schema()["required"] == ["input"]
    generic = registry.get("run_agent")
    assert generic.required_role is Role.MEMBER and "agent" not in generic.tags
    tools, missing = build_tools(registry, ["read_file", "nope"])
    assert [t.openai_name for t in tools] == ["read_file"] and missing == ["nope"]
    assert agent_messages(agent(), "hi") == [
        {"role": "system", "content": "You are careful."},
        {"role": "user", "content": "hi"},
    ]


def test_unknown_agent_tools_are_refused_at_start(workspace: Path) -> None:
    config = GatewayConfig.model_validate(
        {
            "server": {"workspace": str(workspace)},
            "models": [{"name": "m", "model": "openai/x", "api_base": "http://127.0.0.1:9/v1"}],
            "agents": [{"name": "helper", "model": "m", "tools": ["read_file", "nope.tool"]}],
        }
    )
    gw = build_gateway(config)
    with pytest.raises(StartupRefused, match=r"agent 'helper' names unknown tool 'nope.tool'"):
        gw.start_llm()
    registry = gw.registry
    assert check_agent_tools(registry, config.agents, deferred_prefixes=["nope."]) == []
    selfish = agent(name="loop", tools=["agent.loop"])
    assert check_agent_tools(registry, [selfish]) == ["agent 'loop' lists itself ('agent.loop') as a tool"]


async def test_the_composition_root_wires_agents_to_the_configured_model(workspace: Path, server: ScriptedLLM) -> None:
    config = GatewayConfig.model_validate(
        {
            "server": {"workspace": str(workspace)},
            "analysis": {"jedi": False, "tree_sitter": False, "index_on_start": False, "watch": False},
            "models": [{"name": "m", "model": "openai/scripted", "api_base": server.base_url, "api_key_env": KEY_ENV}],
            "agents": [{"name": "helper", "model": "m", "tools": ["read_file"], "max_steps": 3}],
        }
    )
    gw = build_gateway(config)
    await gw.start()
    try:
        server.push(tool_call("read_file", {"path": "a.py"}), text("hello() lives in a.py"))
        result = await asyncio.wait_for(gw.core.execute(CallContext(), "agent.helper", {"input": "where?"}), 20)
        assert isinstance(result, AgentResult) and result.output == "hello() lives in a.py"
        rendered = gw.metrics.render().decode()
        assert 'gateway_llm_requests_total{model="m",status="ok"} 2.0' in rendered
        assert 'gateway_executions_total{capability="read_file",door="internal",status="finished"} 1.0' in rendered
    finally:
        await gw.close()
