"""Capabilities as OpenAI tools: safe names, JSON schemas from the params models, start-up checks."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import AgentConfig
from ..registry import Capability, Registry

AGENT_PREFIX = "agent."
OPENAI_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DESCRIPTION_MAX = 1024


def agent_capability_name(agent: str) -> str:
    """The capability that runs agent `agent`: `agent.<name>`."""
    return AGENT_PREFIX + agent


@dataclass(frozen=True)
class AgentTool:
    """One capability offered to the model: its registry name, its OpenAI-safe name, its definition."""

    capability: str
    openai_name: str
    definition: dict[str, Any]


def openai_tool_name(name: str, taken: Iterable[str] = ()) -> str:
    """An OpenAI-safe tool name for capability `name` (`[A-Za-z0-9_-]{1,64}`), unique among `taken`.

    Dots and other characters become `_`; a name that collides or is too long gets a short hash suffix.
    """
    used = set(taken)
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name) or "tool"
    if OPENAI_NAME.match(safe) and safe not in used:
        return safe
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{safe[:55]}_{digest}"


def tool_definition(cap: Capability[Any, Any], openai_name: str) -> dict[str, Any]:
    """The OpenAI `tools` entry for `cap`; the schema is the params model's JSON schema."""
    schema = dict(cap.params_model.model_json_schema())
    schema.pop("title", None)
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    description = cap.summary if not cap.description else f"{cap.summary}\n\n{cap.description}"
    if len(description) > DESCRIPTION_MAX:
        description = description[: DESCRIPTION_MAX - 1] + "…"
    return {
        "type": "function",
        "function": {"name": openai_name, "description": description, "parameters": schema},
    }


def build_tools(registry: Registry, names: Sequence[str]) -> tuple[list[AgentTool], list[str]]:
    """The tools among `names` that the registry holds now, and the names it does not hold."""
    tools: list[AgentTool] = []
    missing: list[str] = []
    taken: set[str] = set()
    for name in dict.fromkeys(names):
        if name not in registry:
            missing.append(name)
            continue
        openai_name = openai_tool_name(name, taken)
        taken.add(openai_name)
        tools.append(AgentTool(name, openai_name, tool_definition(registry.get(name), openai_name)))
    return tools, missing


def check_agent_tools(
    registry: Registry, agents: Sequence[AgentConfig], deferred_prefixes: Sequence[str] = ()
) -> list[str]:
    """One line per problem with the agents' tool lists; empty when every tool exists.

    Names that start with one of `deferred_prefixes` (tools of MCP upstreams, which register once
    their upstream connects) are accepted here and looked up when a run starts; an empty prefix defers
    every unknown name.
    """
    problems: list[str] = []
    for agent in agents:
        own = agent_capability_name(agent.name)
        for name in agent.tools:
            if name == own:
                problems.append(f"agent {agent.name!r} lists itself ({name!r}) as a tool")
            elif name not in registry and not any(name.startswith(p) for p in deferred_prefixes):
                problems.append(
                    f"agent {agent.name!r} names unknown tool {name!r}; "
                    f"known capabilities: {', '.join(c.name for c in registry)}"
                )
    return problems
