"""The federation's resources and prompts as MCP door providers (`McpDoor.add_resource_provider` /
`add_prompt_provider`). Imported only when the MCP door attaches (`Federation.attach_mcp_door`).

An upstream's JSON-RPC error (carried in a core error's `data["mcp_error"]`) is raised again as that
same `MCPError`, so a client reading a federated resource sees the upstream's code and data (e.g.
-32602 with `data.uri` for a resource that does not exist).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import mcp_types as types
from mcp.shared.exceptions import MCPError

from gateway.errors import GatewayError
from gateway.execution import CallContext
from protocols.mcp.providers import PromptProvider, ResourceProvider

if TYPE_CHECKING:
    from .federation import Federation

Wire = Mapping[str, Any]
T = TypeVar("T")


async def _upstream_errors(awaitable: Awaitable[T]) -> T:
    """Await `awaitable`; an upstream's own JSON-RPC error goes to the client as that error."""
    try:
        return await awaitable
    except GatewayError as exc:
        original = exc.data.get("mcp_error") if isinstance(exc.data, dict) else None
        if isinstance(original, dict) and isinstance(original.get("code"), int):
            raise MCPError(original["code"], str(original.get("message", exc.message)), original.get("data")) from None
        raise


def _completion(result: Mapping[str, Any] | None) -> Wire | None:
    if result is None:
        return None
    completion = result.get("completion")
    return completion if isinstance(completion, Mapping) else {"values": [], "hasMore": False}


class FederatedResources(ResourceProvider):
    """Every upstream's resources and resource templates, read from the upstream that owns the URI."""

    def __init__(self, federation: Federation) -> None:
        self.federation = federation

    async def list_resources(self, call: CallContext) -> Sequence[types.Resource | Wire]:
        return self.federation.list_resources()

    async def list_resource_templates(self, call: CallContext) -> Sequence[types.ResourceTemplate | Wire]:
        return self.federation.list_resource_templates()

    async def read_resource(self, call: CallContext, uri: str) -> types.ReadResourceResult | Wire | None:
        return await _upstream_errors(self.federation.read_resource(uri, call))

    async def complete(
        self,
        call: CallContext,
        ref: types.ResourceTemplateReference,
        argument: types.CompletionArgument,
        context: Mapping[str, str],
    ) -> types.Completion | Wire | None:
        return await _complete(self.federation, ref, argument, context)

    async def subscribe(self, uri: str, subscribe: bool) -> None:
        await _upstream_errors(self.federation.subscribe(uri, subscribe))


async def _complete(
    federation: Federation,
    ref: types.ResourceTemplateReference | types.PromptReference,
    argument: types.CompletionArgument,
    context: Mapping[str, str],
) -> types.Completion | Wire | None:
    """Argument completion for an upstream's template or prompt, asked of the upstream that owns it."""
    reference = ref.model_dump(by_alias=True, mode="json", exclude_none=True)
    result = await _upstream_errors(
        federation.complete(reference, {"name": argument.name, "value": argument.value}, dict(context))
    )
    return _completion(result)


class FederatedPrompts(PromptProvider):
    """Every upstream's prompts under its prefix."""

    def __init__(self, federation: Federation) -> None:
        self.federation = federation

    async def list_prompts(self, call: CallContext) -> Sequence[types.Prompt | Wire]:
        return self.federation.list_prompts()

    async def get_prompt(
        self, call: CallContext, name: str, arguments: Mapping[str, str] | None
    ) -> types.GetPromptResult | Wire | None:
        args = dict(arguments) if arguments is not None else None
        return await _upstream_errors(self.federation.get_prompt(name, args, call))

    async def complete(
        self,
        call: CallContext,
        ref: types.PromptReference,
        argument: types.CompletionArgument,
        context: Mapping[str, str],
    ) -> types.Completion | Wire | None:
        return await _complete(self.federation, ref, argument, context)
