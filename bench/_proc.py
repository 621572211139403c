"""Start a benchmark's server process with its output going to a file, not to a pipe this process drains.

A pipe would have to be read during the measurement, by a thread of the benchmark's own process: that
thread takes the GIL and CPU from the clients being timed, and more so for the server that logs more
(the gateway writes one access line per request; a quiet peer writes none).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def start_logged(cmd: list[str], marker: str, log: Path, timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start `cmd` with stdout and stderr appended to `log`; return it with the last word of its `marker` line."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(marker):
                return proc, line.split()[-1]
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{cmd!r} did not start; see {log}")
