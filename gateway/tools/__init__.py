"""Configured tools: `[[tools.command]]` programs and `[[tools.http]]` API calls, one capability each.

Each tool's parameters are a JSON Schema from the config (`schema_model`); every door shows that schema
and `jsonschema` enforces it. The tool modules and their dependencies (jsonschema, aiohttp's client) are
imported only when a tool of their kind is configured, so a gateway without tools starts as fast as before.
"""

from __future__ import annotations

from ..config import ToolsConfig
from ..registry import Registry


def split_description(text: str, fallback: str) -> tuple[str, str]:
    """A tool's summary (its description's first paragraph, on one line) and the rest of it."""
    summary, _, rest = text.strip().partition("\n\n")
    return " ".join(summary.split()) or fallback, rest.strip()


def register(registry: Registry, config: ToolsConfig) -> None:
    """Register every configured command and HTTP tool; raises `ValueError` for a tool that cannot work.

    Start-up errors name the tool: an invalid parameters schema, a placeholder naming no parameter, a
    header naming a variable that is not set, and the like.
    """
    if config.command:
        from .command import command_capability

        for command_tool in config.command:
            registry.add(command_capability(command_tool))
    if config.http:
        from .http import http_capability

        for http_tool in config.http:
            registry.add(http_capability(http_tool))
