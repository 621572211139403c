"""Benchmark: the LSP door against jedi-language-server, with one scripted pygls client for all.

Three servers on the same files (a copy of tests/fixtures/pyproject plus a generated module):
(a) `gateway lsp` with its built-in engines (default config), (b) `gateway lsp` configured to drive
jedi-language-server as a managed engine (the gateway proxies it), (c) jedi-language-server directly.
Prints completion, hover and definition latency (p50, p99, ratios to (c)); time from process start to
the initialize result (`gateway lsp` vs jedi-language-server); and the RSS of one `gateway serve` with
0 and 100 idle LSP sessions over TCP.

    .venv/bin/python bench/lsp.py [--iterations 300] [--starts 10] [--sessions 100] [--only startup]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import (
    CAPABILITIES,
    GATEWAY,
    JEDI_LS,
    MODULE,
    Server,
    descendants,
    drain_stream,
    jedi_config,
    kill_pids,
    machine,
    make_workspace,
    new_client,
    pct,
    probes,
    ratio,
    rss_kib,
    start_server,
)
from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

WARMUP = 30


async def latency(root: Path, config: Path, iterations: int) -> None:
    text = (root / MODULE).read_text()
    servers: list[Server] = []
    try:
        servers.append(await start_server("(a) gateway built-in", [*GATEWAY, "lsp", "--workspace", str(root)], root))
        servers.append(
            await start_server(
                "(b) gateway -> jedi-ls",
                [*GATEWAY, "lsp", "--workspace", str(root), "--config", str(config)],
                root,
            )
        )
        servers.append(await start_server("(c) jedi-language-server", [JEDI_LS], root))
        for server in servers:
            server.open(MODULE, text)
        ops = probes(text)
        samples: dict[tuple[str, str], list[float]] = {(p.op, s.label): [] for p in ops for s in servers}
        answers: dict[tuple[str, str], int] = {}
        for round_ in range(WARMUP + iterations):
            # Interleave servers and rotate their order so drift and order effects hit all three alike.
            order = servers[round_ % 3 :] + servers[: round_ % 3]
            for probe in ops:
                for server in order:
                    t0 = time.perf_counter()
                    size = await server.request(probe)
                    elapsed = time.perf_counter() - t0
                    if round_ >= WARMUP:
                        samples[(probe.op, server.label)].append(elapsed)
                        answers[(probe.op, server.label)] = size
        print(f"\nLatency: {iterations} requests per row after {WARMUP} warm-up rounds; same client, same files")
        print("(items = completion items / hover characters / locations in the last answer)")
        header = f"{'op':<11} | {'server':<25} | {'p50 ms':>7} | {'p99 ms':>7} | {'p50 vs c':>8} | {'p99 vs c':>8}"
        print(header + " | items")
        print("-" * (len(header) + 8))
        for probe in ops:
            base = samples[(probe.op, servers[2].label)]
            for server in servers:
                lat = samples[(probe.op, server.label)]
                print(
                    f"{probe.op:<11} | {server.label:<25} | {pct(lat, 50):>7.2f} | {pct(lat, 99):>7.2f} | "
                    f"{ratio(pct(lat, 50), pct(base, 50)):>8} | {ratio(pct(lat, 99), pct(base, 99)):>8} | "
                    f"{answers[(probe.op, server.label)]}"
                )
    finally:
        for server in servers:
            await server.stop()


async def startup(root: Path, starts: int) -> None:
    gateway = [*GATEWAY, "lsp", "--workspace", str(root)]
    # (argv, environment): the gateway as an editor meets it after its first start (code cache written,
    # like the .pyc files), on a first start (an empty code cache dir every time), and jedi-language-server.
    commands: dict[str, tuple[list[str], Callable[[], dict[str, str] | None]]] = {
        "gateway lsp": (gateway, lambda: None),
        "gateway lsp, cold cache": (
            gateway,
            lambda: {"GATEWAY_SERVER__CODE_CACHE_DIR": tempfile.mkdtemp(dir=root.parent)},
        ),
        "jedi-language-server": ([JEDI_LS], lambda: None),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    warm = await start_server("warm-up", gateway, root)  # writes the default code cache if it is missing
    await warm.stop()
    for _ in range(starts):
        for name, (argv, env) in commands.items():
            server = await start_server(name, argv, root, env())
            times[name].append(server.init_seconds)
            await server.stop()
    base = statistics.median(times["jedi-language-server"])
    print(f"\nStart-up: process start to the initialize result, {starts} starts each (alternating)")
    print("(code cache: gateway/codecache.py, generated attrs/cattrs methods; cold = first start on a machine)")
    print(f"{'server':<24} | {'median ms':>9} | {'min ms':>7} | {'max ms':>7} | vs jedi-ls")
    print("-" * 68)
    for name, values in times.items():
        med = statistics.median(values)
        print(
            f"{name:<24} | {med * 1000:>9.0f} | {min(values) * 1000:>7.0f} | {max(values) * 1000:>7.0f} | "
            f"{ratio(med, base)}"
        )


async def settled_rss(pid: int, seconds: float = 1.0) -> int:
    """RSS once it stopped moving for a moment (background work such as the index build done)."""
    last = rss_kib(pid)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        await asyncio.sleep(seconds)
        now = rss_kib(pid)
        if abs(now - last) < 64:
            return now
        last = now
    return last


async def connect(host: str, port: int, root: Path) -> LanguageClient:
    client = new_client("bench-idle")
    await client.start_tcp(host, port)
    await asyncio.wait_for(
        client.initialize_async(lsp.InitializeParams(capabilities=CAPABILITIES, root_uri=root.as_uri())), 30
    )
    client.initialized(lsp.InitializedParams())
    return client


async def close_clients(clients: list[LanguageClient]) -> None:
    for client in clients:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown_async(None), 5)
            client.exit(None)
    for client in clients:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.stop(), 2)


async def memory(root: Path, sessions: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        *GATEWAY,
        *("serve", "--http-port", "0", "--lsp-port", "0", "--workspace", str(root)),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    clients: list[LanguageClient] = []
    drain: asyncio.Task[None] | None = None
    try:
        assert proc.stderr is not None
        address = None
        while line := (await asyncio.wait_for(proc.stderr.readline(), 30)).decode():
            if line.startswith("listening lsp "):
                address = line.split()[2].removeprefix("tcp://")
                break
        if address is None:
            raise RuntimeError("gateway serve did not start")
        drain = asyncio.create_task(drain_stream(proc.stderr))
        host, _, port = address.rpartition(":")
        fresh = await settled_rss(proc.pid)
        # One session in and out first, so lazily built per-process state does not count per session.
        await close_clients([await connect(host, int(port), root)])
        baseline = await settled_rss(proc.pid)
        for _ in range(sessions):
            clients.append(await connect(host, int(port), root))
        loaded = await settled_rss(proc.pid)
        print(f"\nMemory: one `gateway serve` (VmRSS), {sessions} LSP sessions over TCP, each initialized then idle")
        print(f"{'state':<44} | {'RSS KiB':>9}")
        print("-" * 56)
        print(f"{'0 sessions, fresh':<44} | {fresh:>9}")
        print(f"{'0 sessions, after one session came and went':<44} | {baseline:>9}")
        print(f"{str(sessions) + ' idle sessions':<44} | {loaded:>9}")
        growth = loaded - baseline
        print(f"growth {growth} KiB total, {growth / sessions:.1f} KiB per session")
    finally:
        await close_clients(clients)
        tree = descendants(proc.pid)
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        kill_pids(tree)
        if drain is not None:
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--only", choices=["latency", "startup", "memory"], help="run one part only")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"python {sys.version.split()[0]}, {JEDI_LS}; {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-lsp-") as tmp:
        root = make_workspace(Path(tmp) / "proj")
        config = jedi_config(Path(tmp) / "jedi.toml")
        lines = len((root / MODULE).read_text().splitlines())
        print(f"workspace: tests/fixtures/pyproject + {MODULE} ({lines} lines)")
        if args.only in (None, "latency"):
            await latency(root, config, args.iterations)
        if args.only in (None, "startup"):
            await startup(root, args.starts)
        if args.only in (None, "memory"):
            await memory(root, args.sessions)
    print(f"\nwhole run {time.perf_counter() - started:.0f}s; {machine()}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
