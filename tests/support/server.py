"""Start a real `gateway serve` subprocess for tests and benchmarks."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

GATEWAY = [sys.executable, "-m", "gateway.cli"]


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    url: str
    workspace: Path
    lines: list[str] = field(default_factory=list)
    lsp_url: str | None = None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def _pump(stream: object, sink: queue.Queue[str], lines: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.append(line)
        sink.put(line)


def start_gateway(workspace: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 20) -> ServerProcess:
    """Start `gateway serve` on a free port and wait for its `listening http` line."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(
        [*GATEWAY, "serve", "--http-port", "0", "--lsp-port", "0", "--workspace", str(workspace), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )
    sink: queue.Queue[str] = queue.Queue()
    lines: list[str] = []
    threading.Thread(target=_pump, args=(proc.stderr, sink, lines), daemon=True).start()
    deadline = time.monotonic() + timeout
    urls: dict[str, str] = {}
    expected = {"http", "lsp"}
    while time.monotonic() < deadline:
        try:
            line = sink.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line.startswith("listening "):
            _, door, url = line.split()
            urls[door] = url
            if expected <= set(urls):
                return ServerProcess(proc, urls["http"], workspace, lines, urls.get("lsp"))
    proc.kill()
    raise RuntimeError("gateway did not start:\n" + "".join(lines))


def make_workspace(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("def hello():\n    return 'hello world'\n\nprint(hello())\n")
    (root / "src" / "util.py").write_text("HELLO = 1\n")
    (root / "notes.md").write_text("# Notes\n\nhello from 😀 and 中文\n")
    (root / ".gitignore").write_text("build/\n*.log\n")
    (root / "build").mkdir()
    (root / "build" / "out.py").write_text("hello = 'ignored'\n")
    (root / "debug.log").write_text("hello log\n")
    return root
