"""What a model call gives back: text, tool calls, token usage and cost."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, Field


class TokenUsage(BaseModel):
    """Tokens and dollars spent; `cost_usd` is 0 when litellm has no offline price for the model."""

    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    total_tokens: int = Field(0, ge=0)
    cost_usd: float = Field(0.0, ge=0)

    def plus(self, other: TokenUsage) -> TokenUsage:
        """The sum of two usages."""
        return TokenUsage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
        )


@dataclass
class ToolCallRequest:
    """A tool call the model asked for; `arguments` is the raw JSON text the model wrote."""

    id: str
    name: str
    arguments: str


@dataclass
class ChatResult:
    """One chat completion, assembled from its stream when it was streamed."""

    model: str
    text: str
    tool_calls: list[ToolCallRequest] = field(default_factory=list)
    usage: TokenUsage = field(default_factory=TokenUsage)
    finish_reason: str | None = None


@dataclass
class TextResult:
    """One text (or fill-in-the-middle) completion."""

    model: str
    text: str
    usage: TokenUsage = field(default_factory=TokenUsage)
