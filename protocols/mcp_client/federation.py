"""Federation: every configured upstream MCP server, and what they offer beyond tools.

Tools become registry capabilities (see `upstream.py`), so every door has them. Resources, resource
templates and prompts are MCP notions with no place in the registry; `Federation` offers them to the
MCP door as a provider: merged listings (prompts under the upstream's prefix, resource URIs as they
are), reads and gets routed to the upstream that owns the URI or name, completion, subscriptions, and a
change listener for `notifications/*/list_changed`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mcp.shared.uri_template import UriTemplate

from gateway import errors
from gateway.config import McpUpstreamConfig
from gateway.execution import CallContext
from gateway.registry import Registry

from .upstream import Upstream

log = logging.getLogger("protocols.mcp_client")


class Federation:
    """All upstreams of one gateway; the MCP door's resource and prompt provider."""

    def __init__(
        self,
        configs: Sequence[McpUpstreamConfig],
        registry: Registry,
        *,
        workspace_root: Path,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.registry = registry
        self._listeners: list[Callable[[], None]] = []
        self._detach: list[Callable[[], None]] = []
        self.upstreams: dict[str, Upstream] = {
            c.name: Upstream(
                c, registry, workspace_root=workspace_root, on_lists_changed=self._lists_changed, environ=environ
            )
            for c in configs
        }

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect every upstream in the background; tools appear as each one comes up."""
        for upstream in self.upstreams.values():
            upstream.start()

    async def wait_ready(self, timeout: float) -> None:
        """Wait (bounded) until every upstream is connected or has given up; for tests and `gateway mcp`."""
        with_timeout = [self._wait_one(u, timeout) for u in self.upstreams.values()]
        await asyncio.gather(*with_timeout)

    @staticmethod
    async def _wait_one(upstream: Upstream, timeout: float) -> None:
        try:
            await upstream.wait_running(timeout)
        except (TimeoutError, errors.UpstreamFailure) as exc:
            log.warning("mcp upstream %s not ready: %s", upstream.name, exc or "timed out")

    async def close(self) -> None:
        """Disconnect every upstream and withdraw its tools, resources and prompts."""
        for detach in self._detach:
            detach()
        self._detach.clear()
        await asyncio.gather(*(u.close() for u in self.upstreams.values()), return_exceptions=True)

    # -- the MCP door -------------------------------------------------------------------------------
    def attach_mcp_door(self, door: Any) -> None:
        """Offer the upstreams' resources and prompts on `door` (a `protocols.mcp.McpDoor`, which calls this
        when it starts), and tell its clients when those lists change."""
        from .door_providers import FederatedPrompts, FederatedResources

        self._detach.append(door.add_resource_provider(FederatedResources(self)))
        self._detach.append(door.add_prompt_provider(FederatedPrompts(self)))

        def changed() -> None:
            door.notify_resources_changed()
            door.notify_prompts_changed()

        self.on_change(changed)

    # -- change notifications ----------------------------------------------------------------------
    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever an upstream's resources, templates or prompts may have changed."""
        self._listeners.append(listener)

    def _lists_changed(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("federation change listener failed")

    # -- resources -------------------------------------------------------------------------------------
    def list_resources(self) -> list[dict[str, Any]]:
        """Every upstream's resources (wire dicts); a URI offered twice is listed once, first upstream wins."""
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for upstream in self.upstreams.values():
            for resource in upstream.lists.resources:
                uri = resource.get("uri")
                if isinstance(uri, str) and uri not in seen:
                    seen.add(uri)
                    out.append(resource)
        return out

    def list_resource_templates(self) -> list[dict[str, Any]]:
        """Every upstream's resource templates (wire dicts)."""
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for upstream in self.upstreams.values():
            for template in upstream.lists.templates:
                uri = template.get("uriTemplate")
                if isinstance(uri, str) and uri not in seen:
                    seen.add(uri)
                    out.append(template)
        return out

    def owner_of_resource(self, uri: str) -> Upstream | None:
        """The upstream that lists `uri`, or whose template matches it; None when no upstream does."""
        for upstream in self.upstreams.values():
            if any(r.get("uri") == uri for r in upstream.lists.resources):
                return upstream
        for upstream in self.upstreams.values():
            for template in upstream.lists.templates:
                text = template.get("uriTemplate")
                if not isinstance(text, str):
                    continue
                try:
                    if UriTemplate.parse(text).match(uri) is not None:
                        return upstream
                except Exception:
                    continue
        return None

    async def read_resource(self, uri: str, call: CallContext | None = None) -> dict[str, Any] | None:
        """`resources/read` result (wire dict) from the owning upstream; None when no upstream owns `uri`."""
        upstream = self.owner_of_resource(uri)
        if upstream is None:
            return None
        return await upstream.read_resource(uri, call)

    async def subscribe(self, uri: str, subscribe: bool = True) -> bool:
        """Pass a resource (un)subscription to the owning upstream; False when no upstream owns `uri`."""
        upstream = self.owner_of_resource(uri)
        if upstream is None:
            return False
        await upstream.subscribe(uri, subscribe)
        return True

    # -- prompts ------------------------------------------------------------------------------------------
    def list_prompts(self) -> list[dict[str, Any]]:
        """Every upstream's prompts (wire dicts) under the upstream's prefix; a clash keeps the first."""
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for upstream in self.upstreams.values():
            for prompt in upstream.lists.prompts:
                name = upstream.prefix + str(prompt.get("name"))
                if name in seen:
                    log.error(
                        "mcp upstream %s: prompt %r clashes with another upstream's; skipped", upstream.name, name
                    )
                    continue
                seen.add(name)
                out.append({**prompt, "name": name})
        return out

    def owner_of_prompt(self, name: str) -> tuple[Upstream, str] | None:
        """The upstream offering the gateway prompt `name`, and the prompt's upstream name."""
        for upstream in self.upstreams.values():
            if not name.startswith(upstream.prefix):
                continue
            own = name[len(upstream.prefix) :]
            if any(p.get("name") == own for p in upstream.lists.prompts):
                return upstream, own
        return None

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None = None, call: CallContext | None = None
    ) -> dict[str, Any] | None:
        """`prompts/get` result (wire dict) from the owning upstream; None when no upstream has `name`."""
        found = self.owner_of_prompt(name)
        if found is None:
            return None
        upstream, own = found
        return await upstream.get_prompt(own, arguments, call)

    # -- completion ---------------------------------------------------------------------------------------
    async def complete(
        self, ref: dict[str, Any], argument: dict[str, str], context_arguments: dict[str, str] | None = None
    ) -> dict[str, Any] | None:
        """`completion/complete` (wire dict) for a federated prompt or resource template; None if not ours."""
        if ref.get("type") == "ref/prompt":
            found = self.owner_of_prompt(str(ref.get("name")))
            if found is None:
                return None
            upstream, own = found
            return await upstream.complete({**ref, "name": own}, argument, context_arguments)
        template = ref.get("uri")
        for upstream in self.upstreams.values():
            if any(t.get("uriTemplate") == template for t in upstream.lists.templates):
                return await upstream.complete(ref, argument, context_arguments)
        return None
