"""The gateway's execution core: capabilities, executions, workspaces, events, config."""

__version__ = "0.1.0"
