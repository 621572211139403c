"""The agent capabilities: `run_agent` for any configured agent, and `agent.<name>` for each one.

`agent.<name>` makes every agent an MCP tool, an LSP command and a REST path of its own; it carries
the tag "agent" and the agent's description, so the MCP door can also offer it as a prompt (see
`agents_from_config` and `agent_messages`). `run_agent` carries the tag "agents".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config import AgentConfig, GatewayConfig
from ..errors import NotFound
from ..execution import ExecutionContext
from ..identity import Role
from ..llm.service import LLMService
from ..registry import Capability, Registry
from .loop import AgentRun
from .models import AgentInput, AgentResult, RunAgentParams
from .tools import agent_capability_name

AGENT_TAG = "agent"


def agents_from_config(config: GatewayConfig) -> list[AgentConfig]:
    """The configured agents, for doors that present them in their own way (MCP prompts)."""
    return list(config.agents)


def agent_for_capability(cap: Capability[Any, Any] | str, agents: Sequence[AgentConfig]) -> AgentConfig | None:
    """The agent an `agent.<name>` capability (or its name) runs, if it is one of `agents`."""
    name = cap if isinstance(cap, str) else cap.name
    return next((a for a in agents if agent_capability_name(a.name) == name), None)


def register(registry: Registry, llm: LLMService, agents: Sequence[AgentConfig]) -> None:
    """Register `run_agent` and one `agent.<name>` capability per configured agent; nothing without agents.

    With no agents configured nothing here could run, so no door advertises an agent capability.
    """
    if not agents:
        return
    by_name = {a.name: a for a in agents}

    @registry.register(
        "run_agent",
        RunAgentParams,
        AgentResult,
        required_role=Role.MEMBER,
        read_only=False,
        idempotent=False,
        tags=("agents",),
    )
    async def run_agent(ctx: ExecutionContext, params: RunAgentParams) -> AgentResult:
        """Run a configured agent on a task: it calls the model and its tools until it has an answer.

        The agent's steps stream out as progress: text deltas, tool calls and their results. The
        run stops at a final answer, the agent's step limit or its token budget (`stop_reason`).
        """
        agent = by_name.get(params.agent)
        if agent is None:
            raise NotFound(f"no agent named {params.agent!r}", data={"agent": params.agent, "known": sorted(by_name)})
        return await AgentRun(ctx, llm, agent).run(params.input, params.context)

    for agent in agents:
        registry.add(_agent_capability(llm, agent))


def _agent_capability(llm: LLMService, agent: AgentConfig) -> Capability[AgentInput, AgentResult]:
    async def handler(ctx: ExecutionContext, params: AgentInput) -> AgentResult:
        return await AgentRun(ctx, llm, agent).run(params.input, params.context)

    summary = " ".join(agent.description.split()) or f"Run the {agent.name} agent"
    tools = ", ".join(agent.tools) or "none"
    details = (
        f"An agent on model {agent.model!r}: up to {agent.max_steps} steps and {agent.token_budget} tokens. "
        f"Tools: {tools}. Progress streams text deltas, tool calls and their results."
    )
    return Capability(
        name=agent_capability_name(agent.name),
        params_model=AgentInput,
        result_model=AgentResult,
        handler=handler,
        summary=summary,
        description=details,
        required_role=Role.MEMBER,
        read_only=False,
        idempotent=False,
        tags=(AGENT_TAG, "code_action"),
    )
