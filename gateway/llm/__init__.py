"""LLM access: configured models called through litellm, imported lazily and only when a model is configured."""

from __future__ import annotations

from .models import ChatResult, TextResult, TokenUsage, ToolCallRequest
from .service import NO_MODEL_MESSAGE, LLMService

__all__ = ["NO_MODEL_MESSAGE", "ChatResult", "LLMService", "TextResult", "TokenUsage", "ToolCallRequest"]
