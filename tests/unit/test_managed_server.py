"""ManagedServerEngine against real language-server processes: jedi-language-server and a small pygls fake."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

from gateway import errors
from gateway.analysis import models
from gateway.analysis.engine import EngineUnavailable
from gateway.analysis.presets import resolve_server
from gateway.config import LanguageServerConfig
from gateway.workspace import Document, Position, Range, TextChange, Workspace
from protocols.lsp_client import ManagedServerEngine, client_capabilities, settings_section
from translators.lsp import edits_to_changes, markup_to_markdown, symbol_kind_from_lsp

JEDI = Path(sys.executable).parent / "jedi-language-server"
FAKE = Path(__file__).resolve().parents[1] / "support" / "fake_language_server.py"
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not JEDI.exists(), reason="jedi-language-server is not installed in this environment")

PROJECT = {
    "pkg/__init__.py": "",
    "pkg/greeting.py": textwrap.dedent(
        '''\
        """Greetings."""


        class Greeter:
            """Says hello."""

            def __init__(self, name: str) -> None:
                self.name = name

            def greet(self) -> str:
                """Greet by name."""
                return "hello " + self.name
        '''
    ),
    "app.py": textwrap.dedent(
        """\
        from pkg.greeting import Greeter


        def run() -> str:
            greeter = Greeter("x")
            return greeter.greet()
        """
    ),
    "emoji.py": 's = "😀😀"; target_value = 1\nprint(s, target_value)\n',
}


def at(text: str, needle: str, delta: int = 0, occurrence: int = 0) -> Position:
    """The code-point position of the `occurrence`-th `needle` in `text`, moved `delta` characters."""
    index = -1
    for _ in range(occurrence + 1):
        index = text.index(needle, index + 1)
    index += delta
    line = text.count("\n", 0, index)
    return Position(line=line, character=index - (text.rfind("\n", 0, index) + 1))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    for rel, text in PROJECT.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def workspace(project: Path) -> Workspace:
    return Workspace(project)


MakeEngine = Callable[..., ManagedServerEngine]


@pytest.fixture
async def make_engine(workspace: Workspace) -> AsyncIterator[MakeEngine]:
    """Build engines listening to the workspace; all are closed (and their processes gone) afterwards."""
    made: list[ManagedServerEngine] = []

    def make(
        command: list[str] | None = None, *, engine: dict[str, Any] | None = None, **config: Any
    ) -> ManagedServerEngine:
        settings: dict[str, Any] = {
            "name": "jedi-language-server",
            "command": command or [str(JEDI)],
            "request_timeout_seconds": 20.0,
            "restart_initial_seconds": 0.05,
            "restart_max_seconds": 0.2,
            "max_restarts": 3,
            "languages": ["python"],
            **config,
        }
        options = {"exit_wait": 0.2, **(engine or {})}
        built = ManagedServerEngine(resolve_server(LanguageServerConfig(**settings)), workspace, **options)
        workspace.listeners.append(built)
        made.append(built)
        return built

    yield make
    pids = [e.pid for e in made if e.pid is not None]
    for built in made:
        await built.close()
    for pid in pids:
        await wait_gone(pid)


def apply(text: str, edits: list[models.TextEdit]) -> str:
    document = Document("x", text, 0, "plaintext")
    document.apply(edits_to_changes(edits))
    return document.text


def fake(*args: str) -> list[str]:
    return [sys.executable, str(FAKE), *args]


def process_gone(pid: int) -> bool:
    """True once `pid` no longer runs (absent, or a zombie nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


async def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until `pid` has ended: nothing signals another process's end, so poll, with a deadline."""
    await wait_until(lambda: process_gone(pid), timeout)


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `predicate` with a deadline (for conditions no event reports)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def wait_restarted(engine: ManagedServerEngine, restarts: int, timeout: float = 20.0) -> None:
    """Wait (on state-change events) until the engine has restarted `restarts` times and runs again."""
    async with asyncio.timeout(timeout):
        while engine.restarts < restarts or engine.state != "running":
            await engine.next_state()


# -- without a server -------------------------------------------------------------------------------------


def test_handles_by_language_or_glob(workspace: Workspace) -> None:
    config = LanguageServerConfig(name="x", command=["x"], languages=["python"], globs=["scripts/*.run", "**/*.pyx"])
    engine = ManagedServerEngine(resolve_server(config), workspace)
    assert engine.handles("a/b.py", "python")
    assert engine.handles("scripts/go.run", "plaintext")
    assert engine.handles("deep/er/m.pyx", "plaintext")
    assert engine.handles("m.pyx", "plaintext")
    assert not engine.handles("notes.md", "markdown")
    assert not engine.handles("other/scripts/go.run", "plaintext")
    assert engine.state == "idle" and engine.pid is None


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (None, {"python": {"analysis": {"mode": "strict"}}, "flat.key": 3}),
        ("python", {"analysis": {"mode": "strict"}}),
        ("python.analysis.mode", "strict"),
        ("flat.key", 3),
        ("python.missing", None),
        ("nothing", None),
    ],
)
def test_configuration_sections(section: str | None, expected: Any) -> None:
    settings = {"python": {"analysis": {"mode": "strict"}}, "flat.key": 3}
    assert settings_section(settings, section) == expected


# -- jedi-language-server -----------------------------------------------------------------------------


async def test_answers_match_the_server_driven_directly(workspace: Workspace, make_engine: MakeEngine) -> None:
    engine = make_engine()
    app = workspace.snapshot("app.py")
    call = at(app.text, "greet()", 1)
    use = at(app.text, "Greeter(", 2)

    client = LanguageClient("direct", "1")
    await client.start_io(str(JEDI))
    try:
        root_uri = workspace.root.as_uri()
        await client.initialize_async(
            lsp.InitializeParams(
                capabilities=client_capabilities(["utf-16"]),
                root_uri=root_uri,
                workspace_folders=[lsp.WorkspaceFolder(uri=root_uri, name="proj")],
                process_id=os.getpid(),
            )
        )
        client.initialized(lsp.InitializedParams())
        uri = (workspace.root / "app.py").as_uri()
        client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(uri=uri, language_id="python", version=0, text=app.text))
        )
        doc = lsp.TextDocumentIdentifier(uri=uri)

        def lsp_pos(p: Position) -> lsp.Position:
            return lsp.Position(line=p.line, character=p.character)  # the file is ASCII: units are code points

        direct_definition = await client.text_document_definition_async(lsp.DefinitionParams(doc, lsp_pos(call)))
        direct_hover = await client.text_document_hover_async(lsp.HoverParams(doc, lsp_pos(call)))
        direct_references = await client.text_document_references_async(
            lsp.ReferenceParams(lsp.ReferenceContext(include_declaration=True), doc, lsp_pos(use))
        )
        direct_symbols = await client.text_document_document_symbol_async(lsp.DocumentSymbolParams(doc))
        direct_completion = await client.text_document_completion_async(lsp.CompletionParams(doc, lsp_pos(call)))
    finally:
        # No shutdown/exit handshake: pygls' start_io never drains the server's stderr, and jedi-language-server
        # writes megabytes of tracebacks there after `exit`, so it would block on the full pipe and never exit.
        assert client._server is not None
        client._server.kill()
        await client.stop()

    def wire(uri_: str, r: lsp.Range) -> tuple[str, int, int, int, int]:
        return (uri_.rsplit("/proj/", 1)[1], r.start.line, r.start.character, r.end.line, r.end.character)

    def core(path: str, r: Range) -> tuple[str, int, int, int, int]:
        return (path, r.start.line, r.start.character, r.end.line, r.end.character)

    definition = await engine.definition(app, call)
    assert isinstance(direct_definition, list) and definition is not None
    assert [core(d.path, d.range) for d in definition] == [
        wire(d.uri, d.range) for d in direct_definition if isinstance(d, lsp.Location)
    ]
    assert definition[0].path == "pkg/greeting.py"

    hover = await engine.hover(app, call)
    assert direct_hover is not None and hover
    assert hover.contents == markup_to_markdown(direct_hover.contents)
    assert "Greet by name." in hover.contents

    references = await engine.references(app, use, include_declaration=True)
    assert direct_references is not None and references is not None
    assert sorted(core(r.path, r.range) for r in references) == sorted(wire(r.uri, r.range) for r in direct_references)
    assert {r.path for r in references} == {"app.py", "pkg/greeting.py"}

    symbols = await engine.document_symbols(app)
    assert symbols is not None and direct_symbols is not None
    assert [(s.name, s.kind, core(app.path, s.range)) for s in symbols] == [
        (s.name, symbol_kind_from_lsp(s.kind), wire(uri, s.range))
        for s in direct_symbols
        if isinstance(s, lsp.DocumentSymbol)
    ]

    completion = await engine.complete(app, call)
    assert completion is not None and direct_completion is not None
    direct_items = direct_completion.items if isinstance(direct_completion, lsp.CompletionList) else direct_completion
    assert [c.label for c in completion] == [c.label for c in direct_items]
    assert "greet" in [c.label for c in completion]


async def test_rename_pins_versions_and_symbols_are_found(workspace: Workspace, make_engine: MakeEngine) -> None:
    engine = make_engine()
    workspace.open("app.py", None)
    workspace.change(
        "app.py",
        [TextChange(range=Range(start=Position(line=0, character=0), end=Position(line=0, character=0)), text="\n")],
    )
    app = workspace.snapshot("app.py")
    assert app.version == 1
    edit = await engine.rename(app, at(app.text, "greet()"), "salute")
    assert edit is not None
    assert set(edit.changes) == {"app.py", "pkg/greeting.py"}
    assert edit.versions == {"app.py": 1, "pkg/greeting.py": None}
    renamed = {path: apply(workspace.snapshot(path).text, edits) for path, edits in edit.changes.items()}
    assert "return greeter.salute()" in renamed["app.py"]
    assert "def salute(self)" in renamed["pkg/greeting.py"] and "greet" not in renamed["pkg/greeting.py"]

    found = await engine.find_symbol("Greeter.greet", None)
    assert found is not None and [(s.name, s.kind, s.container, s.location.path) for s in found] == [
        ("greet", "method", "Greeter", "pkg/greeting.py")
    ]
    classes = await engine.find_symbol("Greeter", "class")
    assert classes is not None and [(s.name, s.location.path) for s in classes] == [("Greeter", "pkg/greeting.py")]
    assert await engine.workspace_symbols("Greeter", "go") is None
    assert await engine.call_hierarchy(app, at(app.text, "run"), "incoming") is None  # jedi offers none


async def test_unsaved_edits_reach_the_server(workspace: Workspace, make_engine: MakeEngine) -> None:
    engine = make_engine()
    workspace.open("app.py", None)
    end = workspace.snapshot("app.py")
    last = Position(line=end.text.count("\n"), character=0)
    workspace.change("app.py", [TextChange(range=Range(start=last, end=last), text="buffer_only_value = 1\n")])
    workspace.change("app.py", [TextChange(range=Range(start=last, end=last), text="# 😀 emoji first\n")])
    line = end.text.count("\n") + 2
    workspace.change(
        "app.py",
        [
            TextChange(
                range=Range(start=Position(line=line, character=0), end=Position(line=line, character=0)),
                text="print(buffer_o",
            )
        ],
    )
    app = workspace.snapshot("app.py")
    assert app.text.endswith("# 😀 emoji first\nbuffer_only_value = 1\nprint(buffer_o")
    items = await engine.complete(app, Position(line=line, character=len("print(buffer_o")))
    assert items is not None and "buffer_only_value" in [i.label for i in items]
    assert engine.position_encoding == "utf-32"


@pytest.mark.parametrize(
    ("server", "offered", "negotiated"),
    [
        ("jedi", None, "utf-32"),  # jedi-language-server counts code points whatever it negotiates
        ("fake", ("utf-8",), "utf-8"),
        ("fake", ("utf-16",), "utf-16"),
        ("fake", None, "utf-32"),
    ],
)
async def test_emoji_positions_in_every_encoding(
    workspace: Workspace, make_engine: MakeEngine, server: str, offered: tuple[str, ...] | None, negotiated: str
) -> None:
    options = {"position_encodings": offered} if offered else {}
    engine = make_engine(fake() if server == "fake" else None, name=server, engine=options)
    doc = workspace.snapshot("emoji.py")
    use = at(doc.text, "target_value", 2, occurrence=1)
    definition = await engine.definition(doc, use)
    assert engine.position_encoding == negotiated
    start = at(doc.text, "target_value")
    assert definition is not None and [(d.path, d.range.start, d.range.end.character) for d in definition] == [
        ("emoji.py", start, start.character + len("target_value"))
    ]
    if server == "jedi":
        hover = await engine.hover(doc, use)
        assert hover and hover.range is not None and hover.range.start == Position(line=1, character=9)


async def test_pushed_diagnostics_follow_changes(workspace: Workspace, make_engine: MakeEngine) -> None:
    engine = make_engine(engine={"diagnostics_wait": 10.0})
    workspace.open("app.py", None)
    workspace.change("app.py", [TextChange(text="def broken(:\n    pass\n")])
    broken = await engine.diagnostics(workspace.snapshot("app.py"))
    assert broken is not None and len(broken) == 1
    assert broken[0].severity == "error" and "SyntaxError" in broken[0].message and broken[0].range.start.line == 0
    workspace.change("app.py", [TextChange(text="def fine():\n    pass\n")])
    assert await engine.diagnostics(workspace.snapshot("app.py")) == []
    assert await engine.diagnostics(workspace.snapshot("pkg/greeting.py")) == []  # opened from disk for the question


async def test_a_killed_server_restarts_and_gets_the_open_documents_back(
    workspace: Workspace, make_engine: MakeEngine
) -> None:
    engine = make_engine()
    workspace.open("app.py", None)
    workspace.change("app.py", [TextChange(text="unsaved_only_name = 1\nunsaved_o")])
    await engine.ready(20)
    first = engine.pid
    assert first is not None and engine.state == "running" and engine.restarts == 0
    os.kill(first, signal.SIGKILL)
    await wait_restarted(engine, 1)
    assert engine.pid not in (None, first)
    await wait_gone(first)
    items = await engine.complete(workspace.snapshot("app.py"), Position(line=1, character=len("unsaved_o")))
    assert items is not None and "unsaved_only_name" in [i.label for i in items]


async def test_close_ends_the_process(make_engine: MakeEngine) -> None:
    engine = make_engine()
    await engine.ready(20)
    pid = engine.pid
    assert pid is not None
    await engine.close()
    assert engine.state == "idle" and engine.pid is None
    await wait_gone(pid)
    with pytest.raises(errors.UpstreamFailure, match="shut down"):
        await engine.ready(1)


CHILD = """
import asyncio, json, sys
from pathlib import Path
from gateway.analysis.presets import resolve_server
from gateway.config import LanguageServerConfig
from gateway.workspace import Workspace
from protocols.lsp_client import ManagedServerEngine

async def main() -> None:
    workspace = Workspace(Path(sys.argv[1]))
    config = LanguageServerConfig(name="server", command=json.loads(sys.argv[2]), languages=["python"])
    engine = ManagedServerEngine(resolve_server(config), workspace)
    workspace.listeners.append(engine)
    workspace.open("app.py", None)  # starts the server
    if sys.argv[3] == "ready":
        await engine.ready(30)
    while engine.pid is None:
        await asyncio.sleep(0.01)
    print(engine.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""

# Never reads stdin (so it misses the closed pipe) and ignores SIGTERM: only the parent-death signal ends it.
STUBBORN = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"]


@pytest.mark.parametrize(("command", "wait"), [([str(JEDI)], "ready"), (STUBBORN, "spawned")], ids=["jedi", "stubborn"])
async def test_the_server_dies_with_a_killed_gateway(project: Path, command: list[str], wait: str) -> None:
    gateway = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(project),
        json.dumps(command),
        wait,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert gateway.stdout is not None
        line = await asyncio.wait_for(gateway.stdout.readline(), 30)
        server_pid = int(line)
        assert not process_gone(server_pid)
    finally:
        gateway.kill()  # SIGKILL: no cleanup code of the gateway runs
        await gateway.wait()
    await wait_gone(server_pid)


# -- the fake server: sync, server requests, errors -------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "encoding"),
    [("incremental", "utf-8"), ("incremental", "utf-16"), ("incremental", "utf-32"), ("full", "utf-16")],
)
async def test_the_server_holds_exactly_the_gateway_text(
    workspace: Workspace, make_engine: MakeEngine, mode: str, encoding: str
) -> None:
    engine = make_engine(
        fake("--full") if mode == "full" else fake(), name="fake", engine={"position_encodings": (encoding,)}
    )
    (workspace.root / "e.py").write_text("a😀b\r\n中文\nxyz\n", encoding="utf-8")
    workspace.open("e.py", None)

    async def server_view() -> str:
        hover = await engine.hover(workspace.snapshot("e.py"), Position(line=0, character=0))
        assert hover
        return hover.contents

    assert await server_view() == "v0|a😀b\r\n中文\nxyz\n"
    assert engine.position_encoding == encoding

    def rng(sl: int, sc: int, el: int, ec: int) -> Range:
        return Range(start=Position(line=sl, character=sc), end=Position(line=el, character=ec))

    steps = [
        [TextChange(range=rng(0, 2, 0, 3), text="👩\u200d💻")],  # replace `b` after the emoji
        [TextChange(range=rng(1, 1, 2, 1), text="🎉\n"), TextChange(range=rng(0, 0, 0, 1), text="Z")],  # in order
        [TextChange(range=rng(0, 99, 1, 0), text="")],  # past the end of line 0: joins the lines
        [TextChange(range=rng(9, 0, 9, 0), text="tail 😀")],  # past the last line: appends
    ]
    for version, changes in enumerate(steps, start=1):
        workspace.change("e.py", changes)
        document = workspace.get("e.py")
        assert document.version == version
        assert await server_view() == f"v{version}|{document.text}"


async def test_server_requests_are_answered(workspace: Workspace, make_engine: MakeEngine) -> None:
    settings = {"fake": {"alpha": 1, "beta": [1, 2]}}
    engine = make_engine(fake(), name="fake", settings=settings)
    items = await engine.complete(workspace.snapshot("app.py"), Position(line=0, character=0))
    assert items is not None
    assert [i.label for i in items] == [
        "1",
        '{"alpha": 1, "beta": [1, 2]}',
        "null",
        '{"fake": {"alpha": 1, "beta": [1, 2]}}',
        "folders:proj",
    ]


async def test_server_edits_apply_to_open_documents_only(workspace: Workspace, make_engine: MakeEngine) -> None:
    engine = make_engine(fake(), name="fake")
    workspace.open("app.py", None)
    before = workspace.get("app.py").text
    edit = await engine.rename(workspace.snapshot("app.py"), Position(line=0, character=0), "renamed")
    assert workspace.get("app.py").text == "# renamed\n" + before
    assert workspace.get("app.py").version == 1
    assert edit is not None and edit.versions == {"app.py": 0}
    [reply] = edit.changes["app.py"]
    applied, other_applied, reason = reply.new_text.split("|")
    assert (applied, other_applied) == ("True", "False")
    assert "other.py is not open" in reason
    hover = await engine.hover(workspace.snapshot("app.py"), Position(line=0, character=0))
    assert hover and hover.contents == f"v1|# renamed\n{before}"  # the applied edit went back to the server


async def test_error_replies_timeouts_and_unparseable_replies(workspace: Workspace, make_engine: MakeEngine) -> None:
    engine = make_engine(fake(), name="fake", request_timeout_seconds=2.0)
    doc = workspace.snapshot("app.py")
    with pytest.raises(errors.UpstreamFailure, match="boom from the fake server"):
        await engine.signature_help(doc, Position(line=0, character=0))
    with pytest.raises(errors.Timeout, match="did not answer textDocument/documentSymbol"):
        await engine.document_symbols(doc)
    with pytest.raises(
        errors.UpstreamFailure, match=r"reply to workspace/symbol that could not be parsed: .*SymbolKind"
    ):
        await engine.workspace_symbols("odd", None)
    assert await engine.workspace_symbols("hostile", None) == []  # it sent us `exit` and `shutdown`: ignored
    hover = await engine.hover(doc, Position(line=0, character=0))  # the session is still fine
    assert hover and hover.contents.startswith("v0|from pkg")
    assert engine.in_flight == 0


async def test_pulled_diagnostics(workspace: Workspace, make_engine: MakeEngine) -> None:
    engine = make_engine(fake(), name="fake")
    workspace.open("app.py", None)
    workspace.change("app.py", [TextChange(text="x = 1\n")])
    [diag] = await engine.diagnostics(workspace.snapshot("app.py")) or [None]
    assert diag is not None
    assert (diag.severity, diag.code, diag.source, diag.message) == ("warning", "7", "fake", "version 1, 6 characters")


async def test_a_request_in_flight_when_the_server_dies_fails_clearly(
    workspace: Workspace, make_engine: MakeEngine
) -> None:
    engine = make_engine(fake(), name="fake")
    workspace.open("app.py", None)
    workspace.change("app.py", [TextChange(text="unsaved\n")])
    await engine.ready(20)
    pending = asyncio.create_task(engine.implementations(workspace.snapshot("app.py"), Position(line=0, character=0)))
    await wait_until(lambda: engine.in_flight == 1)
    pid = engine.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(
        errors.UpstreamFailure,
        match=r"crashed \(exit code -9\) while answering textDocument/implementation; restarting",
    ):
        await pending
    await wait_restarted(engine, 1)
    hover = await engine.hover(workspace.snapshot("app.py"), Position(line=0, character=0))
    assert hover and hover.contents == "v1|unsaved\n"  # reopened with the unsaved text and its version


async def test_gives_up_after_max_restarts(workspace: Workspace, make_engine: MakeEngine) -> None:
    engine = make_engine([sys.executable, "-c", "import sys; sys.exit(3)"], max_restarts=2)
    with pytest.raises(errors.UpstreamFailure, match="no longer restarted"):
        await engine.ready(20)
    assert engine.state == "failed" and engine.restarts == 2
    assert engine.handles("app.py", "python")
    with pytest.raises(errors.UpstreamFailure, match="failed 3 times"):
        await engine.complete(workspace.snapshot("app.py"), Position(line=0, character=0))


async def test_a_slow_start_is_reported_as_starting(workspace: Workspace, make_engine: MakeEngine) -> None:
    engine = make_engine([sys.executable, "-c", "import time; time.sleep(60)"], engine={"start_wait": 0.2})
    with pytest.raises(EngineUnavailable) as caught:
        await engine.hover(workspace.snapshot("app.py"), Position(line=0, character=0))
    assert caught.value.reason == "server_starting"
    assert engine.state == "starting" and engine.pid is not None
