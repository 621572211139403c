"""Agents: a model, a system prompt and a set of capabilities as tools, run as a loop through the core."""

from __future__ import annotations

from .capabilities import AGENT_TAG, agent_for_capability, agents_from_config, register
from .loop import AgentRun, agent_messages, model_params
from .models import AgentInput, AgentResult, AgentToolCall, RunAgentParams, StopReason
from .tools import AGENT_PREFIX, agent_capability_name, build_tools, check_agent_tools, openai_tool_name

__all__ = [
    "AGENT_PREFIX",
    "AGENT_TAG",
    "AgentInput",
    "AgentResult",
    "AgentRun",
    "AgentToolCall",
    "RunAgentParams",
    "StopReason",
    "agent_capability_name",
    "agent_for_capability",
    "agent_messages",
    "agents_from_config",
    "build_tools",
    "check_agent_tools",
    "model_params",
    "openai_tool_name",
    "register",
]
