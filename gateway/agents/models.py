"""Params and results of the agent capabilities; the single schema source for every door."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ..llm.models import TokenUsage

StopReason = Literal["final", "max_steps", "token_budget"]
INPUT_MAX = 200_000


class AgentInput(BaseModel):
    """Params of `agent.<name>`: the task, and optional context (a path, a selection, ...)."""

    input: str = Field(min_length=1, max_length=INPUT_MAX, description="What the agent should do")
    context: dict[str, Any] | None = Field(
        None, description="Extra facts for the agent, e.g. {'path': 'src/a.py', 'selection': '...'}"
    )


class RunAgentParams(AgentInput):
    """Params of `run_agent`: which configured agent, the task and optional context."""

    agent: str = Field(min_length=1, description="Name of an [[agents]] entry")


class AgentToolCall(BaseModel):
    """One tool call the agent made, and how it went."""

    name: str = Field(description="The capability called")
    arguments: dict[str, Any] = Field(default_factory=dict)
    ok: bool
    result_preview: str = Field(description="The start of the result (or error) the model was given")
    step: int = Field(ge=1, description="The step that asked for it")


class AgentResult(BaseModel):
    """What an agent run produced and why it stopped."""

    agent: str
    model: str
    output: str = Field(description="The final answer (the last text the model wrote when it was cut short)")
    steps: int = Field(ge=0, description="Model calls made")
    tool_calls: list[AgentToolCall] = Field(default_factory=list)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    stop_reason: StopReason = Field(
        description="final: the model answered; max_steps: the step limit; token_budget: the token budget"
    )
