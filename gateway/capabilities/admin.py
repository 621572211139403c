"""Workspace administration, enforced by the core's roles on every door.

- owners manage members: `set_member_role` gives a subject (an API key name `key:<name>`, a JWT subject)
  a workspace role that overrides the role its credentials carry; `list_members` shows them;
- admins manage tools, agents and upstreams: `set_tool_enabled` withdraws or restores a tool, agent or
  federated capability on every door; `restart_upstream` reconnects a federated MCP server.

Membership is kept in the state directory; a change also travels as a `members` event on the bus, and
the other instances apply it from there.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..errors import InvalidParams, NotFound
from ..events import Event
from ..execution import ExecutionContext
from ..identity import Identity, Role
from ..registry import Capability, Registry

log = logging.getLogger("gateway.admin")

RoleName = Literal["viewer", "member", "admin", "owner"]
MEMBERS_TOPIC = "members"
PROTECTED = frozenset({"set_member_role", "list_members", "set_tool_enabled", "restart_upstream"})


class Membership:
    """Workspace roles by subject, overriding the role a caller's credentials carry."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.roles: dict[str, Role] = {}
        self.load()

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            raw = json.loads(self.path.read_text())
            self.roles = {
                s: Role[r.upper()] for s, r in raw.items() if isinstance(r, str) and r.upper() in Role.__members__
            }
        except (OSError, ValueError) as exc:
            log.warning("cannot read workspace members from %s: %s", self.path, exc)

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({s: r.name.lower() for s, r in sorted(self.roles.items())}, indent=1))
        tmp.replace(self.path)

    def set(self, subject: str, role: str | None) -> None:
        """Give `subject` the role named `role` (any case), or with None take its workspace role away; saved
        at once. KeyError for a name that is no role (nothing changes then)."""
        if role is None:
            self.roles.pop(subject, None)
        else:
            self.roles[subject] = Role[role.upper()]
        self.save()

    def effective(self, identity: Identity) -> Identity:
        """`identity` with its workspace role when it has one."""
        role = self.roles.get(identity.subject)
        if role is None or role == identity.role:
            return identity
        return Identity(subject=identity.subject, method=identity.method, role=role, claims=identity.claims)


class Member(BaseModel):
    subject: str
    role: RoleName


class MembersResult(BaseModel):
    members: list[Member]


class NoParams(BaseModel):
    pass


class SetMemberRoleParams(BaseModel):
    subject: str = Field(min_length=1, max_length=512, description="`key:<name>` for an API key, a JWT `sub`")
    role: RoleName | None = Field(description="The workspace role; null removes the override")


class SetToolEnabledParams(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    enabled: bool


class ToolState(BaseModel):
    name: str
    enabled: bool


class RestartUpstreamParams(BaseModel):
    name: str = Field(min_length=1, max_length=256)


class RestartUpstreamResult(BaseModel):
    name: str
    restarted: bool


def register(
    registry: Registry,
    membership: Membership,
    restart_upstream: Callable[[str], Awaitable[bool]] | None = None,
) -> None:
    """Register the member and administration capabilities."""
    disabled: dict[str, Capability[Any, Any]] = {}

    def members() -> MembersResult:
        return MembersResult(
            members=[Member(subject=s, role=r.name.lower()) for s, r in sorted(membership.roles.items())]
        )

    @registry.register("list_members", NoParams, MembersResult)
    async def list_members(ctx: ExecutionContext, params: NoParams) -> MembersResult:
        """The workspace members whose role is set in the workspace (over their credentials' role)."""
        return members()

    @registry.register("set_member_role", SetMemberRoleParams, MembersResult, required_role=Role.OWNER, read_only=False)
    async def set_member_role(ctx: ExecutionContext, params: SetMemberRoleParams) -> MembersResult:
        """Give a subject a workspace role (owners only); null removes it. Takes effect on its next call."""
        membership.set(params.subject, params.role)
        ctx.core.bus.publish_nowait(
            Event(topic=MEMBERS_TOPIC, type="members.changed", data={"by": ctx.identity.subject, **params.model_dump()})
        )
        return members()

    @registry.register("set_tool_enabled", SetToolEnabledParams, ToolState, required_role=Role.ADMIN, read_only=False)
    async def set_tool_enabled(ctx: ExecutionContext, params: SetToolEnabledParams) -> ToolState:
        """Withdraw a tool, agent or federated capability from every door, or bring it back (admins only)."""
        if params.name in PROTECTED:
            raise InvalidParams(f"{params.name} cannot be disabled")
        if params.enabled:
            cap = disabled.pop(params.name, None)
            if cap is not None and params.name not in registry:
                registry.add(cap)
            elif params.name not in registry:
                raise NotFound(f"no capability {params.name!r}")
        elif params.name in registry:
            disabled[params.name] = registry.get(params.name)
            registry.remove(params.name)
        elif params.name not in disabled:
            raise NotFound(f"no capability {params.name!r}")
        return ToolState(name=params.name, enabled=params.name in registry)

    if restart_upstream is None:
        return  # advertised only when there are upstream MCP servers to restart
    restart = restart_upstream

    @registry.register(
        "restart_upstream", RestartUpstreamParams, RestartUpstreamResult, required_role=Role.ADMIN, read_only=False
    )
    async def restart_upstream_cap(ctx: ExecutionContext, params: RestartUpstreamParams) -> RestartUpstreamResult:
        """Reconnect a federated MCP server (admins only); its tools come back when it is up."""
        restarted = await restart(params.name)
        if not restarted:
            raise NotFound(f"no upstream {params.name!r}")
        return RestartUpstreamResult(name=params.name, restarted=True)


def apply_member_event(membership: Membership, event: Event) -> None:
    """Another instance changed a member's role: apply the same change here."""
    subject, role = event.data.get("subject"), event.data.get("role")
    if event.type != "members.changed" or not isinstance(subject, str):
        return
    with contextlib.suppress(KeyError, AttributeError):
        membership.set(subject, None if role is None else str(role))
