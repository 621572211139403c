"""Benchmark: MCP `tools/call` through the gateway's `/mcp` versus a plain SDK server, and federation overhead.

1. A trivial tool (`read_file` of a small file) with 1, 8 and 32 concurrent SDK clients (one connection
   each), in both protocol eras (handshake-era `initialize` and 2026-07-28), against `gateway serve`'s
   `/mcp` and against a plain SDK `MCPServer` with the same tool under uvicorn. Calls/s, p50, p99, ratios.
2. Federation: the same upstream `echo` tool called directly on the upstream, and as the gateway's
   federated `up_echo` (through `/mcp`, and through REST as well), one client: the added latency.

A cell's clients run in `--client-processes` worker processes (2: one process running 8 or 32 clients is
itself the bottleneck, see `spread_load`; 1 for the old single-process load). One run, loopback only,
bounded in time:

    .venv/bin/python bench/mcp.py [--seconds 2] [--rounds 5] [--concurrency 1 8 32] [--client-processes 2]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is bench/mcp.py: run as a script, its folder comes first on sys.path and would shadow the SDK's
# `mcp` package. Drop it before anything imports `mcp`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from typing import Any  # noqa: E402

import aiohttp  # noqa: E402
from mcp.client import Client  # noqa: E402
from mcp_types.version import LATEST_MODERN_VERSION  # noqa: E402

sys.path.append(str(Path(__file__).resolve().parent))  # bench helpers, now that `mcp` is imported
from _proc import start_logged  # noqa: E402

warnings.simplefilter("ignore")

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = [sys.executable, "-m", "gateway.cli"]

PEER_SERVER = r"""
import asyncio, socket, sys, warnings
from pathlib import Path
from typing import Literal
import uvicorn
from pydantic import BaseModel
from mcp.server.mcpserver import MCPServer
warnings.simplefilter("ignore")
root = Path(sys.argv[1])
server = MCPServer("peer", version="1.0.0", log_level="WARNING")

class ReadFileResult(BaseModel):
    "The gateway's read_file result, field for field: the same tool has the same output schema."
    path: str
    text: str
    start_line: int
    end_line: int
    total_lines: int | None
    truncated: bool
    source: Literal["document", "disk"]
    version: int | None

@server.tool()
def read_file(path: str, start_line: int | None = None, end_line: int | None = None,
              max_bytes: int | None = None) -> ReadFileResult:
    "Read a file of the workspace, or some of its lines."
    lines = (root / path).read_text().splitlines(keepends=True)
    first = start_line or 1
    last = min(end_line or len(lines), len(lines))
    text = "".join(lines[first - 1 : last])
    cut = max_bytes is not None and len(text.encode()) > max_bytes
    if cut:
        text = text.encode()[:max_bytes].decode(errors="ignore")
    return ReadFileResult(path=path, text=text, start_line=first, end_line=last, total_lines=len(lines),
                          truncated=cut, source="disk", version=None)

@server.tool()
def echo(text: str) -> str:
    "Echo the text."
    return text

async def main():
    app = server.streamable_http_app(host="127.0.0.1")
    # IPPROTO_TCP, as uvicorn's own host/port binding has it: asyncio sets TCP_NODELAY only on sockets of that
    # protocol, and without it a response written in two parts waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    print(f"listening http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
    await uvicorn.Server(uvicorn.Config(app, log_level="warning")).serve(sockets=[sock])

asyncio.run(main())
"""

ERAS = {"2025-11-25": "legacy", "2026-07-28": LATEST_MODERN_VERSION}


def start(cmd: list[str], marker: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server process (output to `log`) and return it with the URL from its `listening` line."""
    return start_logged(cmd, marker, log)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` so far (Linux `/proc`), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values` (seconds), in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000 if ordered else float("nan")


async def load(
    url: str,
    mode: str,
    concurrency: int,
    seconds: float,
    tool: str,
    args: dict[str, Any],
    go: Callable[[], Awaitable[None]] | None = None,
) -> tuple[float, list[float]]:
    """`concurrency` SDK clients, each calling `tool` in a loop for `seconds`; (calls/s, latencies).

    `go`, when given, is awaited after the clients have connected and warmed up, before the clock starts.
    """
    latencies: list[float] = []
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(url, mode=mode, cache=None)) for _ in range(concurrency)]
        for client in clients:  # warm up, and list once (2026-07-28 calls may name listed tools only)
            await client.list_tools()
            await client.call_tool(tool, args)
        if go is not None:
            await go()
        stop_at = time.perf_counter() + seconds

        async def worker(client: Client) -> None:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                result = await client.call_tool(tool, args)
                latencies.append(time.perf_counter() - t0)
                if result.is_error:
                    raise RuntimeError(f"{tool} failed: {result.content}")

        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in clients))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies


async def spread_load(
    url: str, mode: str, concurrency: int, seconds: float, tool: str, args: dict[str, Any], processes: int
) -> tuple[float, list[float]]:
    """`load` with the clients spread over `processes` worker processes that start together.

    One Python process running 8 or 32 SDK clients is busy all the time (each call costs a client about as
    much CPU as it costs a server), so it, not the server, sets the pace; with the clients in two
    processes the two cores are shared by clients and server, and the server's cost per call shows.
    """
    processes = max(1, min(processes, concurrency))
    shares = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            json.dumps({"url": url, "mode": mode, "clients": n, "seconds": seconds, "tool": tool, "args": args}),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for n in shares
    ]
    try:
        for proc in workers:  # each says "ready" once its clients are connected and warm
            assert proc.stdout is not None
            if (await proc.stdout.readline()).strip() != b"ready":
                raise RuntimeError("a load worker failed to start")
        for proc in workers:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        results = [json.loads((await proc.communicate())[0]) for proc in workers]
    finally:
        for proc in workers:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    latencies = [value for result in results for value in result["latencies"]]
    return sum(result["rate"] for result in results), latencies


async def run_worker(spec: dict[str, Any]) -> None:
    """The `--worker` side of `spread_load`: load, gated on a `go` line, then the results as JSON."""
    loop = asyncio.get_running_loop()

    async def go() -> None:
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)

    rate, latencies = await load(
        spec["url"], spec["mode"], spec["clients"], spec["seconds"], spec["tool"], spec["args"], go
    )
    print(json.dumps({"rate": rate, "latencies": latencies}), flush=True)


async def same_answer(urls: list[str], args: dict[str, Any]) -> None:
    """Both servers' `read_file` give the same structured result (and so the same amount of text back)."""
    answers = []
    for url in urls:
        async with Client(url, mode="legacy", cache=None) as client:
            result = await client.call_tool("read_file", args)
            answers.append(result.structured_content)
    if answers[0] != answers[1]:
        raise RuntimeError(f"the two read_file tools differ: {answers[0]} vs {answers[1]}")


async def rest_load(url: str, seconds: float, tool: str, args: dict[str, Any]) -> list[float]:
    """One REST client calling `tool` in a loop; the latencies."""
    latencies: list[float] = []
    async with aiohttp.ClientSession() as http:
        endpoint = f"{url}/v1/capabilities/{tool}"
        async with http.post(endpoint, json=args) as resp:
            await resp.read()
        stop_at = time.perf_counter() + seconds
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            async with http.post(endpoint, json=args) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{tool} over REST: HTTP {resp.status}")
            latencies.append(time.perf_counter() - t0)
    return latencies


async def has_mcp_door(base_url: str) -> bool:
    async with aiohttp.ClientSession() as http:
        body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        headers = {"Accept": "application/json, text/event-stream"}
        async with http.post(f"{base_url}/mcp", json=body, headers=headers) as resp:
            return resp.status != 404


async def wait_tool(base_url: str, name: str) -> None:
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            async with http.get(f"{base_url}/v1/capabilities") as resp:
                if f'"{name}"' in await resp.text():
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the gateway never listed {name}")


def row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per cell (noise: medians)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--client-processes",
        type=int,
        default=2,
        help="processes the clients of a cell are spread over (see spread_load)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        await run_worker(json.loads(args.worker))
        return

    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "ws"
        workspace.mkdir()
        (workspace / "small.txt").write_text("hello from a small file\n" * 4)
        peer, peer_url = start([sys.executable, "-c", PEER_SERVER, str(workspace)], "listening", Path(tmp) / "peer.log")
        config = Path(tmp) / "gateway.toml"
        config.write_text(
            "[analysis]\njedi = false\ntree_sitter = false\nindex_on_start = false\nwatch = false\n\n"
            f'[[mcp.upstreams]]\nname = "up"\nurl = {json.dumps(peer_url)}\n'
        )
        gateway, gw_url = start(
            [*GATEWAY, "serve", "--config", str(config), "--workspace", str(workspace), "--http-port", "0"],
            "listening http",
            Path(tmp) / "gateway.log",
        )
        try:
            await wait_tool(gw_url, "up_echo")
            door = await has_mcp_door(gw_url)
            read_args = {"path": "small.txt"}
            await same_answer([peer_url, f"{gw_url}/mcp"], read_args)
            print(
                f"tools/call read_file; {args.rounds} rounds of {args.seconds:g}s per cell, the two servers"
                f" alternating; gateway {gw_url}/mcp vs plain SDK MCPServer"
            )
            print(
                "calls/s: median over rounds; p50/p99: all rounds' calls; cpu ms: the server's CPU time per call;"
                " ratio: median (min-max) of the rounds' calls/s ratios"
            )
            widths = [30, 11, 9, 9, 8, 20]
            print(row(["server / era / clients", "calls/s", "p50 ms", "p99 ms", "cpu ms", "ratio"], widths))
            for era, mode in ERAS.items():
                for concurrency in args.concurrency:
                    if not door:
                        print(row([f"gateway {era} x{concurrency}", "n/a", "-", "-", "-", "no /mcp"], widths))
                        continue
                    rates: dict[str, list[float]] = {"sdk": [], "gw": []}
                    lats: dict[str, list[float]] = {"sdk": [], "gw": []}
                    cpu: dict[str, float] = {"sdk": 0.0, "gw": 0.0}
                    urls = {"sdk": peer_url, "gw": f"{gw_url}/mcp"}
                    pids = {"sdk": peer.pid, "gw": gateway.pid}
                    for round_ in range(args.rounds):
                        for who in ("sdk", "gw") if round_ % 2 == 0 else ("gw", "sdk"):
                            before = cpu_seconds(pids[who])
                            rate, lat = await spread_load(
                                urls[who],
                                mode,
                                concurrency,
                                args.seconds,
                                "read_file",
                                read_args,
                                args.client_processes,
                            )
                            cpu[who] += cpu_seconds(pids[who]) - before
                            rates[who].append(rate)
                            lats[who].extend(lat)
                    ratios = sorted(g / b for g, b in zip(rates["gw"], rates["sdk"], strict=True))
                    for who, label in (("sdk", "sdk MCPServer"), ("gw", "gateway")):
                        spread = "1.00x"
                        if who == "gw":
                            spread = f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"
                        cells = [
                            f"{label} {era} x{concurrency}",
                            f"{statistics.median(rates[who]):.0f}",
                            f"{pct(lats[who], 50):.2f}",
                            f"{pct(lats[who], 99):.2f}",
                            f"{cpu[who] / len(lats[who]) * 1000:.2f}",
                            spread,
                        ]
                        print(row(cells, widths))
            print()
            print("federation: upstream tool `echo` called directly vs as the gateway's `up_echo`, 1 client")
            widths = [30, 11, 9, 9, 20]
            print(row(["path", "calls/s", "p50 ms", "p99 ms", "added p50"], widths))
            echo_args = {"text": "ping"}
            cases: list[tuple[str, Callable[[], Awaitable[list[float]]]]] = []
            for era, mode in ERAS.items():

                def direct(mode: str = mode) -> Awaitable[list[float]]:
                    return _latencies(load(peer_url, mode, 1, args.seconds, "echo", echo_args))

                def through(mode: str = mode) -> Awaitable[list[float]]:
                    return _latencies(load(f"{gw_url}/mcp", mode, 1, args.seconds, "up_echo", echo_args))

                cases.append((f"direct upstream {era}", direct))
                if door:
                    cases.append((f"gateway /mcp {era}", through))
            cases.append(("gateway REST up_echo", lambda: rest_load(gw_url, args.seconds, "up_echo", echo_args)))
            base_p50: float | None = None
            for label, run in cases:
                lat = await run()
                p50 = pct(lat, 50)
                if label.startswith("direct"):
                    base_p50 = p50
                added = f"+{p50 - base_p50:.2f} ms" if base_p50 is not None and not label.startswith("direct") else "-"
                print(
                    row([label, f"{len(lat) / args.seconds:.0f}", f"{p50:.2f}", f"{pct(lat, 99):.2f}", added], widths)
                )
        finally:
            for proc in (gateway, peer):
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
                if proc.poll() is None:
                    proc.kill()


async def _latencies(run: Awaitable[tuple[float, list[float]]]) -> list[float]:
    _, latencies = await run
    return latencies


if __name__ == "__main__":
    asyncio.run(main())
