"""Run the official MCP conformance suite (`@modelcontextprotocol/conformance`) against a gateway's `/mcp`.

Both pinned versions come from package.json / package-lock.json here (`npm ci`), with the Node 22 they
need (the `node` npm package). Results land in tests/conformance/results/<run>/; `Run.failures` lists
every failed or warned check with the suite's own message and details, so a failure report can say
exactly what the door answered and what was expected.

    python tests/conformance/harness.py   # both suites against a federating gateway, then protocol-only
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NODE_MODULES = HERE / "node_modules"
NODE = NODE_MODULES / ".bin" / "node"
SUITES = {
    "0.1.16": NODE_MODULES / "conformance-0.1" / "dist" / "index.js",
    "0.2.0-alpha.12": NODE_MODULES / "conformance-0.2" / "dist" / "index.js",
}
EXPECTED_FAILURES = HERE / "expected-failures.yaml"
CONFORMANCE_UPSTREAM = ROOT / "tests" / "fixtures" / "mcp" / "conformance_upstream.py"
RESULTS = HERE / "results"

# Scenarios about the protocol itself rather than about fixtures: they must pass against the gateway's own
# tools with no upstream at all.
PROTOCOL_SCENARIOS = {
    "0.1.16": ["server-initialize", "ping", "dns-rebinding-protection"],
    "0.2.0-alpha.12": [
        "server-initialize",
        "server-session-lifecycle",
        "server-stateless",
        "http-header-validation",
        "dns-rebinding-protection",
        "caching",
    ],
}
_SUMMARY = re.compile(r"^[✓✗]\s+(\S+):\s+(\d+) passed, (\d+) failed", re.M)


def expected_failures() -> list[str]:
    """The scenario names in expected-failures.yaml (`server:` list)."""
    names = []
    for line in EXPECTED_FAILURES.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("- "):
            names.append(stripped[2:].strip())
    return names


def ensure_installed() -> None:
    """`npm ci` when node_modules is missing or older than the lock file."""
    stamp = NODE_MODULES / ".package-lock.json"
    lock = HERE / "package-lock.json"
    if NODE.exists() and stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to install the conformance suite (tests/conformance/package.json)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, timeout=600)


@dataclass
class Run:
    """One `conformance server` run: its exit code, per-scenario counts and the failed checks."""

    version: str
    label: str
    returncode: int
    output: str
    scenarios: dict[str, tuple[int, int]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(p for p, _ in self.scenarios.values())

    @property
    def failed(self) -> int:
        return sum(f for _, f in self.scenarios.values())

    def failed_scenarios(self) -> list[str]:
        return sorted(name for name, (_, failed) in self.scenarios.items() if failed)

    def report(self, limit: int = 12000) -> str:
        """The failed and warned checks, scenario by scenario, with the suite's messages and details."""
        lines = []
        for failure in self.failures:
            details = json.dumps(failure.get("details"), default=str)[:1500]
            lines.append(
                f"- {failure['scenario']} / {failure.get('id')} [{failure.get('status')}]: "
                f"{failure.get('errorMessage') or failure.get('description')}\n    details: {details}"
            )
        text = "\n".join(lines)
        return text[:limit] + ("\n..." if len(text) > limit else "")


def run_suite(
    version: str,
    url: str,
    *,
    label: str,
    scenario: str | None = None,
    expected_failures: Path | None = None,
    timeout: float = 1200,
) -> Run:
    """Run `conformance server --url <url>` of `version` (`--suite all`, or one `scenario`)."""
    out_dir = RESULTS / f"{label}-{version}" / (scenario or "all")
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    cmd = [str(NODE), str(SUITES[version]), "server", "--url", url, "-o", str(out_dir)]
    cmd += ["--scenario", scenario] if scenario else ["--suite", "all"]
    if expected_failures is not None:
        cmd += ["--expected-failures", str(expected_failures)]
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE)
    output = proc.stdout + proc.stderr
    (out_dir / "output.txt").write_text(output)
    run = Run(version, label, proc.returncode, output)
    for name, passed, failed in _SUMMARY.findall(_strip_ansi(output)):
        run.scenarios[name] = (int(passed), int(failed))
    for checks in sorted(out_dir.glob("*/checks.json")):
        scenario_name = re.sub(r"^server-|-\d{4}-\d\d-\d\dT.*$", "", checks.parent.name)
        for check in json.loads(checks.read_text()):
            if check.get("status") in ("FAILURE", "WARNING"):
                run.failures.append({"scenario": scenario_name, **check})
    if scenario and not run.scenarios:  # a single-scenario run prints "Passed: n/m, k failed" instead
        match = re.search(r"Passed: (\d+)/(\d+), (\d+) failed", _strip_ansi(output))
        if match:
            run.scenarios[scenario] = (int(match.group(1)), int(match.group(3)))
    return run


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def gateway_config(path: Path, *, federate: bool) -> Path:
    """A gateway config: quiet analysis and, when `federate`, the conformance upstream with an empty prefix."""
    text = "[analysis]\nindex_on_start = false\nwatch = false\n"
    if federate:
        text += (
            "\n[[mcp.upstreams]]\n"
            'name = "conformance"\n'
            'prefix = ""\n'
            f"command = [{json.dumps(sys.executable)}, {json.dumps(str(CONFORMANCE_UPSTREAM))}]\n"
        )
    path.write_text(text)
    return path


def wait_for_tool(base_url: str, name: str, timeout: float = 30) -> None:
    """Wait until the gateway lists capability `name` (the upstream is connected)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/v1/capabilities", timeout=5) as resp:
                if f'"{name}"' in resp.read().decode():
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the gateway at {base_url} never listed {name}")


def main() -> int:
    """Run everything the test suite runs and print the counts; exit 1 on any unexpected failure."""
    sys.path.insert(0, str(ROOT / "tests"))
    import tempfile

    from support.server import make_workspace, start_gateway

    ensure_installed()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        workspace = make_workspace(Path(tmp) / "ws")
        for federate in (True, False):
            config = gateway_config(Path(tmp) / f"gateway-{federate}.toml", federate=federate)
            server = start_gateway(workspace, "--config", str(config))
            try:
                if federate:
                    wait_for_tool(server.url, "test_simple_text")
                    for version in SUITES:
                        expected = EXPECTED_FAILURES if version.startswith("0.2") else None
                        runs.append(
                            run_suite(version, f"{server.url}/mcp", label="federated", expected_failures=expected)
                        )
                else:
                    for version, scenarios in PROTOCOL_SCENARIOS.items():
                        for scenario in scenarios:
                            runs.append(run_suite(version, f"{server.url}/mcp", label="own-tools", scenario=scenario))
            finally:
                server.stop()
    bad = 0
    for run in runs:
        failed = run.failed_scenarios()
        print(
            f"{run.label} {run.version}: {len(run.scenarios)} scenarios, {run.passed} checks passed, "
            f"{run.failed} failed; exit {run.returncode}; failing: {', '.join(failed) or 'none'}"
        )
        if run.returncode != 0:
            bad += 1
            print(run.report())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
