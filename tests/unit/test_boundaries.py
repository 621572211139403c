"""The core never imports a door's framework; the dependency direction holds."""

from __future__ import annotations

import subprocess
import sys

CORE_MODULES = [
    "gateway.config",
    "gateway.errors",
    "gateway.events",
    "gateway.execution",
    "gateway.registry",
    "gateway.workspace",
    "gateway.middleware",
    "gateway.auth",
    "gateway.ratelimit",
    "gateway.capabilities.documents",
    "gateway.capabilities.files",
    "gateway.app",
]
FORBIDDEN = ["aiohttp", "pygls", "lsprotocol", "mcp", "websockets", "protocols", "litellm", "jwt"]


def test_core_imports_no_door_framework() -> None:
    code = (
        "import sys\n"
        f"for m in {CORE_MODULES!r}: __import__(m)\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_translators_do_no_io() -> None:
    code = (
        "import sys\n"
        "import translators.positions, translators.errors, translators.openapi\n"
        "print(','.join(m for m in ('aiohttp', 'redis', 'socket_server') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
