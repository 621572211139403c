"""One LSP session: a pygls server object per connection, its features derived from the registry.

Every request becomes a core execution; results and errors go back through `translators.lsp` and the
LSP error table. Document sync goes into the core's shared document store, so MCP and REST callers see
the editor's unsaved text, and edits by other doors refresh this editor's diagnostics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from cattrs import Converter
from lsprotocol import types as lsp
from pydantic import BaseModel
from pygls.exceptions import FeatureRequestError, JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import default_converter
from pygls.protocol.language_server import lsp_method

from gateway import __version__
from gateway.analysis import models
from gateway.errors import GatewayError, Unauthorized
from gateway.execution import CallContext, ProgressReport
from gateway.identity import Identity
from gateway.registry import Door
from gateway.workspace import Document, TextChange
from protocols.jsonrpc import FastDispatch
from translators.errors import lsp_code
from translators.lsp import LspConverter, uri_to_path
from translators.positions import Encoding

if TYPE_CHECKING:
    from .collab import LspReplica
    from .door import LspDoor

log = logging.getLogger("gateway.lsp")

T = TypeVar("T")
COMMAND_PREFIX = "gateway."
DIAGNOSTICS_DEBOUNCE = 0.15
COMPLETION_LIMIT = 1000


SYNC_METHODS = frozenset({lsp.TEXT_DOCUMENT_DID_OPEN, lsp.TEXT_DOCUMENT_DID_CHANGE, lsp.TEXT_DOCUMENT_DID_CLOSE})


@contextlib.contextmanager
def rpc_errors(what: str) -> Iterator[None]:
    """Core errors become JSON-RPC errors by the LSP table; anything unexpected a generic -32603 (the
    details stay in the log): never a traceback on the wire."""
    try:
        yield
    except GatewayError as exc:
        raise JsonRpcException(message=exc.message, code=lsp_code(exc)) from None
    except (asyncio.CancelledError, JsonRpcException):
        raise
    except Exception:
        log.exception("lsp: %s failed", what)
        raise JsonRpcException(message="internal error; see the gateway log", code=-32603) from None


def _plain(
    method: Callable[[Any], Awaitable[Any]], session: GatewaySession | None = None
) -> Callable[[Any], Awaitable[Any]]:
    """A plain function around a bound method (pygls stores attributes on its handlers). With `session`,
    the request waits for pending document sync first and can be cancelled by `$/cancelRequest`."""

    async def handler(params: Any) -> Any:
        with rpc_errors(getattr(method, "__name__", "handler")):
            if session is None:
                return await method(params)
            async with session.in_flight():
                await session.synced()
                return await method(params)

    handler.__name__ = getattr(method, "__name__", "handler")
    return handler


_CONVERTER: Converter | None = None


def _shared_converter() -> Converter:
    """One cattrs converter for every session: pygls builds one per server object (~230 KiB each), and all
    sessions structure the same message types."""
    global _CONVERTER
    if _CONVERTER is None:
        _CONVERTER = default_converter()  # type: ignore[no-untyped-call]
    return _CONVERTER


class SessionProtocol(FastDispatch):
    """pygls' protocol, except that `exit` ends this session instead of the whole process."""

    def handle_message(self, message: Any) -> None:
        """Document sync is applied in arrival order, before any later request runs (pygls would run
        its notification handlers a step later than requests that arrive right after them)."""
        server = self._server
        method = getattr(message, "method", None)
        if method in SYNC_METHODS and isinstance(server, GatewaySession) and not self._shutdown:
            server.sync(method, message.params)
            return
        super().handle_message(message)

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        # pygls cancels only the outer future of generator-based methods (workspace/executeCommand), not
        # the handler it runs; cancel our own task for the request too, so the execution stops.
        server = self._server
        if isinstance(server, GatewaySession):
            task = server.requests.pop(msg_id, None)
            if task is not None:
                task.cancel()
        super()._handle_cancel_notification(msg_id)

    _initialize_id: Any = None

    @lsp_method(lsp.INITIALIZE)
    def lsp_initialize(self, params: lsp.InitializeParams) -> Generator[Any, Any, lsp.InitializeResult]:
        """pygls' initialize, remembering the request id so the answer can be noticed going out."""
        self._initialize_id = self.msg_id
        result: lsp.InitializeResult = yield from super().lsp_initialize(params)
        return result

    def _send_response(self, msg_id: Any, result: Any | None = None, error: Any | None = None) -> None:
        """Once the initialize result is written, the gateway starts its deferred background work."""
        super()._send_response(msg_id, result, error)
        if msg_id is not None and msg_id == self._initialize_id:
            self._initialize_id = None
            server = self._server
            if isinstance(server, GatewaySession):
                server.gw.ready()

    @lsp_method(lsp.SHUTDOWN)
    def lsp_shutdown(self, *args: Any) -> Generator[Any, Any, None]:
        """Cancel in-flight requests over a copy: cancelling one removes it from the dict (pygls bug)."""
        current = self.msg_id
        for msg_id, future in list(self._request_futures.items()):
            if msg_id != current and not future.done():
                future.cancel()
        self._shutdown = True
        yield from ()

    @lsp_method(lsp.EXIT)
    def lsp_exit(self, *args: Any) -> Generator[Any, Any, None]:
        server = self._server
        if isinstance(server, GatewaySession):
            server.end(0 if self._shutdown else 1)
        yield from ()


class GatewaySession(LanguageServer):
    """The LSP server object of one connection."""

    def __init__(self, door: LspDoor, identity: Identity, transport: str) -> None:
        super().__init__(
            "gateway",
            __version__,
            text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental,
            protocol_cls=SessionProtocol,
            converter_factory=_shared_converter,
        )
        self.door = door
        self.gw = door.gw
        self.identity = identity
        self.transport = transport
        self.session_id = uuid.uuid4().hex[:12]
        self.open_paths: set[str] = set()
        self.ended = asyncio.Event()
        self.exit_code: int | None = None
        self.pull_diagnostics = False
        self._diagnostic_tasks: dict[str, asyncio.Task[None]] = {}
        self._watch_task: asyncio.Task[None] | None = None
        self._closing: asyncio.Future[Any] | None = None
        self._sync_tail: asyncio.Future[None] | None = None
        self.requests: dict[Any, asyncio.Task[Any]] = {}
        self.replicas: dict[str, LspReplica] = {}  # path -> the CRDT replica of the editor's buffer
        self._converter: LspConverter | None = None
        self._register()

    # -- lifecycle ---------------------------------------------------------------------------------
    def end(self, code: int = 0) -> None:
        """Finish this session (exit, disconnect or a failed initialize); other sessions are untouched."""
        if self.ended.is_set():
            return
        self.exit_code = code
        self.ended.set()
        writer = self.protocol.writer
        if writer is not None:
            with contextlib.suppress(Exception):
                res = writer.close()
                if res is not None:
                    self._closing = asyncio.ensure_future(res)

    async def cleanup(self) -> None:
        """Release what the session held: its open documents, timers and the bus subscription."""
        self.gw.registry.off_change(self._registry_changed)
        for task in [*self._diagnostic_tasks.values(), self._watch_task]:
            if task is not None:
                task.cancel()
        for replica in self.replicas.values():
            replica.close()
        self.replicas.clear()
        for path in list(self.open_paths):
            await self.door.release_document(self, path)
        self.open_paths.clear()

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Log out-of-band errors and tell the client in its log, never with a traceback.

        Request errors already went back as the response; they are not repeated.
        """
        if source is FeatureRequestError:
            log.debug("lsp session %s: request failed: %s", self.session_id, error)
            return
        log.warning("lsp session %s: %s", self.session_id, error)
        with contextlib.suppress(Exception):
            self.window_log_message(lsp.LogMessageParams(type=lsp.MessageType.Warning, message=str(error)[:500]))

    # -- helpers ---------------------------------------------------------------------------------------
    @property
    def encoding(self) -> Encoding:
        kind = self.workspace.position_encoding if self.protocol._workspace is not None else None
        value = str(getattr(kind, "value", kind) or "utf-16")
        return value if value in ("utf-8", "utf-16", "utf-32") else "utf-16"  # type: ignore[return-value]

    def converter(self) -> LspConverter:
        """The converter for this session's position encoding (made once per encoding: it keeps no state).
        Line texts come from the store (open documents) or the disk (the workspace keeps the lines of
        recently converted files)."""
        encoding = self.encoding
        made = self._converter
        if made is not None and made.encoding == encoding:
            return made
        workspace = self.gw.workspace
        made = self._converter = LspConverter.for_root(str(workspace.root), encoding, workspace.line_text)
        return made

    def converter_for(self, scratch: Document) -> LspConverter:
        """A converter whose line texts are those of `scratch` (the editor's buffer, not the store's)."""
        return LspConverter.for_root(str(self.gw.workspace.root), self.encoding, lambda _p, line: scratch.line(line))

    def supports_apply_edit(self) -> bool:
        """Whether the editor takes `workspace/applyEdit` with versioned document changes."""
        return self._supports("workspace", "apply_edit") and self._supports(
            "workspace", "workspace_edit", "document_changes"
        )

    def path_of(self, uri: str) -> str | None:
        return uri_to_path(str(self.gw.workspace.root), uri)

    def call(self, *, progress_token: lsp.ProgressToken | None = None) -> CallContext:
        on_progress = None
        if progress_token is not None:
            token = progress_token

            def on_progress(report: ProgressReport) -> None:
                self._progress_report(token, report)

        return CallContext(
            identity=self.identity, door=Door.LSP, on_progress=on_progress, meta={"session": self.session_id}
        )

    async def run(
        self, capability: str, params: dict[str, Any], progress_token: lsp.ProgressToken | None = None
    ) -> Any:
        """Execute a capability for this session; core errors become JSON-RPC errors (no traceback)."""
        if progress_token is not None:
            self._progress_begin(progress_token, capability)
        try:
            with rpc_errors(capability):
                return await self.gw.core.execute(self.call(progress_token=progress_token), capability, params)
        finally:
            if progress_token is not None:
                self._progress_end(progress_token)

    def _progress_begin(self, token: lsp.ProgressToken, title: str) -> None:
        with contextlib.suppress(Exception):
            self.work_done_progress.begin(token, lsp.WorkDoneProgressBegin(title=title, cancellable=True))

    def _progress_report(self, token: lsp.ProgressToken, report: ProgressReport) -> None:
        pct = int(report.percentage) if report.percentage is not None else None
        with contextlib.suppress(Exception):
            self.work_done_progress.report(token, lsp.WorkDoneProgressReport(message=report.message, percentage=pct))

    def _progress_end(self, token: lsp.ProgressToken) -> None:
        with contextlib.suppress(Exception):
            self.work_done_progress.end(token, lsp.WorkDoneProgressEnd())

    def _supports(self, *path: str) -> bool:
        node: Any = self.client_capabilities
        for part in path:
            node = getattr(node, part, None)
            if node is None:
                return False
        return bool(node)

    # -- features ----------------------------------------------------------------------------------
    def _register(self) -> None:
        registry = self.gw.registry
        methods = {c.lsp_method: c.name for c in registry.for_door(Door.LSP) if c.lsp_method}
        self.feature(lsp.INITIALIZE)(_plain(self._initialize))
        self.feature(lsp.INITIALIZED)(_plain(self._initialized))
        self.feature(lsp.TEXT_DOCUMENT_DID_SAVE)(_plain(self._did_save))
        table: dict[str, tuple[str, Callable[..., Any], Any]] = {
            "textDocument/completion": (
                lsp.TEXT_DOCUMENT_COMPLETION,
                self._completion,
                lsp.CompletionOptions(trigger_characters=["."], resolve_provider=True),
            ),
            "textDocument/hover": (lsp.TEXT_DOCUMENT_HOVER, self._hover, None),
            "textDocument/definition": (lsp.TEXT_DOCUMENT_DEFINITION, self._definition, None),
            "textDocument/references": (lsp.TEXT_DOCUMENT_REFERENCES, self._references, None),
            "textDocument/implementation": (lsp.TEXT_DOCUMENT_IMPLEMENTATION, self._implementation, None),
            "textDocument/documentSymbol": (lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL, self._document_symbol, None),
            "workspace/symbol": (lsp.WORKSPACE_SYMBOL, self._workspace_symbol, None),
            "textDocument/signatureHelp": (
                lsp.TEXT_DOCUMENT_SIGNATURE_HELP,
                self._signature_help,
                lsp.SignatureHelpOptions(trigger_characters=["(", ","]),
            ),
            "textDocument/rename": (
                lsp.TEXT_DOCUMENT_RENAME,
                self._rename,
                lsp.RenameOptions(prepare_provider=True),
            ),
            "textDocument/prepareCallHierarchy": (
                lsp.TEXT_DOCUMENT_PREPARE_CALL_HIERARCHY,
                self._prepare_call_hierarchy,
                None,
            ),
            "textDocument/inlineCompletion": (
                lsp.TEXT_DOCUMENT_INLINE_COMPLETION,
                self._inline_completion,
                lsp.InlineCompletionOptions(),
            ),
            "textDocument/diagnostic": (
                lsp.TEXT_DOCUMENT_DIAGNOSTIC,
                self._pull_diagnostics,
                lsp.DiagnosticOptions(inter_file_dependencies=True, workspace_diagnostics=False),
            ),
        }
        for method, (lsp_name, handler, options) in table.items():
            if method not in methods:
                continue
            self.feature(lsp_name, options)(_plain(handler, self))
        if "textDocument/completion" in methods:
            self.feature(lsp.COMPLETION_ITEM_RESOLVE)(_plain(self._completion_resolve, self))
        if "textDocument/rename" in methods:
            self.feature(lsp.TEXT_DOCUMENT_PREPARE_RENAME)(_plain(self._prepare_rename, self))
        if "textDocument/prepareCallHierarchy" in methods:
            self.feature(lsp.CALL_HIERARCHY_INCOMING_CALLS)(_plain(self._incoming_calls, self))
            self.feature(lsp.CALL_HIERARCHY_OUTGOING_CALLS)(_plain(self._outgoing_calls, self))
        self.feature(lsp.TEXT_DOCUMENT_CODE_ACTION)(_plain(self._code_action, self))
        for cap in registry.for_door(Door.LSP):
            self.command(COMMAND_PREFIX + cap.name)(self._command_handler(cap.name))
        registry.on_change(self._registry_changed)

    def _registry_changed(self) -> None:
        """Capabilities that arrive later (federated tools, agents) become commands of this session too;
        a client that registers capabilities dynamically is told about them."""
        commands = self.protocol.fm.commands
        wanted = {COMMAND_PREFIX + cap.name: cap.name for cap in self.gw.registry.for_door(Door.LSP)}
        added = [name for name in wanted if name not in commands]
        for name in added:
            self.command(name)(self._command_handler(wanted[name]))
        for name in [n for n in commands if n.startswith(COMMAND_PREFIX) and n not in wanted]:
            del commands[name]  # withdrawn: executing it now answers "method not found"
        if (
            added
            and self.protocol._workspace is not None
            and self._supports("workspace", "execute_command", "dynamic_registration")
        ):
            registration = lsp.Registration(
                id=f"gateway-commands-{uuid.uuid4().hex[:8]}",
                method=lsp.WORKSPACE_EXECUTE_COMMAND,
                register_options=lsp.ExecuteCommandRegistrationOptions(commands=added),
            )
            with contextlib.suppress(Exception):
                self.client_register_capability(lsp.RegistrationParams(registrations=[registration]))

    async def _initialize(self, params: lsp.InitializeParams) -> None:
        options = params.initialization_options if isinstance(params.initialization_options, dict) else {}
        if self.door.auth_required(self.transport) and not self.identity.authenticated:
            token = options.get("token") if isinstance(options.get("token"), str) else None
            try:
                self.identity = self.gw.authenticator.authenticate(f"Bearer {token}" if token else None)
            except Unauthorized as exc:
                asyncio.get_running_loop().call_later(0.05, self.end, 1)
                raise JsonRpcException(message=f"unauthorized: {exc.message}", code=-32001) from None
        # Pull only from clients that pull and can be told to pull again (refresh); push to the others,
        # and then do not advertise pull at all, or they would show both.
        self.pull_diagnostics = self._supports("text_document", "diagnostic") and self._supports(
            "workspace", "diagnostics", "refresh_support"
        )
        if not self.pull_diagnostics:
            self.protocol.fm.features.pop(lsp.TEXT_DOCUMENT_DIAGNOSTIC, None)
            self.protocol.fm.feature_options.pop(lsp.TEXT_DOCUMENT_DIAGNOSTIC, None)

    async def _initialized(self, params: lsp.InitializedParams) -> None:
        self._watch_task = asyncio.create_task(self._watch_documents())

    async def _watch_documents(self) -> None:
        """Refresh this editor's diagnostics when another door edits a document it has open."""
        with self.gw.bus.subscribe("documents") as sub:
            async for event in sub:
                path = event.data.get("path")
                if path in self.open_paths and event.data.get("session") != self.session_id:
                    self._schedule_diagnostics(path, refresh=True)

    # -- document sync ---------------------------------------------------------------------------------
    def sync(self, method: str, params: Any) -> None:
        """Queue a didOpen/didChange/didClose behind the ones before it; requests wait for the queue."""
        handler: Callable[[Any], Awaitable[None]] = {
            lsp.TEXT_DOCUMENT_DID_OPEN: self._did_open,
            lsp.TEXT_DOCUMENT_DID_CHANGE: self._did_change,
            lsp.TEXT_DOCUMENT_DID_CLOSE: self._did_close,
        }[method]  # type: ignore[assignment]
        previous = self._sync_tail

        async def step() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            try:
                await handler(params)
            except Exception:
                log.exception("lsp: %s failed", method)

        self._sync_tail = asyncio.ensure_future(step())

    @contextlib.asynccontextmanager
    async def in_flight(self) -> AsyncIterator[None]:
        """Track the current request's task by its JSON-RPC id so `$/cancelRequest` can reach it."""
        msg_id = self.protocol.msg_id
        task = asyncio.current_task()
        if msg_id is not None and task is not None:
            self.requests[msg_id] = task
        try:
            yield
        finally:
            if msg_id is not None:
                self.requests.pop(msg_id, None)

    async def synced(self) -> None:
        """Wait until every document notification received so far has been applied."""
        tail = self._sync_tail
        if tail is not None and not tail.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(tail)

    async def _did_open(self, params: lsp.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        path = self.path_of(item.uri)
        if path is None:
            self.window_log_message(
                lsp.LogMessageParams(type=lsp.MessageType.Info, message=f"{item.uri} is outside the workspace")
            )
            return
        shared = await self.door.acquire_document(self, path, item.text, item.version, item.language_id)
        if shared is not None:
            from .collab import LspReplica  # pycrdt loads with the first document, not at start-up

            old = self.replicas.pop(path, None)
            if old is not None:
                old.close()
            self.replicas[path] = LspReplica(self, shared, item.uri, item.text, item.version)
        self._schedule_diagnostics(path)

    async def _did_change(self, params: lsp.DidChangeTextDocumentParams) -> None:
        path = self.path_of(params.text_document.uri)
        if path is None or path not in self.open_paths:
            return
        replica = self.replicas.get(path)
        if replica is None:
            return
        edits = self._edits_from_lsp(path, replica.client_text, params.content_changes)
        update = replica.editor_changed(params.text_document.version, edits)
        if update is not None:
            await replica.merge(update)
        self._schedule_diagnostics(path)

    def _edits_from_lsp(self, path: str, text: str, changes: Any) -> list[tuple[int, int, str]]:
        """LSP content changes (client encoding, each against the text before it) as code-point edits."""
        scratch = Document(path, text, 0, "")
        conv = self.converter_for(scratch)  # reads the scratch's lines as each change applies
        out: list[tuple[int, int, str]] = []
        for change in changes:
            if isinstance(change, lsp.TextDocumentContentChangePartial):
                rng = conv.range_from_lsp(path, change.range)
                start = scratch.offset_at(rng.start)
                end = max(start, scratch.offset_at(rng.end))
                core_change = TextChange(range=rng, text=change.text)
            else:
                start, end = 0, len(scratch.text)
                core_change = TextChange(text=change.text)
            scratch.apply([core_change])
            out.append((start, end, change.text))
        return out

    async def _did_close(self, params: lsp.DidCloseTextDocumentParams) -> None:
        path = self.path_of(params.text_document.uri)
        if path is None or path not in self.open_paths:
            return
        task = self._diagnostic_tasks.pop(path, None)
        if task is not None:
            task.cancel()
        replica = self.replicas.pop(path, None)
        if replica is not None:
            replica.close()
        await self.door.release_document(self, path)
        if not self.pull_diagnostics:
            self.text_document_publish_diagnostics(
                lsp.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[])
            )

    async def _did_save(self, params: lsp.DidSaveTextDocumentParams) -> None:
        path = self.path_of(params.text_document.uri)
        if path is not None and path in self.open_paths:
            self._schedule_diagnostics(path)

    # -- diagnostics -------------------------------------------------------------------------------------
    def _schedule_diagnostics(self, path: str, *, refresh: bool = False) -> None:
        """Push fresh diagnostics (debounced), or for a pulling client ask it to pull again when another
        door changed the document (it pulls on its own edits by itself)."""
        if self.pull_diagnostics:
            if refresh:
                with contextlib.suppress(Exception):
                    self.workspace_diagnostic_refresh(None)
            return
        old = self._diagnostic_tasks.get(path)
        if old is not None:
            old.cancel()
        self._diagnostic_tasks[path] = asyncio.create_task(self._publish_diagnostics(path))

    async def _publish_diagnostics(self, path: str) -> None:
        await asyncio.sleep(DIAGNOSTICS_DEBOUNCE)  # debounce: a burst of edits gets one computation
        stored = self.gw.workspace.documents.get(path)
        result_text = stored.text if stored is not None else None
        try:
            result = await self.gw.core.execute(self.call(), "diagnostics", {"path": path, "limit": 1000})
        except GatewayError as exc:
            log.debug("diagnostics for %s failed: %s", path, exc.message)
            return
        data = result.model_dump()
        conv = self.converter()
        diagnostics = [conv.diagnostic_to_lsp(path, models.Diagnostic.model_validate(d)) for d in data["items"]]
        replica = self.replicas.get(path)
        # The version is the editor's own, and only when its buffer holds exactly the text diagnosed.
        version = replica.client_version if replica is not None and replica.client_text == result_text else None
        self.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=conv.uri_of_path(path), diagnostics=diagnostics, version=version)
        )

    async def _pull_diagnostics(self, params: lsp.DocumentDiagnosticParams) -> lsp.RelatedFullDocumentDiagnosticReport:
        path = self._require_path(params.text_document.uri)
        result = await self.run("diagnostics", {"path": path, "limit": 1000}, params.work_done_token)
        conv = self.converter()
        items = [conv.diagnostic_to_lsp(path, d) for d in result.items]
        return lsp.RelatedFullDocumentDiagnosticReport(items=items)

    # -- requests ------------------------------------------------------------------------------------------
    def _require_path(self, uri: str) -> str:
        path = self.path_of(uri)
        if path is None:
            raise JsonRpcException(message=f"{uri} is outside the workspace", code=-32602)
        return path

    def _position_params(self, doc: lsp.TextDocumentIdentifier, pos: lsp.Position) -> dict[str, Any]:
        path = self._require_path(doc.uri)
        core = self.converter().position_from_lsp(path, pos)
        return {"path": path, "line": core.line, "character": core.character}

    async def _completion(self, params: lsp.CompletionParams) -> lsp.CompletionList:
        args = self._position_params(params.text_document, params.position)
        result = await self.run("complete", {**args, "limit": COMPLETION_LIMIT}, params.work_done_token)
        conv = self.converter()
        items = []
        for item in result.items:
            lsp_item = conv.completion_item_to_lsp(args["path"], item)
            lsp_item.data = {"path": args["path"], "line": args["line"], "character": args["character"]}
            items.append(lsp_item)
        items.extend(await self._ai_completion_items(args))
        return lsp.CompletionList(is_incomplete=result.next_cursor is not None, items=items)

    async def _inline_completion(self, params: lsp.InlineCompletionParams) -> lsp.InlineCompletionList:
        """AI inline completion (advertised only when a completion model is configured)."""
        args = self._position_params(params.text_document, params.position)
        result = await self.run("complete_inline", args, params.work_done_token)
        conv = self.converter()
        return lsp.InlineCompletionList(
            items=[
                lsp.InlineCompletionItem(
                    insert_text=item.insert_text, range=conv.range_to_lsp(args["path"], item.range)
                )
                for item in result.items
            ]
        )

    async def _ai_completion_items(self, args: dict[str, Any]) -> list[lsp.CompletionItem]:
        """The inline completion as ordinary completion items, when configured to add it."""
        config = self.gw.config.inline_completion
        if not config.add_to_completion_list or "complete_inline" not in self.gw.registry:
            return []
        try:
            result = await self.gw.core.execute(self.call(), "complete_inline", args)
        except GatewayError:
            return []
        conv = self.converter()
        items = []
        for item in result.model_dump()["items"]:
            text = item["insert_text"]
            rng = conv.range_to_lsp(args["path"], models.Range.model_validate(item["range"]))
            items.append(
                lsp.CompletionItem(
                    label=text.splitlines()[0][:60] if text.strip() else text,
                    kind=lsp.CompletionItemKind.Snippet,
                    detail="AI completion",
                    text_edit=lsp.TextEdit(range=rng, new_text=text),
                    sort_text="~",
                )
            )
        return items

    async def _completion_resolve(self, item: lsp.CompletionItem) -> lsp.CompletionItem:
        return item  # items already carry their detail and documentation

    async def _hover(self, params: lsp.HoverParams) -> lsp.Hover | None:
        args = self._position_params(params.text_document, params.position)
        result = await self.run("hover", args, params.work_done_token)
        if result.hover is None:
            return None
        return self.converter().hover_to_lsp(args["path"], result.hover)

    async def _locations(self, capability: str, args: dict[str, Any], token: Any) -> list[lsp.Location]:
        items: list[lsp.Location] = []
        cursor = None
        conv = self.converter()
        while True:
            result = await self.run(capability, {**args, "limit": 1000, "cursor": cursor}, token)
            items.extend(conv.location_to_lsp(loc) for loc in result.items)
            cursor = result.next_cursor
            if cursor is None:
                return items

    async def _definition(self, params: lsp.DefinitionParams) -> list[lsp.Location]:
        args = self._position_params(params.text_document, params.position)
        return await self._locations("definition", args, params.work_done_token)

    async def _implementation(self, params: lsp.ImplementationParams) -> list[lsp.Location]:
        args = self._position_params(params.text_document, params.position)
        return await self._locations("implementations", args, params.work_done_token)

    async def _references(self, params: lsp.ReferenceParams) -> list[lsp.Location]:
        args = self._position_params(params.text_document, params.position)
        args["include_declaration"] = params.context.include_declaration
        return await self._locations("references", args, params.work_done_token)

    async def _document_symbol(
        self, params: lsp.DocumentSymbolParams
    ) -> list[lsp.DocumentSymbol] | list[lsp.SymbolInformation]:
        path = self._require_path(params.text_document.uri)
        result = await self.run("document_symbols", {"path": path, "limit": 1000}, params.work_done_token)
        conv = self.converter()
        if self._supports("text_document", "document_symbol", "hierarchical_document_symbol_support"):
            return [conv.document_symbol_to_lsp(path, s) for s in result.items]
        flat: list[lsp.SymbolInformation] = []

        def walk(symbol: models.DocumentSymbol, container: str | None) -> None:
            info = models.SymbolInfo(
                name=symbol.name,
                kind=symbol.kind,
                location=models.Location(path=path, range=symbol.selection_range),
                container=container,
            )
            flat.append(conv.symbol_info_to_lsp(info))
            for child in symbol.children:
                walk(child, symbol.name if container is None else f"{container}.{symbol.name}")

        for symbol in result.items:
            walk(symbol, None)
        return flat

    async def _workspace_symbol(self, params: lsp.WorkspaceSymbolParams) -> list[lsp.SymbolInformation]:
        result = await self.run("workspace_symbols", {"query": params.query, "limit": 1000}, params.work_done_token)
        conv = self.converter()
        return [conv.symbol_info_to_lsp(s) for s in result.items]

    async def _signature_help(self, params: lsp.SignatureHelpParams) -> lsp.SignatureHelp | None:
        args = self._position_params(params.text_document, params.position)
        result = await self.run("signature_help", args, params.work_done_token)
        if result.signature_help is None:
            return None
        return self.converter().signature_help_to_lsp(result.signature_help)

    async def _prepare_rename(self, params: lsp.PrepareRenameParams) -> lsp.Range | None:
        args = self._position_params(params.text_document, params.position)
        doc = self.gw.workspace.snapshot(args["path"])
        line = Document(doc.path, doc.text, 0, "").line(args["line"])
        start = end = min(args["character"], len(line))
        while start > 0 and (line[start - 1].isalnum() or line[start - 1] == "_"):
            start -= 1
        while end < len(line) and (line[end].isalnum() or line[end] == "_"):
            end += 1
        if start == end:
            return None
        rng = models.Range(
            start=models.Position(line=args["line"], character=start),
            end=models.Position(line=args["line"], character=end),
        )
        return self.converter().range_to_lsp(args["path"], rng)

    async def _rename(self, params: lsp.RenameParams) -> lsp.WorkspaceEdit | None:
        args = self._position_params(params.text_document, params.position)
        result = await self.run("rename", {**args, "new_name": params.new_name}, params.work_done_token)
        if result.edit is None:
            return None
        edit = result.edit
        for path in list(edit.versions):
            # The store counts its own versions; this editor knows its documents by the versions it sent.
            replica = self.replicas.get(path)
            stored = self.gw.workspace.documents.get(path)
            if (
                replica is not None
                and stored is not None
                and stored.version == edit.versions[path]
                and replica.client_text == stored.text
            ):
                edit.versions[path] = replica.client_version
        return self.converter().workspace_edit_to_lsp(edit)

    async def _prepare_call_hierarchy(
        self, params: lsp.CallHierarchyPrepareParams
    ) -> list[lsp.CallHierarchyItem] | None:
        args = self._position_params(params.text_document, params.position)
        rng = await self._prepare_rename(
            lsp.PrepareRenameParams(text_document=params.text_document, position=params.position)
        )
        if rng is None:
            return None
        doc = self.gw.workspace.snapshot(args["path"])
        line_text = Document(doc.path, doc.text, 0, "").line(args["line"])
        conv = self.converter()
        core = conv.range_from_lsp(args["path"], rng)
        name = line_text[core.start.character : core.end.character]
        return [
            lsp.CallHierarchyItem(
                name=name,
                kind=lsp.SymbolKind.Function,
                uri=params.text_document.uri,
                range=rng,
                selection_range=rng,
                data=args,
            )
        ]

    async def _calls(self, item: lsp.CallHierarchyItem, direction: str, token: Any) -> list[Any]:
        data = item.data if isinstance(item.data, dict) else None
        if data is None:
            path = self._require_path(item.uri)
            pos = self.converter().position_from_lsp(path, item.selection_range.start)
            data = {"path": path, "line": pos.line, "character": pos.character}
        result = await self.run("call_hierarchy", {**data, "direction": direction, "limit": 1000}, token)
        conv = self.converter()
        out: list[Any] = []
        for call in result.items:
            target = conv.call_hierarchy_item_to_lsp(call.item)
            if direction == "incoming":
                ranges = [conv.range_to_lsp(call.item.path, r) for r in call.from_ranges]
                out.append(lsp.CallHierarchyIncomingCall(from_=target, from_ranges=ranges))
            else:
                ranges = [conv.range_to_lsp(data["path"], r) for r in call.from_ranges]
                out.append(lsp.CallHierarchyOutgoingCall(to=target, from_ranges=ranges))
        return out

    async def _incoming_calls(
        self, params: lsp.CallHierarchyIncomingCallsParams
    ) -> list[lsp.CallHierarchyIncomingCall]:
        return await self._calls(params.item, "incoming", params.work_done_token)

    async def _outgoing_calls(
        self, params: lsp.CallHierarchyOutgoingCallsParams
    ) -> list[lsp.CallHierarchyOutgoingCall]:
        return await self._calls(params.item, "outgoing", params.work_done_token)

    async def _code_action(self, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        """Offer the registry's tools tagged `code_action` for the file (and position) at hand."""
        path = self.path_of(params.text_document.uri)
        if path is None:
            return []
        start = self.converter().position_from_lsp(path, params.range.start)
        actions = []
        for cap in self.gw.registry.for_door(Door.LSP):
            if "code_action" not in cap.tags:
                continue
            fields = cap.params_model.model_fields
            args: dict[str, Any] = {"path": path} if "path" in fields else {}
            if "line" in fields and "character" in fields:
                args.update(line=start.line, character=start.character)
            if "input" in fields and "context" in fields:  # an agent: tell it where the editor is
                where = {"path": path, "line": start.line, "character": start.character}
                args.update(input=f"Work on {path} around line {start.line + 1}.", context=where)
            actions.append(
                lsp.CodeAction(
                    title=cap.summary,
                    kind=lsp.CodeActionKind.Source,
                    command=lsp.Command(title=cap.summary, command=COMMAND_PREFIX + cap.name, arguments=[args]),
                )
            )
        return actions

    def _command_handler(self, capability: str) -> Callable[..., Awaitable[Any]]:
        async def handler(*args: Any) -> Any:
            async with self.in_flight():
                await self.synced()
                return await run_command(*args)

        async def run_command(*args: Any) -> Any:
            params = args[0] if args and isinstance(args[0], dict) else {}
            token: lsp.ProgressToken | None = None
            if self._supports("window", "work_done_progress"):
                token = f"gateway-{uuid.uuid4().hex}"
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.work_done_progress.create_async(token), 5)
            result = await self.run(capability, params, token)
            return result.model_dump(mode="json") if isinstance(result, BaseModel) else result

        handler.__name__ = f"command_{capability}"
        return handler
