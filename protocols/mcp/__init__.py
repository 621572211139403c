"""The MCP door: the official SDK's lowlevel server over stdio (`gateway mcp`) and streamable HTTP (`/mcp`)."""

from .door import McpDoor
from .providers import PromptProvider, ResourceProvider
from .stdio import run_stdio

__all__ = ["McpDoor", "PromptProvider", "ResourceProvider", "run_stdio"]
