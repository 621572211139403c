"""Benchmark: `read_file` over REST with 1, 8 and 32 concurrent clients against `gateway serve`.

The peer in the same run is a bare aiohttp server that reads the same file in its handler with no
core in between: the floor of what any aiohttp-based REST door can do. Prints calls/s, p50 and p99
latency and the gateway/floor ratios.

    .venv/bin/python bench/rest.py [--seconds 3] [--concurrency 1 8 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from _proc import start_logged

FLOOR_SERVER = r"""
import sys, json
from pathlib import Path
from aiohttp import web
root = Path(sys.argv[1])
async def read(request):
    body = await request.json()
    text = (root / body["path"]).read_text()
    return web.json_response({"path": body["path"], "text": text})
app = web.Application()
app.router.add_post("/v1/capabilities/read_file", read)
async def main():
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"listening http http://127.0.0.1:{runner.addresses[0][1]}", file=sys.stderr, flush=True)
    import asyncio; await asyncio.Event().wait()
import asyncio; asyncio.run(main())
"""


def start(cmd: list[str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server (output to `log`: one line per execution, which nobody here must spend time reading)."""
    return start_logged(cmd, "listening http ", log)


async def load(url: str, concurrency: int, seconds: float) -> tuple[float, list[float]]:
    latencies: list[float] = []
    body = json.dumps({"path": "src/module.py"})
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector) as http:
        for _ in range(20):  # warm up
            async with http.post("/v1/capabilities/read_file", data=body, headers=headers) as resp:
                await resp.read()
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                async with http.post("/v1/capabilities/read_file", data=body, headers=headers) as resp:
                    await resp.read()
                    assert resp.status == 200, resp.status
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as logs:
        root = Path(tmp)
        (root / "src").mkdir()
        module = root / "src" / "module.py"
        module.write_text("".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(200)))
        gw, gw_url = start(
            [sys.executable, "-m", "gateway.cli", "serve", "--http-port", "0", "--lsp-port", "0", "--workspace", tmp],
            Path(logs) / "gateway.log",
        )
        floor, floor_url = start([sys.executable, "-c", FLOOR_SERVER, tmp], Path(logs) / "floor.log")
        try:
            print(f"read_file of a {len(module.read_bytes())} byte file, {args.seconds}s per row")
            print(f"{'clients':>7} | {'server':<12} | {'calls/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | vs floor")
            print("-" * 70)
            for concurrency in args.concurrency:
                floor_rate, floor_lat = await load(floor_url, concurrency, args.seconds)
                gw_rate, gw_lat = await load(gw_url, concurrency, args.seconds)
                for name, rate, lat in (("bare aiohttp", floor_rate, floor_lat), ("gateway", gw_rate, gw_lat)):
                    ratio = f"{rate / floor_rate:.2f}x calls/s" if name == "gateway" else ""
                    print(
                        f"{concurrency:>7} | {name:<12} | {rate:>8.0f} | {pct(lat, 50):>7.2f} | "
                        f"{pct(lat, 99):>7.2f} | {ratio}"
                    )
                print(
                    f"{'':>7} | p50 ratio gateway/floor: {statistics.median(gw_lat) / statistics.median(floor_lat):.2f}"
                )
        finally:
            for proc in (gw, floor):
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
