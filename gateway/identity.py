"""Who is calling: the identity every execution carries, and workspace roles."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal


class Role(IntEnum):
    """Workspace roles, ordered: each role can do everything the roles below it can."""

    VIEWER = 10
    MEMBER = 20
    ADMIN = 30
    OWNER = 40

    @classmethod
    def parse(cls, name: str) -> Role | None:
        try:
            return cls[name.upper()]
        except KeyError:
            return None


AuthMethod = Literal["anonymous", "api_key", "jwt", "local_process"]


@dataclass(frozen=True)
class Identity:
    """An authenticated (or, with auth off, anonymous) caller."""

    subject: str
    method: AuthMethod
    role: Role
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def authenticated(self) -> bool:
        return self.method != "anonymous"


# With no auth configured the gateway only binds to loopback and everyone on it is the owner.
LOCAL_OWNER = Identity(subject="local", method="anonymous", role=Role.OWNER)
# The user's own process on a stdio door (`gateway lsp`, `gateway mcp` launched by an editor or Claude
# Desktop): authenticated by the operating system, so it passes even when network auth is configured.
LOCAL_PROCESS = Identity(subject="local", method="local_process", role=Role.OWNER)
# With auth configured, a caller that presented no credentials.
ANONYMOUS = Identity(subject="anonymous", method="anonymous", role=Role.VIEWER)


def highest_role(names: list[str] | tuple[str, ...], default: Role = Role.MEMBER) -> Role:
    """The highest known role among `names`, or `default` when none is known."""
    roles = [r for r in (Role.parse(n) for n in names) if r is not None]
    return max(roles) if roles else default
