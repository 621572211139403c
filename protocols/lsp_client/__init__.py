"""The gateway as an LSP client: language servers it starts, supervises and asks on the core's behalf."""

from .connection import LspConnection, ServerExited
from .server import ManagedServerEngine, client_capabilities, settings_section

__all__ = ["LspConnection", "ManagedServerEngine", "ServerExited", "client_capabilities", "settings_section"]
