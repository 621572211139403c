"""Benchmark: the analysis engines, in one run.

1. hover, definition and completion through the gateway's managed jedi-language-server against the same
   jedi-language-server driven directly by the same pygls client: the gateway measured over `gateway lsp`
   stdio (the editor's path) and in-process through `core.execute` (exactly the gateway's added cost).
2. The built-in engines in-process (`core.execute`, default config) on a generated 2,000-line Python file
   (jedi) and a generated 10,000-line TypeScript file (tree-sitter): completion, hover (Python),
   document_symbols and diagnostics after an edit (`change_document` then `diagnostics`).
3. Workspace index build with the tree-sitter engine over a generated 2,000-file mixed-language tree:
   time from `TreeSitterEngine.start()` to `index_ready`, and the RSS it adds (measured in a fresh child
   process so the rest of this run does not blur it).

    .venv/bin/python bench/analysis.py [--iterations 250] [--engine-iterations 150] [--files 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import (
    GATEWAY,
    JEDI_LS,
    MODULE,
    ROOT,
    Probe,
    jedi_config,
    machine,
    make_workspace,
    pct,
    probes,
    ratio,
    start_server,
)

sys.path.insert(0, str(ROOT))

from gateway.app import Gateway, build_gateway, settle_heap
from gateway.cli import setup_logging
from gateway.config import load_config
from gateway.execution import CallContext

WARMUP = 30
RELAY = Path(__file__).resolve().parent / "_relay.py"
PY_FILE = "big_module.py"
TS_FILE = "big_module.ts"


# -- generated sources ---------------------------------------------------------------------------------------
def python_source(lines: int) -> str:
    """A valid, pyflakes-clean Python module of about `lines` lines: classes, methods, functions."""
    parts = ['"""Generated for bench/analysis.py."""', "", "from __future__ import annotations", "", "import math", ""]
    i = 0
    while len(parts) < lines - 12:
        parts += [
            "",
            f"class Shape{i}:",
            f'    """Shape number {i} with a size and an area."""',
            "",
            "    def __init__(self, size: float) -> None:",
            "        self.size = size",
            "",
            "    def area(self) -> float:",
            f'        """Area of shape {i}."""',
            f"        return math.pi * self.size * {i + 1}",
            "",
            "",
            f"def make_shape{i}(size: float) -> Shape{i}:",
            f'    """Build shape {i}, scaled."""',
            f"    return Shape{i}(size * {i % 7 + 1})",
            "",
        ]
        i += 1
    parts += [
        "",
        "def total(size: float) -> float:",
        '    """Sum of two areas."""',
        "    shape = make_shape0(size)",
        "    first = shape.area()",
        "    return first + make_shape1(size).area()",
        "",
    ]
    return "\n".join(parts)


def typescript_source(lines: int) -> str:
    """A valid TypeScript module of about `lines` lines: interfaces, classes, functions."""
    parts = ["// Generated for bench/analysis.py.", ""]
    i = 0
    while len(parts) < lines - 8:
        parts += [
            f"export interface Options{i} {{",
            "  name: string;",
            "  size: number;",
            "}",
            "",
            f"export class Widget{i} {{",
            "  private readonly size: number;",
            "",
            f"  constructor(options: Options{i}) {{",
            "    this.size = options.size;",
            "  }",
            "",
            "  area(): number {",
            f"    return this.size * {i + 1};",
            "  }",
            "}",
            "",
            f"export function makeWidget{i}(size: number): Widget{i} {{",
            f'  return new Widget{i}({{ name: "w{i}", size }});',
            "}",
            "",
        ]
        i += 1
    parts += [
        "export function total(size: number): number {",
        "  const widget = makeWidget0(size);",
        "  return widget.area() + makeWidget1(size).area();",
        "}",
        "",
    ]
    return "\n".join(parts)


TREE_SOURCES: dict[str, Callable[[int], str]] = {
    "py": lambda i: "\n".join(
        [f"class Model{i}:", "    def save(self) -> int:", f"        return {i}", "", f"def load{i}() -> Model{i}:"]
        + [f"    return Model{i}()", ""]
        + [f"def helper{i}_{k}(x: int) -> int:\n    return x + {k}\n" for k in range(8)]
    ),
    "ts": lambda i: "\n".join(
        [f"export class Store{i} {{", "  get(): number {", f"    return {i};", "  }", "}"]
        + [f"export function util{i}_{k}(x: number): number {{\n  return x + {k};\n}}" for k in range(8)]
    ),
    "go": lambda i: "\n".join(
        ["package pkg", "", f"type Server{i} struct {{", "\tPort int", "}", ""]
        + [f"func (s *Server{i}) Handle{k}() int {{\n\treturn s.Port + {k}\n}}\n" for k in range(8)]
    ),
    "rs": lambda i: "\n".join(
        [f"pub struct Engine{i} {{", "    speed: u32,", "}", "", f"impl Engine{i} {{"]
        + [f"    pub fn run{k}(&self) -> u32 {{\n        self.speed + {k}\n    }}" for k in range(8)]
        + ["}"]
    ),
    "java": lambda i: "\n".join(
        [f"public class Service{i} {{", "    private int count;"]
        + [f"    public int call{k}(int x) {{\n        return x + count + {k};\n    }}" for k in range(8)]
        + ["}"]
    ),
    "js": lambda i: "\n".join(
        [f"export class View{i} {{", "  render() {", f"    return {i};", "  }", "}"]
        + [f"export function draw{i}_{k}(x) {{\n  return x + {k};\n}}" for k in range(8)]
    ),
    "c": lambda i: "\n".join(
        [f"struct point{i} {{ int x; int y; }};", ""]
        + [f"int add{i}_{k}(int a, int b) {{\n    return a + b + {k};\n}}\n" for k in range(8)]
    ),
    "rb": lambda i: "\n".join(
        [f"class Job{i}"] + [f"  def perform{k}(x)\n    x + {k}\n  end\n" for k in range(8)] + ["end", ""]
    ),
}


def make_tree(root: Path, files: int) -> int:
    """`files` source files in 8 languages, 50 per folder; returns the total bytes written."""
    kinds = list(TREE_SOURCES)
    total = 0
    for i in range(files):
        ext = kinds[i % len(kinds)]
        folder = root / f"pkg{i // 50:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        text = TREE_SOURCES[ext](i) + "\n"
        (folder / f"file{i:05d}.{ext}").write_text(text)
        total += len(text)
    return total


class GcWatch:
    """Records this process's full (generation 2) garbage collections while in the `with` block."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._started)

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> str:
        return f"{len(self.pauses)}, max {max(self.pauses) * 1000:.0f} ms" if self.pauses else "0"


# -- helpers --------------------------------------------------------------------------------------------------
def quiet_logging() -> None:
    """The gateway's own logging set-up (one JSON line per execution at INFO), written to a sink."""
    stderr, sys.stderr = sys.stderr, io.StringIO()
    try:
        setup_logging(load_config(environ={}))
    finally:
        sys.stderr = stderr
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process


async def in_process_gateway(root: Path, config: Path | None) -> Gateway:
    gw = build_gateway(load_config(config, environ={}, overrides={"server": {"workspace": str(root)}}))
    await gw.start()
    return gw


def describe(answer: Any) -> str:
    """What came back, to check that every path got the same answer: a size from the LSP client, or the
    engine and size from a core result (pages show their total)."""
    if isinstance(answer, int):
        return str(answer)
    data = answer.model_dump()
    if "hover" in data:
        size = f"{len(data['hover']['contents'])} chars" if data.get("hover") else "none"
    else:
        size = f"{data['total']} items"
    return f"{data['engine']}: {size}"


def row(label: str, server: str, lat: list[float], base: list[float], extra: str) -> None:
    ratios = f"{ratio(pct(lat, 50), pct(base, 50)):>8} | {ratio(pct(lat, 99), pct(base, 99)):>8}"
    print(f"{label:<22} | {server:<28} | {pct(lat, 50):>7.2f} | {pct(lat, 99):>7.2f} | {ratios} | {extra}")


def header(first: str, second: str) -> None:
    line = f"{first:<22} | {second:<28} | {'p50 ms':>7} | {'p99 ms':>7} | {'p50 vs':>8} | {'p99 vs':>8} | answer"
    print(line)
    print("-" * (len(line) + 4))


# -- 1. managed jedi-language-server versus jedi-language-server --------------------------------------------
async def managed_vs_direct(root: Path, iterations: int) -> None:
    text = (root / MODULE).read_text()
    config = jedi_config(root.parent / "jedi.toml")
    ops = [next(p for p in probes(text) if p.op == op) for op in ("hover", "definition", "completion")]
    direct = await start_server("jedi-ls direct (pygls)", [JEDI_LS], root)
    relay = await start_server("byte relay -> jedi-ls", [sys.executable, str(RELAY), JEDI_LS], root)
    stdio = await start_server(
        "gateway lsp stdio -> jedi-ls", [*GATEWAY, "lsp", "--workspace", str(root), "--config", str(config)], root
    )
    gw = await in_process_gateway(root, config)
    call = CallContext()
    try:
        for server in (direct, relay, stdio):
            server.open(MODULE, text)
        await gw.core.execute(call, "open_document", {"path": MODULE, "text": text, "version": 1})
        # What `gateway serve` does once started, so that the in-process gateway collects like the real
        # process. The direct client lives in this same process and gains from it as much: both paths pay
        # the collections of one shared heap.
        settle_heap()
        capability = {"hover": "hover", "definition": "definition", "completion": "complete"}

        async def in_process(probe: Probe) -> Any:
            params = {"path": MODULE, "line": probe.line, "character": probe.character}
            return await gw.core.execute(call, capability[probe.op], params)

        labels = [direct.label, relay.label, stdio.label, "gateway in-process core"]
        runners: list[Callable[[Probe], Awaitable[Any]]] = [direct.request, relay.request, stdio.request, in_process]
        samples: dict[tuple[str, str], list[float]] = {(p.op, label): [] for p in ops for label in labels}
        answers: dict[tuple[str, str], str] = {}
        for round_ in range(WARMUP + iterations):
            shift = round_ % len(runners)
            order = list(zip(labels, runners, strict=True))
            order = order[shift:] + order[:shift]
            for probe in ops:
                for label, run in order:
                    t0 = time.perf_counter()
                    answer = await run(probe)
                    elapsed = time.perf_counter() - t0
                    if round_ >= WARMUP:
                        samples[(probe.op, label)].append(elapsed)
                        answers[(probe.op, label)] = describe(answer)
        print(f"\n1. Managed jedi-language-server vs the same server direct: {iterations} requests per row")
        print(f"   after {WARMUP} warm-up rounds, rounds interleaved; {MODULE} ({len(text.splitlines())} lines)")
        print("   gateway measured both over `gateway lsp` stdio and in-process via core.execute; target < 1.05x;")
        print("   the byte relay (bench/_relay.py, nothing parsed) is the floor of any second pipe hop")
        header("op", "path")
        for probe in ops:
            base = samples[(probe.op, direct.label)]
            for label in labels:
                lat = samples[(probe.op, label)]
                row(probe.op, label, lat, base, answers[(probe.op, label)])
    finally:
        await gw.close()
        await direct.stop()
        await relay.stop()
        await stdio.stop()


# -- 2. built-in engines in-process ----------------------------------------------------------------------------
def position_of(text: str, needle: str, offset: int, last: bool = True) -> tuple[int, int]:
    index = text.rfind(needle) if last else text.find(needle)
    before = text[: index + offset]
    return before.count("\n"), len(before) - (before.rfind("\n") + 1)


async def builtin_engines(root: Path, iterations: int) -> None:
    py_text = python_source(2000)
    ts_text = typescript_source(10_000)
    (root / PY_FILE).write_text(py_text)
    (root / TS_FILE).write_text(ts_text)
    gw = await in_process_gateway(root, None)
    call = CallContext()
    try:
        for path, text in ((PY_FILE, py_text), (TS_FILE, ts_text)):
            await gw.core.execute(call, "open_document", {"path": path, "text": text, "version": 1})
        versions = {PY_FILE: 1, TS_FILE: 1}
        # The edit: flip one digit in the middle of the file back and forth (the file stays valid).
        edit_at = {
            PY_FILE: position_of(py_text, "return math.pi * self.size * 5", len("return math.pi * self.size * ")),
            TS_FILE: position_of(ts_text, "return this.size * 5;", len("return this.size * "), last=False),
        }

        def at(path: str, line_col: tuple[int, int]) -> dict[str, Any]:
            return {"path": path, "line": line_col[0], "character": line_col[1]}

        async def execute(name: str, params: dict[str, Any]) -> Any:
            return await gw.core.execute(call, name, params)

        async def edit_then_diagnostics(path: str) -> Any:
            versions[path] += 1
            line, col = edit_at[path]
            digit = "6" if versions[path] % 2 == 0 else "5"
            change = {"range": {"start": {"line": line, "character": col}, "end": {"line": line, "character": col + 1}}}
            await gw.core.execute(
                call,
                "change_document",
                {"path": path, "version": versions[path], "changes": [{**change, "text": digit}]},
            )
            return await execute("diagnostics", {"path": path})

        cases: list[tuple[str, str, Callable[[], Awaitable[Any]]]] = [
            ("completion", PY_FILE, lambda: execute("complete", at(PY_FILE, position_of(py_text, "shape.area", 6)))),
            ("hover", PY_FILE, lambda: execute("hover", at(PY_FILE, position_of(py_text, "make_shape1(", 3)))),
            ("document_symbols", PY_FILE, lambda: execute("document_symbols", {"path": PY_FILE})),
            ("edit+diagnostics", PY_FILE, lambda: edit_then_diagnostics(PY_FILE)),
            ("completion", TS_FILE, lambda: execute("complete", at(TS_FILE, position_of(ts_text, "makeWidget1", 4)))),
            ("document_symbols", TS_FILE, lambda: execute("document_symbols", {"path": TS_FILE})),
            ("edit+diagnostics", TS_FILE, lambda: edit_then_diagnostics(TS_FILE)),
        ]
        # One case after the other (interleaving would make every completion a completion after an edit).
        results: list[tuple[str, str, list[float], str, str]] = []
        for op, path, run in cases:
            for _ in range(WARMUP // 3):
                await run()
            lat = []
            answer: Any = None
            with GcWatch() as gc_watch:
                for _ in range(iterations):
                    t0 = time.perf_counter()
                    answer = await run()
                    lat.append(time.perf_counter() - t0)
            results.append((op, path, lat, describe(answer), gc_watch.summary()))
        print(f"\n2. Built-in engines in-process (core.execute, default config), {iterations} calls per row")
        print(f"   after {WARMUP // 3} warm-up calls, one row after the other in one gateway")
        print(
            f"   {PY_FILE}: {len(py_text.splitlines())} lines, {len(py_text)} bytes; "
            f"{TS_FILE}: {len(ts_text.splitlines())} lines, {len(ts_text)} bytes"
        )
        print("   edit+diagnostics = change_document (one character) then diagnostics, timed together")
        print("   full GCs = the garbage collector's generation-2 collections during the row: count, longest pause")
        line = f"{'op':<18} | {'file':<14} | {'p50 ms':>7} | {'p99 ms':>7} | {'full GCs':<15} | answer"
        print(line)
        print("-" * (len(line) + 24))
        for op, path, lat, answer, gcs in results:
            print(f"{op:<18} | {path:<14} | {pct(lat, 50):>7.2f} | {pct(lat, 99):>7.2f} | {gcs:<15} | {answer}")
    finally:
        await gw.close()


# -- 3. index build --------------------------------------------------------------------------------------------
INDEX_CHILD = r"""
import asyncio, json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from gateway.analysis.treesitter import TreeSitterEngine
from gateway.config import AnalysisConfig
from gateway.workspace import Workspace


def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


async def build(root):
    engine = TreeSitterEngine(Workspace(root), AnalysisConfig(), asyncio.Semaphore(AnalysisConfig().worker_threads))
    t0 = time.perf_counter()
    await engine.start()
    await asyncio.wait_for(engine.index_ready.wait(), 300)
    return engine, time.perf_counter() - t0


async def main():
    root = Path(sys.argv[1])
    before = rss()
    engine, first = await build(root)
    after = rss()
    entries = {"symbols": len(engine.index), "files": engine.index.file_count}
    await engine.close()
    warm = []
    for _ in range(int(sys.argv[3])):
        engine, seconds = await build(root)
        warm.append(seconds)
        await engine.close()
    print(json.dumps({"first": first, "warm": warm, "rss_before": before, "rss_after": after, "entries": entries}))


asyncio.run(main())
"""


def index_build(root: Path, files: int, warm_builds: int) -> None:
    size = make_tree(root, files)
    out = subprocess.run(
        [sys.executable, "-c", INDEX_CHILD, str(root), str(ROOT), str(warm_builds)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    growth = data["rss_after"] - data["rss_before"]
    print(f"\n3. Tree-sitter workspace index: {files} files in {len(TREE_SOURCES)} languages, {size} bytes")
    print("   (fresh child process; default AnalysisConfig: 2 worker threads, watcher on)")
    line = f"{'build':<34} | {'seconds':>8} | {'files/s':>8}"
    print(line)
    print("-" * len(line))
    print(f"{'first (grammars load, cold caches)':<34} | {data['first']:>8.2f} | {files / data['first']:>8.0f}")
    if data["warm"]:
        warm = statistics.median(data["warm"])
        label = f"again, median of {len(data['warm'])}"
        print(f"{label:<34} | {warm:>8.2f} | {files / warm:>8.0f}")
    print(
        f"RSS before start {data['rss_before']} KiB, after the first build {data['rss_after']} KiB: "
        f"+{growth} KiB ({growth / files:.1f} KiB per file); "
        f"index: {data['entries']['symbols']} symbols in {data['entries']['files']} files"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=250)
    parser.add_argument("--engine-iterations", type=int, default=150, help="per op in part 2 (slower ops)")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--warm-builds", type=int, default=2)
    parser.add_argument("--only", choices=["managed", "builtin", "index"], nargs="*")
    args = parser.parse_args()
    only = set(args.only or ["managed", "builtin", "index"])
    quiet_logging()
    started = time.perf_counter()
    print(f"python {sys.version.split()[0]}, {JEDI_LS}; {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as tmp:
        if "managed" in only:
            await managed_vs_direct(make_workspace(Path(tmp) / "proj"), args.iterations)
            print(f"   ({time.perf_counter() - started:.0f}s so far; {machine()})")
        if "builtin" in only:
            await builtin_engines(make_workspace(Path(tmp) / "engines"), args.engine_iterations)
            print(f"   ({time.perf_counter() - started:.0f}s so far; {machine()})")
        if "index" in only:
            index_build(Path(tmp) / "tree", args.files, args.warm_builds)
    print(f"\nwhole run {time.perf_counter() - started:.0f}s; {machine()}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
