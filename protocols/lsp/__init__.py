"""LSP door: one pygls server object per connection over TCP, stdio or WebSocket."""

from .door import LspDoor, run_stdio

__all__ = ["LspDoor", "run_stdio"]
