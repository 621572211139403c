"""Shared pieces of the LSP benchmarks: one scripted pygls client for every server, percentiles, the
generated workspace, and process clean-up (the gateway's managed servers are grandchildren).

Not a benchmark itself; `bench/lsp.py` and `bench/analysis.py` import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
JEDI_LS = str(VENV_BIN / "jedi-language-server")
GATEWAY = [sys.executable, "-m", "gateway.cli"]
FIXTURE = ROOT / "tests" / "fixtures" / "pyproject"
MODULE = "bench_module.py"

CAPABILITIES = lsp.ClientCapabilities(
    general=lsp.GeneralClientCapabilities(position_encodings=[lsp.PositionEncodingKind.Utf16]),
    text_document=lsp.TextDocumentClientCapabilities(
        synchronization=lsp.TextDocumentSyncClientCapabilities(did_save=False),
        completion=lsp.CompletionClientCapabilities(
            completion_item=lsp.ClientCompletionItemOptions(
                snippet_support=False, documentation_format=[lsp.MarkupKind.Markdown, lsp.MarkupKind.PlainText]
            ),
        ),
        hover=lsp.HoverClientCapabilities(content_format=[lsp.MarkupKind.Markdown, lsp.MarkupKind.PlainText]),
        definition=lsp.DefinitionClientCapabilities(link_support=False),
        document_symbol=lsp.DocumentSymbolClientCapabilities(hierarchical_document_symbol_support=True),
        publish_diagnostics=lsp.PublishDiagnosticsClientCapabilities(version_support=True),
    ),
    workspace=lsp.WorkspaceClientCapabilities(configuration=False, workspace_folders=True),
)
"""The same modest editor capabilities for every server: plain completions, Markdown hovers."""


# -- statistics ------------------------------------------------------------------------------------------
def pct(values: Iterable[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values` (seconds), in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base > 0 else "-"


def median_ms(values: Iterable[float]) -> float:
    return statistics.median(values) * 1000


# -- processes -------------------------------------------------------------------------------------------
def machine() -> str:
    """CPU count and load averages: other work on the machine shows in the percentiles."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.2f} (1 min) {five:.2f} (5 min)"


def rss_kib(pid: int) -> int:
    """Resident set size of a process from /proc/PID/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (children first), from /proc/*/task/*/children."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        tasks = Path(f"/proc/{parent}/task")
        try:
            task_dirs = list(tasks.iterdir())
        except OSError:
            continue
        for task in task_dirs:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(children)
            pending.extend(children)
    return found


def kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def generated_module(functions: int = 40) -> str:
    """A valid module of a few hundred lines that uses the fixture package (`shop`)."""
    parts = [
        '"""Generated for the LSP benchmarks: classes and functions over the shop fixture."""',
        "",
        "from __future__ import annotations",
        "",
        "from shop import Item, Stock",
        "from shop.pricing import round_price, with_tax",
        "",
    ]
    for i in range(functions):
        parts += [
            "",
            f"class Widget{i}:",
            f'    """Widget number {i}: an item with a size."""',
            "",
            "    def __init__(self, size: int) -> None:",
            "        self.size = size",
            f'        self.item = Item("widget-{i}", {i}.5)',
            "",
            "    def price(self) -> float:",
            f'        """The price of widget {i}, tax included."""',
            "        return with_tax(self.item.price * self.size)",
            "",
            "",
            f"def stock_{i}(count: int) -> Stock:",
            f'    """A stock holding `count` widgets of kind {i}."""',
            "    stock = Stock()",
            f"    stock.add(Widget{i}(count).item, count)",
            "    return stock",
        ]
    parts += [
        "",
        "",
        "def total() -> float:",
        '    """The value of every generated stock, rounded."""',
        "    stock = stock_0(3)",
        "    value = stock.value()",
        "    return round_price(value + with_tax(value))",
        "",
    ]
    return "\n".join(parts)


def make_workspace(root: Path) -> Path:
    """A copy of tests/fixtures/pyproject plus the generated module, under `root`."""
    shutil.copytree(FIXTURE, root, dirs_exist_ok=True)
    (root / MODULE).write_text(generated_module())
    return root


@dataclass(frozen=True)
class Probe:
    """One request position in the generated module: what to ask and where."""

    op: str
    line: int
    character: int


def probes(text: str) -> list[Probe]:
    """Completion after `stock.`, hover on `with_tax(`, definition of `round_price(` in `total()`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("def total()"))

    def find(needle: str, offset: int = 0) -> tuple[int, int]:
        for i in range(start, len(lines)):
            col = lines[i].find(needle)
            if col >= 0:
                return i, col + offset
        raise ValueError(needle)

    return [
        Probe("completion", *find("stock.value", len("stock."))),
        Probe("hover", *find("with_tax(", 2)),
        Probe("definition", *find("round_price(", 2)),
    ]


# -- the scripted client ---------------------------------------------------------------------------------
@dataclass
class Server:
    """One language server process driven by one pygls client over stdio."""

    label: str
    client: LanguageClient
    root: Path
    init_seconds: float
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.client._server is not None
        return self.client._server.pid

    def uri(self, rel: str) -> str:
        return (self.root / rel).as_uri()

    def open(self, rel: str, text: str | None = None, language_id: str = "python") -> None:
        text = (self.root / rel).read_text() if text is None else text
        item = lsp.TextDocumentItem(uri=self.uri(rel), language_id=language_id, version=1, text=text)
        self.client.text_document_did_open(lsp.DidOpenTextDocumentParams(text_document=item))

    async def request(self, probe: Probe, rel: str = MODULE) -> int:
        """Send one request; returns how many items (completion, locations) or characters (hover) came back."""
        doc = lsp.TextDocumentIdentifier(uri=self.uri(rel))
        pos = lsp.Position(line=probe.line, character=probe.character)
        if probe.op == "completion":
            result: Any = await self.client.text_document_completion_async(lsp.CompletionParams(doc, pos))
            items = result.items if isinstance(result, lsp.CompletionList) else result
            return len(items or [])
        if probe.op == "hover":
            hover = await self.client.text_document_hover_async(lsp.HoverParams(doc, pos))
            if hover is None:
                return 0
            contents = hover.contents
            return len(contents.value if isinstance(contents, lsp.MarkupContent) else str(contents))
        if probe.op == "definition":
            found = await self.client.text_document_definition_async(lsp.DefinitionParams(doc, pos))
            if found is None:
                return 0
            return len(found) if isinstance(found, list) else 1
        raise ValueError(probe.op)

    async def stop(self) -> None:
        """shutdown + exit, then kill whatever is left of the process tree (managed servers included)."""
        proc = self.client._server
        tree = descendants(proc.pid) if proc is not None else []
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.shutdown_async(None), 5)
            self.client.exit(None)
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
        kill_pids(tree)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.stop(), 5)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def drain_stream(stream: asyncio.StreamReader | None) -> None:
    """Read a server's stderr to the end: the gateway logs a line per request and jedi-language-server
    writes tracebacks at exit; an unread pipe would block either."""
    if stream is None:
        return
    while await stream.read(65536):
        pass


def new_client(name: str) -> LanguageClient:
    """A pygls client that quietly accepts what servers send unasked (diagnostics, log messages)."""
    client = LanguageClient(name, "1")

    def ignore(params: Any) -> None:
        return None

    for method in (
        lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS,
        lsp.WINDOW_LOG_MESSAGE,
        lsp.WINDOW_SHOW_MESSAGE,
        lsp.PROGRESS,
        lsp.WINDOW_WORK_DONE_PROGRESS_CREATE,
    ):
        client.feature(method)(ignore)
    return client


async def start_server(label: str, argv: list[str], root: Path, env: dict[str, str] | None = None) -> Server:
    """Spawn `argv` in `root`, initialize it with the shared capabilities; records time to the result."""
    client = new_client("bench")
    started = time.perf_counter()
    await client.start_io(*argv, cwd=str(root), env=None if env is None else {**os.environ, **env})
    assert client._server is not None
    drain = asyncio.create_task(drain_stream(client._server.stderr))
    root_uri = root.as_uri()
    await asyncio.wait_for(
        client.initialize_async(
            lsp.InitializeParams(
                capabilities=CAPABILITIES,
                root_uri=root_uri,
                workspace_folders=[lsp.WorkspaceFolder(uri=root_uri, name=root.name)],
                process_id=os.getpid(),
            )
        ),
        60,
    )
    init_seconds = time.perf_counter() - started
    client.initialized(lsp.InitializedParams())
    return Server(label, client, root, init_seconds, [drain])


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = await call()
    return time.perf_counter() - t0, value


def write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def jedi_config(path: Path) -> Path:
    """A gateway config that makes jedi-language-server (this venv's) the managed engine for Python."""
    return write_config(path, f'[[analysis.servers]]\nname = "jedi-language-server"\ncommand = ["{JEDI_LS}"]\n')
