"""`ManagedServerEngine`: the gateway as the LSP client of one supervised language-server process.

Lifecycle: the process starts on first use (a request, or the opening of a document it handles), is
initialised with the workspace root, and is restarted with exponential backoff when it dies; after a
restart every open document it handles is opened again with its current (unsaved) text. After
`max_restarts` consecutive failures it gives up and requests fail with `UpstreamFailure`.

Documents: the gateway's store is the truth. Opens, changes (incremental when the server accepts them)
and closes are forwarded as they happen; a request about a file that is not open in the gateway opens it
in the server from its disk text first, and it stays open (the least recently used of those are closed
beyond a cap; its text is re-sent when the file on disk changed).

Waiting for a start: a request that arrives while the server is starting or restarting waits for it,
at most `start_wait` seconds (bounded by the request timeout), then raises `EngineUnavailable`. Most
servers are up well within that, so the first request after start simply takes longer instead of
bouncing; a server that takes longer (indexing, backoff) gives a prompt answer the caller can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar
from urllib.parse import unquote, urlparse

import pathspec
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException

from gateway import errors
from gateway.analysis import models
from gateway.analysis.engine import Direction, Engine, EngineUnavailable
from gateway.analysis.presets import ResolvedServer
from gateway.workspace import DocumentSnapshot, Position, TextChange, Workspace
from translators.lsp import (
    LspConverter,
    UnsupportedEdit,
    changes_to_lsp,
    edits_to_changes,
    path_to_uri,
    split_lines,
    uri_to_path,
)
from translators.positions import Encoding, from_code_points

from .connection import REPLY_PARSE_ERROR, LspConnection, ServerExited

log = logging.getLogger("protocols.lsp_client")

State = Literal["idle", "starting", "running", "restarting", "failed"]
T = TypeVar("T")

_METHOD_NOT_FOUND = -32601
_SERVER_NOT_INITIALIZED = -32002
_CONTENT_MODIFIED = -32801
_ENCODINGS: tuple[Encoding, ...] = ("utf-8", "utf-16", "utf-32")
_MAX_FALLBACK_FILES = 20
_MAX_SYMBOL_RESOLVES = 50


class _NotOffered(Exception):
    """The server answered "method not found": treat the operation as not offered."""


def settings_section(settings: Mapping[str, Any], section: str | None) -> Any:
    """The answer to one `workspace/configuration` item: the value at the dotted `section` path of
    `settings` (nested tables or keys that contain dots both work), the whole settings for no section,
    None when absent."""
    if not section:
        return dict(settings)
    parts = section.split(".")

    def walk(node: Any, rest: list[str]) -> Any:
        if not rest:
            return node
        if not isinstance(node, Mapping):
            return None
        for cut in range(len(rest), 0, -1):
            key = ".".join(rest[:cut])
            if key in node:
                found = walk(node[key], rest[cut:])
                if found is not None:
                    return found
        return None

    return walk(settings, parts)


def client_capabilities(encodings: Sequence[Encoding]) -> lsp.ClientCapabilities:
    """What the gateway understands as a client: plain-text completions (no snippets), Markdown or plain
    text, hierarchical symbols, location links, versioned text-document edits (no file operations)."""
    formats = [lsp.MarkupKind.Markdown, lsp.MarkupKind.PlainText]
    return lsp.ClientCapabilities(
        general=lsp.GeneralClientCapabilities(position_encodings=list(encodings)),
        text_document=lsp.TextDocumentClientCapabilities(
            synchronization=lsp.TextDocumentSyncClientCapabilities(did_save=False),
            completion=lsp.CompletionClientCapabilities(
                completion_item=lsp.ClientCompletionItemOptions(
                    snippet_support=False,
                    documentation_format=formats,
                    insert_replace_support=True,
                    label_details_support=True,
                ),
                context_support=True,
            ),
            hover=lsp.HoverClientCapabilities(content_format=formats),
            signature_help=lsp.SignatureHelpClientCapabilities(
                signature_information=lsp.ClientSignatureInformationOptions(
                    documentation_format=formats,
                    parameter_information=lsp.ClientSignatureParameterInformationOptions(label_offset_support=True),
                    active_parameter_support=True,
                )
            ),
            definition=lsp.DefinitionClientCapabilities(link_support=True),
            implementation=lsp.ImplementationClientCapabilities(link_support=True),
            references=lsp.ReferenceClientCapabilities(),
            document_symbol=lsp.DocumentSymbolClientCapabilities(hierarchical_document_symbol_support=True),
            rename=lsp.RenameClientCapabilities(prepare_support=False),
            publish_diagnostics=lsp.PublishDiagnosticsClientCapabilities(version_support=True),
            diagnostic=lsp.DiagnosticClientCapabilities(dynamic_registration=True, related_document_support=False),
            call_hierarchy=lsp.CallHierarchyClientCapabilities(),
        ),
        workspace=lsp.WorkspaceClientCapabilities(
            apply_edit=True,
            workspace_edit=lsp.WorkspaceEditClientCapabilities(
                document_changes=True, resource_operations=[], failure_handling=lsp.FailureHandlingKind.Abort
            ),
            configuration=True,
            workspace_folders=True,
            symbol=lsp.WorkspaceSymbolClientCapabilities(),
            did_change_configuration=lsp.DidChangeConfigurationClientCapabilities(),
        ),
        window=lsp.WindowClientCapabilities(work_done_progress=True),
    )


@dataclass
class _ServerDoc:
    """A document as the server has it open."""

    uri: str
    version: int  # the server's version of it
    text: str
    language_id: str
    from_disk: bool  # opened by us for a request, not open in the gateway
    offset: int = 0  # server version - gateway version (not 0 once a disk document became a gateway one)

    def gateway_version(self, server_version: int) -> int:
        """The gateway's version of a version number the server used."""
        return server_version - self.offset


@dataclass
class _Diagnostics:
    """The last diagnostics for one document, and whether they are newer than its last sync."""

    items: list[lsp.Diagnostic] = field(default_factory=list)
    text: str | None = None  # the text they were computed for, when known
    fresh: asyncio.Event = field(default_factory=asyncio.Event)
    result_id: str | None = None  # pull diagnostics: for "unchanged" reports


class _Session:
    """One running server process: its capabilities, the documents it has open, what it published."""

    def __init__(self, engine: ManagedServerEngine) -> None:
        self.engine = engine
        self.connection = LspConnection(
            engine.name,
            engine.command,
            cwd=engine.workspace.root,
            env={**os.environ, **engine.config.env},
            handlers=self._handlers(),
        )
        self.capabilities = lsp.ServerCapabilities()
        self.encoding: Encoding = "utf-16"
        self.docs: dict[str, _ServerDoc] = {}
        self.disk_docs: OrderedDict[str, None] = OrderedDict()
        self.diagnostics: dict[str, _Diagnostics] = {}
        self.registrations: dict[str, str] = {}  # registration id -> method
        self.versioned_publishes = False
        self.started_at = 0.0

    # -- capabilities -----------------------------------------------------------------------------
    def offers(self, provider: str, method: str) -> bool:
        """True when the server's capabilities (or a dynamic registration) include this feature."""
        value = getattr(self.capabilities, provider, None)
        return (value is not None and value is not False) or method in self.registrations.values()

    @property
    def sync_kind(self) -> lsp.TextDocumentSyncKind:
        sync = self.capabilities.text_document_sync
        if sync is None:
            return lsp.TextDocumentSyncKind.None_
        if isinstance(sync, lsp.TextDocumentSyncOptions):
            return sync.change if sync.change is not None else lsp.TextDocumentSyncKind.None_
        return lsp.TextDocumentSyncKind(sync)

    @property
    def open_close(self) -> bool:
        sync = self.capabilities.text_document_sync
        if isinstance(sync, lsp.TextDocumentSyncOptions):
            return bool(sync.open_close)
        return sync is not None and sync != lsp.TextDocumentSyncKind.None_

    # -- document sync --------------------------------------------------------------------------------
    def _touch(self, path: str) -> None:
        slot = self.diagnostics.get(path)
        if slot is not None:
            slot.fresh.clear()

    def _open(self, path: str, text: str, version: int, language_id: str, *, from_disk: bool) -> None:
        uri = self.engine.uri_of(path)
        self.docs[path] = _ServerDoc(uri, version, text, language_id, from_disk)
        self._touch(path)
        self.connection.notify(
            "textDocument/didOpen",
            lsp.DidOpenTextDocumentParams(
                text_document=lsp.TextDocumentItem(uri=uri, language_id=language_id, version=version, text=text)
            ),
        )
        if from_disk:
            self.disk_docs[path] = None
            while len(self.disk_docs) > self.engine.disk_documents:
                oldest, _ = self.disk_docs.popitem(last=False)
                self._close(oldest)

    def _close(self, path: str) -> None:
        doc = self.docs.pop(path, None)
        self.disk_docs.pop(path, None)
        self.diagnostics.pop(path, None)
        if doc is not None:
            self.connection.notify(
                "textDocument/didClose",
                lsp.DidCloseTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=doc.uri)),
            )

    def _send_change(self, doc: _ServerDoc, version: int, events: Sequence[Any], text: str, path: str) -> None:
        doc.version, doc.text = version, text
        self._touch(path)
        if self.sync_kind == lsp.TextDocumentSyncKind.None_:
            return
        self.connection.notify(
            "textDocument/didChange",
            lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(uri=doc.uri, version=version),
                content_changes=list(events),
            ),
        )

    def _full_change(self, path: str, doc: _ServerDoc, text: str, version: int) -> None:
        self._send_change(doc, version, [lsp.TextDocumentContentChangeWholeDocument(text=text)], text, path)

    @staticmethod
    def _next_version(doc: _ServerDoc, gateway_version: int | None) -> int:
        """The server version for the gateway's `gateway_version`: mapped by the offset, always above the last
        one sent (the offset grows when needed)."""
        if gateway_version is None:
            return doc.version + 1
        version = max(gateway_version + doc.offset, doc.version + 1)
        doc.offset = version - gateway_version
        return version

    def opened(self, snapshot: DocumentSnapshot) -> None:
        """The gateway opened a document: the server gets it. One the server already has (opened from disk
        for a request) is adopted, not closed and reopened: closing makes some servers publish an unversioned
        "no diagnostics" that would pass for an answer about the new text."""
        if not self.open_close:
            return
        gateway_version = snapshot.version or 0
        doc = self.docs.get(snapshot.path)
        if doc is None:
            self._open(snapshot.path, snapshot.text, gateway_version, snapshot.language_id, from_disk=False)
            return
        doc.from_disk = False
        self.disk_docs.pop(snapshot.path, None)
        if doc.text != snapshot.text:
            self._full_change(snapshot.path, doc, snapshot.text, self._next_version(doc, gateway_version))
        else:
            doc.offset = doc.version - gateway_version

    def changed(self, snapshot: DocumentSnapshot, changes: Sequence[TextChange], previous_text: str) -> None:
        """An open document changed: forward the edits (incrementally when the server takes them)."""
        if not self.open_close:
            return
        doc = self.docs.get(snapshot.path)
        if doc is None or doc.from_disk:
            self.opened(snapshot)
            return
        version = self._next_version(doc, snapshot.version)
        if self.sync_kind == lsp.TextDocumentSyncKind.Incremental and doc.text == previous_text:
            events, result = changes_to_lsp(previous_text, changes, self.encoding)
            if result == snapshot.text:
                self._send_change(doc, version, events, snapshot.text, snapshot.path)
                return
            log.warning("incremental changes to %s did not reproduce its text; sending it whole", snapshot.path)
        self._full_change(snapshot.path, doc, snapshot.text, version)

    def closed(self, path: str) -> None:
        """The gateway closed a document."""
        doc = self.docs.get(path)
        if doc is not None and not doc.from_disk:
            self._close(path)

    def sync_for_request(self, snapshot: DocumentSnapshot) -> str:
        """Make sure the server has `snapshot`'s text before a request about it; its URI."""
        path = snapshot.path
        doc = self.docs.get(path)
        if not self.open_close:
            return doc.uri if doc is not None else self.engine.uri_of(path)
        if snapshot.version is not None:  # open in the gateway
            if doc is None or doc.from_disk:
                self.opened(snapshot)
            elif doc.text != snapshot.text and doc.gateway_version(doc.version) <= snapshot.version:
                # the server missed a change; when it has a newer version, the snapshot is the stale one
                self._full_change(path, doc, snapshot.text, self._next_version(doc, snapshot.version))
        elif doc is None:
            self._open(path, snapshot.text, 0, snapshot.language_id, from_disk=True)
        elif doc.from_disk:
            self.disk_docs.move_to_end(path)
            if doc.text != snapshot.text:
                self._full_change(path, doc, snapshot.text, doc.version + 1)
        return self.docs[path].uri

    def reopen_all(self) -> None:
        """Open every gateway document this server handles, with its current text."""
        for document in list(self.engine.workspace.documents.values()):
            if self.engine.handles(document.path, document.language_id):
                snapshot = DocumentSnapshot(document.path, document.text, document.version, document.language_id)
                self.opened(snapshot)

    # -- the server's requests and notifications ------------------------------------------------------
    def _handlers(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "textDocument/publishDiagnostics": self._on_publish_diagnostics,
            "workspace/configuration": self._on_configuration,
            "workspace/workspaceFolders": self._on_workspace_folders,
            "client/registerCapability": self._on_register,
            "client/unregisterCapability": self._on_unregister,
            "workspace/applyEdit": self._on_apply_edit,
            "window/workDoneProgress/create": _answer_null,
            "window/showMessageRequest": _answer_null,
            "window/showDocument": lambda _params: lsp.ShowDocumentResult(success=False),
            "workspace/codeLens/refresh": _answer_null,
            "workspace/diagnostic/refresh": _answer_null,
            "workspace/foldingRange/refresh": _answer_null,
            "workspace/inlayHint/refresh": _answer_null,
            "workspace/inlineValue/refresh": _answer_null,
            "workspace/semanticTokens/refresh": _answer_null,
            "window/logMessage": self._on_log_message,
            "window/showMessage": self._on_log_message,
            "$/progress": _ignore,
            "$/logTrace": _ignore,
            "telemetry/event": _ignore,
        }

    def _on_publish_diagnostics(self, params: lsp.PublishDiagnosticsParams) -> None:
        path = self.engine.path_of_uri(params.uri)
        if path is None:
            return
        doc = self.docs.get(path)
        slot = self.diagnostics.setdefault(path, _Diagnostics())
        slot.items = list(params.diagnostics)
        slot.text = doc.text if doc is not None else None
        # A server that versions its publishes may also send unversioned ones (jedi-language-server clears a
        # closed document that way); those can be older than our last change, so they do not count as fresh.
        if params.version is not None:
            self.versioned_publishes = True
            fresh = doc is None or params.version >= doc.version
        else:
            fresh = doc is None or not self.versioned_publishes
        if fresh:
            slot.fresh.set()

    def _on_configuration(self, params: lsp.ConfigurationParams) -> list[Any]:
        return [settings_section(self.engine.config.settings, item.section) for item in params.items]

    def _on_workspace_folders(self, _params: Any) -> list[lsp.WorkspaceFolder]:
        return [self.engine.workspace_folder()]

    def _on_register(self, params: lsp.RegistrationParams) -> None:
        for registration in params.registrations:
            self.registrations[registration.id] = registration.method

    def _on_unregister(self, params: lsp.UnregistrationParams) -> None:
        for registration in params.unregisterations:
            self.registrations.pop(registration.id, None)

    def _on_log_message(self, params: lsp.LogMessageParams) -> None:
        log.debug("[%s] %s", self.engine.name, params.message)

    def _on_apply_edit(self, params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
        """Apply a server's edit to documents open in the gateway (through the workspace, so every door
        sees it); refuse edits to files that are not open, at another version, or that need file operations."""
        workspace = self.engine.workspace
        try:
            edit = self.engine.converter(self).workspace_edit_from_lsp(params.edit)
        except UnsupportedEdit as exc:
            return lsp.ApplyWorkspaceEditResult(applied=False, failure_reason=str(exc))
        for path in edit.changes:
            document = workspace.documents.get(path)
            if document is None:
                return lsp.ApplyWorkspaceEditResult(
                    applied=False,
                    failure_reason=f"{path} is not open in the gateway; server edits apply only to open documents",
                )
            expected = edit.versions.get(path)
            server_doc = self.docs.get(path)
            if expected is not None and server_doc is not None:
                expected = server_doc.gateway_version(expected)
            if expected is not None and expected != document.version:
                return lsp.ApplyWorkspaceEditResult(
                    applied=False,
                    failure_reason=f"{path} is at version {document.version}, the edit expects {expected}",
                )
        for index, (path, edits) in enumerate(edit.changes.items()):
            try:
                workspace.change(path, edits_to_changes(edits))
            except errors.GatewayError as exc:
                return lsp.ApplyWorkspaceEditResult(applied=False, failure_reason=exc.message, failed_change=index)
        return lsp.ApplyWorkspaceEditResult(applied=True)


def _answer_null(_params: Any) -> None:
    return None


def _ignore(_params: Any) -> None:
    return None


class _Lines:
    """Line text for position conversion: what the server has open (split once per text, in the engine's
    line cache), else the gateway's text (open document, or the file on disk through the workspace's cache
    of recently converted files)."""

    def __init__(self, engine: ManagedServerEngine, session: _Session | None) -> None:
        self._engine = engine
        self._session = session

    def __call__(self, path: str, line: int) -> str | None:
        doc = self._session.docs.get(path) if self._session is not None else None
        if doc is None:
            return self._engine.workspace.line_text(path, line)
        lines = self._engine._lines.lines(path, doc.text)
        return lines[line] if 0 <= line < len(lines) else None


class ManagedServerEngine(Engine):
    """An analysis engine backed by one language server process, which it starts, feeds and supervises.

    Position encodings offered, in order of preference: UTF-32 (code points, the core's own unit: nothing to
    convert), then UTF-16 (the LSP default every server supports), then UTF-8; whatever the server picks is
    used. UTF-32 first also keeps jedi-language-server right: it reports code points whatever it negotiated.
    """

    def __init__(
        self,
        server: ResolvedServer,
        workspace: Workspace,
        *,
        position_encodings: Sequence[Encoding] = ("utf-32", "utf-16", "utf-8"),
        start_wait: float = 10.0,
        diagnostics_wait: float = 2.0,
        stable_seconds: float = 30.0,
        disk_documents: int = 64,
        exit_wait: float = 1.0,
    ) -> None:
        self.server = server
        self.config = server.config
        self.workspace = workspace
        self.name = server.config.name
        self.command = _resolve_command(server.command)
        self.position_encodings = tuple(position_encodings)
        self.start_wait = start_wait
        self.diagnostics_wait = diagnostics_wait
        self.stable_seconds = stable_seconds
        self.disk_documents = disk_documents
        self.exit_wait = exit_wait
        self.state: State = "idle"
        self.restarts = 0
        self.last_error: str | None = None
        self._languages = frozenset(server.languages)
        self._globs = pathspec.PathSpec.from_lines("gitignore", server.globs) if server.globs else None
        self._root = PurePosixPath(workspace.root.as_posix())
        self._session: _Session | None = None
        self._current: _Session | None = None  # the newest process, possibly still initialising
        self._supervisor: asyncio.Task[None] | None = None
        self._state_changed = asyncio.Event()
        self._closed = False
        self._lines = _LineCache()

    # -- identity and paths ---------------------------------------------------------------------------
    def handles(self, path: str, language_id: str) -> bool:
        """True for the server's languages and for paths matching its globs (root-relative)."""
        if language_id in self._languages:
            return True
        return self._globs is not None and self._globs.match_file(path)

    def uri_of(self, path: str) -> str:
        """The `file://` URI of a root-relative path."""
        return path_to_uri(self._root, path)

    def path_of_uri(self, uri: str) -> str | None:
        """The root-relative path of a URI the server sent; None for anything outside the workspace."""
        lexical = uri_to_path(self._root, uri)
        if lexical is not None:
            return lexical
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            return None
        try:  # the same file through a symlinked spelling of the root
            return self.workspace.relative_of_absolute(Path(unquote(parsed.path)))
        except (errors.GatewayError, OSError):
            return None

    def workspace_folder(self) -> lsp.WorkspaceFolder:
        """The workspace root as an LSP workspace folder."""
        return lsp.WorkspaceFolder(uri=self.uri_of("."), name=self.workspace.root.name or "/")

    def converter(self, session: _Session | None) -> LspConverter:
        """A converter for one answer, in the session's position encoding."""
        return LspConverter(
            encoding=session.encoding if session is not None else "utf-16",
            line_text=_Lines(self, session),
            path_of_uri=self.path_of_uri,
            uri_of_path=self.uri_of,
        )

    # -- observable state -----------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        current = self._current
        if current is None or current.connection.exited:
            return None
        return current.connection.pid

    @property
    def capabilities(self) -> lsp.ServerCapabilities | None:
        """What the running server said it can do."""
        return self._session.capabilities if self._session is not None else None

    @property
    def position_encoding(self) -> Encoding | None:
        """The position encoding agreed with the running server."""
        return self._session.encoding if self._session is not None else None

    @property
    def in_flight(self) -> int:
        """Requests waiting for the server's reply."""
        current = self._current
        return current.connection.in_flight if current is not None else 0

    def _set_state(self, state: State) -> None:
        self.state = state
        self._state_changed.set()
        self._state_changed = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Nothing: the server starts on first use."""

    def _ensure_started(self) -> None:
        if self._closed or self.state == "failed" or self._supervisor is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the first request starts it
        self._set_state("starting")
        self._supervisor = loop.create_task(self._supervise(), name=f"lsp-supervise-{self.name}")
        self._supervisor.add_done_callback(self._supervisor_done)

    def _supervisor_done(self, task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is None:
            return
        self.last_error = _describe(exc)
        log.error("language server %s: supervisor failed: %s", self.name, self.last_error, exc_info=exc)
        self._session = None
        self._set_state("failed")

    async def ready(self, timeout: float | None = None) -> None:
        """Start the server if needed and wait until it runs; `UpstreamFailure` if it gave up or was closed,
        TimeoutError after `timeout` seconds."""
        self._ensure_started()
        async with asyncio.timeout(timeout):
            while True:
                if self._closed:
                    raise errors.UpstreamFailure(f"language server {self.name} is shut down")
                if self.state == "failed":
                    raise errors.UpstreamFailure(
                        f"language server {self.name} failed {self.config.max_restarts + 1} times in a row and is "
                        f"no longer restarted: {self.last_error}",
                        data={"server": self.name},
                    )
                if self.state == "running" and self._session is not None:
                    return
                await self._state_changed.wait()

    async def next_state(self) -> State:
        """Wait for the next change of `state`; the state after it (for observers and tests)."""
        await self._state_changed.wait()
        return self.state

    async def _running(self) -> _Session:
        """The running session, waiting a bounded time for a start or restart."""
        session = self._session
        if session is not None and self.state == "running" and not self._closed:
            return session  # the usual case, without setting up a timeout to wait for nothing
        bound = min(self.start_wait, self.config.request_timeout_seconds)
        try:
            await self.ready(bound)
        except TimeoutError:
            if self.state == "restarting":
                raise EngineUnavailable(
                    "server_restarting", f"language server {self.name} is restarting ({self.last_error})"
                ) from None
            raise EngineUnavailable("server_starting", f"language server {self.name} is starting") from None
        assert self._session is not None
        return self._session

    async def _supervise(self) -> None:
        """Start the server, and restart it with backoff whenever it dies, until closed or given up."""
        loop = asyncio.get_running_loop()
        failures = 0
        delay = self.config.restart_initial_seconds
        first = True
        while not self._closed:
            if not first:
                self.restarts += 1
            self._set_state("starting" if first else "restarting")
            first = False
            session: _Session | None = None
            try:
                session = await self._launch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = _describe(exc)
                log.warning("language server %s failed to start: %s", self.name, self.last_error)
            if session is not None:
                await session.connection.wait_exit()
                self._session = None
                if self._closed:
                    return
                self.last_error = f"the process exited with code {session.connection.returncode}"
                if loop.time() - session.started_at >= self.stable_seconds:
                    failures, delay = 0, self.config.restart_initial_seconds
            failures += 1
            if failures > self.config.max_restarts:
                log.error("language server %s: giving up after %d failures (%s)", self.name, failures, self.last_error)
                self._set_state("failed")
                return
            self._set_state("restarting")
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.restart_max_seconds)

    async def _launch(self) -> _Session:
        """Spawn, initialise, and open the gateway's documents; the session is running when this returns."""
        session = _Session(self)
        self._current = session
        connection = session.connection
        try:
            await connection.start()
            root_uri = self.uri_of(".")
            params = lsp.InitializeParams(
                capabilities=client_capabilities(self.position_encodings),
                process_id=os.getpid(),
                client_info=lsp.ClientInfo(name="gateway"),
                root_uri=root_uri,
                root_path=str(self.workspace.root),
                workspace_folders=[self.workspace_folder()],
                initialization_options=self.config.initialization_options or None,
            )
            result = await connection.request("initialize", params, self.config.request_timeout_seconds)
            if not isinstance(result, lsp.InitializeResult):
                raise errors.UpstreamFailure(f"language server {self.name} sent no initialize result")
            session.capabilities = result.capabilities
            session.encoding = _negotiated(result.capabilities.position_encoding)
            connection.notify("initialized", lsp.InitializedParams())
            if self.config.settings:
                connection.notify(
                    "workspace/didChangeConfiguration", lsp.DidChangeConfigurationParams(settings=self.config.settings)
                )
            # No await from here on: documents opened or changed meanwhile are all in what we send now.
            session.reopen_all()
            session.started_at = asyncio.get_running_loop().time()
            self._session = session
            self._set_state("running")
            log.info("language server %s running (pid %s, %s positions)", self.name, connection.pid, session.encoding)
            return session
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close(timeout=1.0, graceful=False)
            raise

    async def close(self) -> None:
        """Shut the server down (shutdown + exit, then terminate, then kill); the engine stays closed."""
        self._closed = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        running = self._session is not None
        current, self._current, self._session = self._current, None, None
        if current is not None:
            await current.connection.close(timeout=2.0, graceful=running, exit_wait=self.exit_wait)
        self._set_state("idle")

    # -- document sync --------------------------------------------------------------------------------
    def document_opened(self, snapshot: DocumentSnapshot) -> None:
        """Open it in the server (starting the server if this is its first use)."""
        if self._closed or not self.handles(snapshot.path, snapshot.language_id):
            return
        self._ensure_started()
        if self._session is not None:
            self._session.opened(snapshot)

    def document_changed(self, snapshot: DocumentSnapshot, changes: Sequence[TextChange], previous_text: str) -> None:
        """Forward the change (incremental in the server's position encoding when it accepts that)."""
        if self._session is not None and self.handles(snapshot.path, snapshot.language_id):
            self._session.changed(snapshot, changes, previous_text)

    def document_closed(self, path: str) -> None:
        """Close it in the server."""
        if self._session is not None:
            self._session.closed(path)

    # -- requests -------------------------------------------------------------------------------------
    async def _request(self, session: _Session, method: str, params: Any) -> Any:
        """One request with the configured timeout; errors mapped to the core's."""
        timeout = self.config.request_timeout_seconds
        try:
            return await session.connection.request(method, params, timeout)
        except TimeoutError:
            raise errors.Timeout(
                f"language server {self.name} did not answer {method} within {timeout:g}s",
                data={"server": self.name, "method": method},
            ) from None
        except ServerExited as exc:
            then = "it was shut down" if self._closed else "restarting"
            raise errors.UpstreamFailure(
                f"language server {self.name} crashed (exit code {exc.returncode}) while answering {method}; {then}",
                data={"server": self.name, "method": method, "reason": "server_restarting"},
            ) from None
        except JsonRpcException as exc:
            if exc.code == _METHOD_NOT_FOUND:
                raise _NotOffered from None
            if exc.code == _SERVER_NOT_INITIALIZED:
                raise EngineUnavailable(
                    "server_starting", f"language server {self.name} is not initialised yet"
                ) from None
            if exc.code == _CONTENT_MODIFIED:
                raise errors.ContentModified(
                    f"language server {self.name}: the document changed while answering {method}",
                    data={"server": self.name},
                ) from None
            what = (
                f"sent a reply to {method} that could not be parsed"
                if exc.code == REPLY_PARSE_ERROR
                else f"failed {method}"
            )
            raise errors.UpstreamFailure(
                f"language server {self.name} {what}: {exc.message}",
                data={"server": self.name, "method": method, "code": exc.code},
            ) from None

    async def _at(
        self,
        doc: DocumentSnapshot,
        provider: str,
        method: str,
        pos: Position | None,
        make_params: Callable[[lsp.TextDocumentIdentifier, lsp.Position], Any],
    ) -> tuple[_Session, LspConverter, Any] | None:
        """Sync `doc`, send one request about it (at `pos`), return the raw reply; None if not offered."""
        if not self.handles(doc.path, doc.language_id):
            return None
        session = await self._running()
        if not session.offers(provider, method):
            return None
        uri = session.sync_for_request(doc)
        lsp_pos = lsp.Position(line=0, character=0)
        if pos is not None:
            line = self._lines.line(doc.path, doc.text, pos.line)
            lsp_pos = lsp.Position(line=pos.line, character=from_code_points(line, pos.character, session.encoding))
        try:
            result = await self._request(session, method, make_params(lsp.TextDocumentIdentifier(uri=uri), lsp_pos))
        except _NotOffered:
            return None
        return session, self.converter(session), result

    async def _locations(
        self, doc: DocumentSnapshot, pos: Position, provider: str, method: str, make: Callable[..., Any]
    ) -> list[models.Location] | None:
        answer = await self._at(doc, provider, method, pos, make)
        if answer is None:
            return None
        _, conv, result = answer
        return conv.locations_from_lsp(result)

    async def definition(self, doc: DocumentSnapshot, pos: Position) -> list[models.Location] | None:
        """textDocument/definition (location links read as their target's name range)."""
        return await self._locations(
            doc,
            pos,
            "definition_provider",
            "textDocument/definition",
            lambda td, p: lsp.DefinitionParams(text_document=td, position=p),
        )

    async def implementations(self, doc: DocumentSnapshot, pos: Position) -> list[models.Location] | None:
        """textDocument/implementation."""
        return await self._locations(
            doc,
            pos,
            "implementation_provider",
            "textDocument/implementation",
            lambda td, p: lsp.ImplementationParams(text_document=td, position=p),
        )

    async def references(
        self, doc: DocumentSnapshot, pos: Position, include_declaration: bool
    ) -> list[models.Location] | None:
        """textDocument/references."""
        return await self._locations(
            doc,
            pos,
            "references_provider",
            "textDocument/references",
            lambda td, p: lsp.ReferenceParams(
                text_document=td,
                position=p,
                context=lsp.ReferenceContext(include_declaration=include_declaration),
            ),
        )

    async def hover(self, doc: DocumentSnapshot, pos: Position) -> models.Hover | Literal[False] | None:
        """textDocument/hover as Markdown; False when the server has nothing there."""
        answer = await self._at(
            doc,
            "hover_provider",
            "textDocument/hover",
            pos,
            lambda td, p: lsp.HoverParams(text_document=td, position=p),
        )
        if answer is None:
            return None
        _, conv, result = answer
        if not isinstance(result, lsp.Hover):
            return False
        hover = conv.hover_from_lsp(doc.path, result)
        return hover if hover.contents.strip() else False

    async def complete(self, doc: DocumentSnapshot, pos: Position) -> list[models.CompletionItem] | None:
        """textDocument/completion (a list or a `CompletionList`, with its item defaults applied)."""
        answer = await self._at(
            doc,
            "completion_provider",
            "textDocument/completion",
            pos,
            lambda td, p: lsp.CompletionParams(
                text_document=td,
                position=p,
                context=lsp.CompletionContext(trigger_kind=lsp.CompletionTriggerKind.Invoked),
            ),
        )
        if answer is None:
            return None
        _, conv, result = answer
        return conv.completion_items_from_lsp(doc.path, result)

    async def signature_help(
        self, doc: DocumentSnapshot, pos: Position
    ) -> models.SignatureHelp | Literal[False] | None:
        """textDocument/signatureHelp; False when there is no call around `pos`."""
        answer = await self._at(
            doc,
            "signature_help_provider",
            "textDocument/signatureHelp",
            pos,
            lambda td, p: lsp.SignatureHelpParams(text_document=td, position=p),
        )
        if answer is None:
            return None
        _, conv, result = answer
        if not isinstance(result, lsp.SignatureHelp) or not result.signatures:
            return False
        return conv.signature_help_from_lsp(result)

    async def document_symbols(self, doc: DocumentSnapshot) -> list[models.DocumentSymbol] | None:
        """textDocument/documentSymbol as a tree (flat `SymbolInformation` nested by range)."""
        answer = await self._at(
            doc,
            "document_symbol_provider",
            "textDocument/documentSymbol",
            None,
            lambda td, _p: lsp.DocumentSymbolParams(text_document=td),
        )
        if answer is None:
            return None
        _, conv, result = answer
        return conv.document_symbols_from_lsp(doc.path, result)

    async def rename(self, doc: DocumentSnapshot, pos: Position, new_name: str) -> models.WorkspaceEdit | None:
        """textDocument/rename; `versions` pins each file: the open document's version the server computed
        the edit against (or had when asked), None for files that are not open (the disk text)."""
        versions_at_request = {path: document.version for path, document in self.workspace.documents.items()}
        answer = await self._at(
            doc,
            "rename_provider",
            "textDocument/rename",
            pos,
            lambda td, p: lsp.RenameParams(text_document=td, position=p, new_name=new_name),
        )
        if answer is None:
            return None
        session, conv, result = answer
        if not isinstance(result, lsp.WorkspaceEdit):
            return models.WorkspaceEdit()
        try:
            edit = conv.workspace_edit_from_lsp(result)
        except UnsupportedEdit as exc:
            raise errors.Unsupported(f"language server {self.name}: {exc}") from None
        versions: dict[str, int | None] = {}
        for path in edit.changes:
            server_doc = session.docs.get(path)
            named = edit.versions.get(path)
            if path not in versions_at_request:
                versions[path] = None
            elif named is not None and server_doc is not None and not server_doc.from_disk:
                versions[path] = server_doc.gateway_version(named)
            else:
                versions[path] = versions_at_request[path]
        edit.versions = versions
        return edit

    async def call_hierarchy(
        self, doc: DocumentSnapshot, pos: Position, direction: Direction
    ) -> list[models.CallHierarchyCall] | None:
        """prepareCallHierarchy, then incomingCalls or outgoingCalls for each item found."""
        answer = await self._at(
            doc,
            "call_hierarchy_provider",
            "textDocument/prepareCallHierarchy",
            pos,
            lambda td, p: lsp.CallHierarchyPrepareParams(text_document=td, position=p),
        )
        if answer is None:
            return None
        session, conv, items = answer
        calls: list[models.CallHierarchyCall] = []
        for item in items or ():
            if direction == "incoming":
                incoming = await self._request(
                    session, "callHierarchy/incomingCalls", lsp.CallHierarchyIncomingCallsParams(item=item)
                )
                calls.extend(conv.incoming_calls_from_lsp(incoming))
            else:
                origin = self.path_of_uri(item.uri)
                outgoing = await self._request(
                    session, "callHierarchy/outgoingCalls", lsp.CallHierarchyOutgoingCallsParams(item=item)
                )
                if origin is not None:
                    calls.extend(conv.outgoing_calls_from_lsp(origin, outgoing))
        return calls

    async def diagnostics(self, doc: DocumentSnapshot) -> list[models.Diagnostic] | None:
        """Pulled diagnostics when the server offers textDocument/diagnostic; otherwise the last pushed ones,
        after waiting (at most `diagnostics_wait` seconds) for a publish that follows the last change."""
        if not self.handles(doc.path, doc.language_id):
            return None
        session = await self._running()
        uri = session.sync_for_request(doc)
        slot = session.diagnostics.setdefault(doc.path, _Diagnostics())
        if session.offers("diagnostic_provider", "textDocument/diagnostic"):
            provider = session.capabilities.diagnostic_provider
            identifier = provider.identifier if isinstance(provider, lsp.DiagnosticOptions) else None
            params = lsp.DocumentDiagnosticParams(
                text_document=lsp.TextDocumentIdentifier(uri=uri),
                identifier=identifier,
                previous_result_id=slot.result_id,
            )
            with contextlib.suppress(_NotOffered):
                report = await self._request(session, "textDocument/diagnostic", params)
                if isinstance(report, lsp.RelatedFullDocumentDiagnosticReport):
                    slot.items, slot.result_id = list(report.items), report.result_id
                slot.text = session.docs[doc.path].text if doc.path in session.docs else doc.text
                return self._convert_diagnostics(session, doc, slot)
        if not slot.fresh.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(slot.fresh.wait(), self.diagnostics_wait)
        return self._convert_diagnostics(session, doc, slot)

    def _convert_diagnostics(
        self, session: _Session, doc: DocumentSnapshot, slot: _Diagnostics
    ) -> list[models.Diagnostic]:
        text = slot.text if slot.text is not None else doc.text
        lines = split_lines(text)

        def line_text(_path: str, line: int) -> str | None:
            return lines[line] if 0 <= line < len(lines) else None

        conv = LspConverter(session.encoding, line_text, self.path_of_uri, self.uri_of)
        return [conv.diagnostic_from_lsp(doc.path, item, self.name) for item in slot.items]

    # -- workspace-wide -------------------------------------------------------------------------------
    async def workspace_symbols(self, query: str, language_id: str | None) -> list[models.SymbolInfo] | None:
        """workspace/symbol (symbols outside the workspace left out)."""
        if language_id is not None and self._languages and language_id not in self._languages:
            return None
        session = await self._running()
        if not session.offers("workspace_symbol_provider", "workspace/symbol"):
            return None
        try:
            return await self._workspace_symbols(session, query)
        except _NotOffered:
            return None

    async def _workspace_symbols(self, session: _Session, query: str) -> list[models.SymbolInfo]:
        result = await self._request(session, "workspace/symbol", lsp.WorkspaceSymbolParams(query=query))
        symbols = list(result or ())
        provider = session.capabilities.workspace_symbol_provider
        if isinstance(provider, lsp.WorkspaceSymbolOptions) and provider.resolve_provider:
            unresolved = [
                i
                for i, s in enumerate(symbols)
                if isinstance(s, lsp.WorkspaceSymbol) and not isinstance(s.location, lsp.Location)
            ][:_MAX_SYMBOL_RESOLVES]
            resolved = await asyncio.gather(
                *(self._request(session, "workspaceSymbol/resolve", symbols[i]) for i in unresolved),
                return_exceptions=True,
            )
            for i, value in zip(unresolved, resolved, strict=True):
                if isinstance(value, lsp.WorkspaceSymbol):
                    symbols[i] = value
        conv = self.converter(session)
        out = []
        for symbol in symbols:
            info = conv.symbol_info_from_lsp(symbol)
            if info is not None:
                out.append(info)
        return out

    async def find_symbol(self, name_path: str, kind: str | None) -> list[models.SymbolInfo] | None:
        """Symbols whose dotted path ends with `name_path`: workspace/symbol for the last segment, filtered by
        the containers; when that finds no member (jedi-language-server lists no class members there), the
        document symbols of the files that hold a matching container."""
        parts = [part for part in name_path.split(".") if part]
        if not parts:
            return []
        session = await self._running()
        if not session.offers("workspace_symbol_provider", "workspace/symbol"):
            return None
        try:
            found = await self._workspace_symbols(session, parts[-1])
        except _NotOffered:
            return None
        matches = [s for s in found if _path_ends_with(s, parts) and (kind is None or s.kind == kind)]
        if matches or len(parts) == 1 or not session.offers("document_symbol_provider", "textDocument/documentSymbol"):
            return matches
        containers = [s for s in await self._workspace_symbols(session, parts[-2]) if _path_ends_with(s, parts[:-1])]
        files = list(dict.fromkeys(s.location.path for s in containers))[:_MAX_FALLBACK_FILES]
        for path in files:
            try:
                snapshot = self.workspace.snapshot(path)
            except errors.GatewayError:
                continue
            tree = await self.document_symbols(snapshot) or []
            matches.extend(_members(tree, path, parts, kind))
        return matches


def _full_path(symbol: models.SymbolInfo) -> list[str]:
    return [*(symbol.container.split(".") if symbol.container else []), symbol.name]


def _path_ends_with(symbol: models.SymbolInfo, parts: Sequence[str]) -> bool:
    full = _full_path(symbol)
    return len(full) >= len(parts) and full[-len(parts) :] == list(parts)


def _members(
    tree: Sequence[models.DocumentSymbol],
    path: str,
    parts: Sequence[str],
    kind: str | None,
    parents: tuple[str, ...] = (),
) -> list[models.SymbolInfo]:
    out: list[models.SymbolInfo] = []
    for node in tree:
        full = [*parents, node.name]
        if full[-len(parts) :] == list(parts) and (kind is None or node.kind == kind):
            out.append(
                models.SymbolInfo(
                    name=node.name,
                    kind=node.kind,
                    location=models.Location(path=path, range=node.selection_range),
                    container=".".join(parents) or None,
                )
            )
        out.extend(_members(node.children, path, parts, kind, (*parents, node.name)))
    return out


def _negotiated(value: object) -> Encoding:
    """The position encoding the server chose (an enum member or a plain string); UTF-16 when absent."""
    raw = getattr(value, "value", value)
    for encoding in _ENCODINGS:
        if raw == encoding:
            return encoding
    return "utf-16"


def _resolve_command(command: Sequence[str]) -> tuple[str, ...]:
    """The argv to run: a bare program name not on PATH is looked up next to this Python (a virtualenv's
    scripts directory), where pip installs language servers."""
    program, *rest = command
    if os.sep not in program and shutil.which(program) is None:
        candidate = Path(sys.executable).parent / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return (str(candidate), *rest)
    return (program, *rest)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or exc}"
    if isinstance(exc, errors.GatewayError):
        return exc.message
    if isinstance(exc, ServerExited):
        return f"the process exited during initialize (code {exc.returncode})"
    if isinstance(exc, TimeoutError):
        return "initialize timed out"
    return f"{type(exc).__name__}: {exc}"


__all__ = ["ManagedServerEngine", "State", "client_capabilities", "settings_section"]


class _LineCache:
    """The lines of the documents requests and answers are about, split once per text: a request needs the
    line at its position (to convert the character and clamp it to the line), an answer the lines of the
    documents the server has open, and finding a line by scanning took ~0.1 ms near the end of a 700-line
    file, on every request. Entries are keyed by path and hold the text they were split from (compared by
    identity, then by value: the server's copy and the request's snapshot are usually the same object), so
    any edit is seen; the least recently used go first."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[str, list[str]]] = OrderedDict()

    def lines(self, path: str, text: str) -> list[str]:
        """The lines of `text` (the text of `path`) without their breaks (\r\n, \r or \n)."""
        entry = self._entries.get(path)
        if entry is None or (entry[0] is not text and entry[0] != text):
            # rare "\r": old Mac or Windows line ends, split properly; else a plain split at C speed
            entry = (text, split_lines(text) if "\r" in text else text.split("\n"))
            self._entries[path] = entry
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(path)
        return entry[1]

    def line(self, path: str, text: str, index: int) -> str:
        """Line `index` of `text` without its break; "" past the end."""
        lines = self.lines(path, text)
        return lines[index] if 0 <= index < len(lines) else ""
