"""Exec an upstream MCP server so that it dies with the gateway.

The SDK's stdio transport spawns the server itself (with its careful shutdown sequence) and offers no
hook to run code in the child before exec. So the transport runs this small script instead, which asks
Linux for SIGKILL on parent death (PR_SET_PDEATHSIG, kept across execve) and then execs the real
command in place: no extra process stays around, and a gateway killed with SIGKILL leaves no orphan.

    python -I -S launcher.py <gateway pid> <argv...>

Standard library only and run with -I -S, so it starts in a few milliseconds.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    """Arm the parent-death signal, check the parent is still the gateway, then exec the command."""
    if len(argv) < 2:
        sys.stderr.write("usage: launcher.py <parent pid> <command> [args...]\n")
        os._exit(2)
    parent = int(argv[0])
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the SDK's process-group shutdown still applies
        pass
    if os.getppid() != parent:  # the gateway died before the signal was armed
        os._exit(1)
    try:
        os.execvp(argv[1], argv[1:])
    except OSError as exc:
        sys.stderr.write(f"cannot start {argv[1]!r}: {exc.strerror}\n")
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
