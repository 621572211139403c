"""The MCP door: the gateway's capabilities as tools, documents as resources, config prompts as prompts.

One lowlevel SDK `Server` (the registry of handlers) serves every MCP connection of the process: the
stdio door (`gateway mcp`) and streamable HTTP at `/mcp` (see `protocols.mcp.http`). The SDK's runner
serves both protocol eras on each: a client that opens with `initialize` gets a 2025-era session, one
whose first request carries the 2026-07-28 `_meta` envelope is served per request.

Every `tools/call` is `core.execute(CallContext(identity, Door.MCP, on_progress, peer), name, arguments)`.
Change notifications reach 2025-era sessions as notifications on their standalone channel (the GET
stream over HTTP), and 2026-07-28 clients through the `subscriptions/listen` streams they open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import mcp_types as types
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.runner import serve_dual_era_loop
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp.shared.tool_name_validation import validate_and_warn_tool_name
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

from gateway import __version__
from gateway.app import Gateway
from gateway.errors import GatewayError
from gateway.events import Event
from gateway.execution import CallContext
from gateway.identity import ANONYMOUS, LOCAL_OWNER, LOCAL_PROCESS, Identity
from gateway.registry import Capability, Door
from translators.errors import MCP_INTERNAL_ERROR, MCP_INVALID_PARAMS

from .peer import SessionPeer, SessionState, log_level
from .providers import ConfigPrompts, PromptProvider, ResourceProvider, WorkspaceResources, as_model
from .translate import (
    ProgressCounter,
    capability_tool,
    header_checked_schema,
    page,
    protocol_error,
    tool_error_result,
    tool_result,
    unknown,
    upstream_error,
)

log = logging.getLogger("gateway.mcp")

IDENTITY_SCOPE_KEY = "gateway.identity"
"""Where the HTTP door puts the caller's `Identity` in the ASGI scope."""
DOCUMENT_TOPIC = "documents"
PAGE_SIZE = 100
PROGRESS_QUEUE = 256
NOTIFY_TIMEOUT_SECONDS = 10.0

# Keys of CallContext.meta that federated tools read (protocols.mcp_client): the 2026-07-28 multi-round
# input flow of the calling client, passed through to an upstream.
META_INPUT_RESPONSES = "mcp.input_responses"
META_REQUEST_STATE = "mcp.request_state"
META_INPUT_REQUIRED = "mcp.input_required"
META_CLIENT_CAPABILITIES = "mcp.client_capabilities"

INSTRUCTIONS = (
    "A code-intelligence gateway over one workspace. Tools read, list and search files, open and edit "
    "documents (shared with editors, unsaved text included) and answer code questions (diagnostics, "
    "definitions, references, symbols, completion, hover, rename). Paths are relative to the workspace root; "
    "positions are 0-based lines and characters. Open documents are resources; any file is readable through "
    "the workspace-file resource template."
)


class _GatewayServer(Server[Any]):
    """The lowlevel server, advertising `listChanged` for tools, resources and prompts to 2025-era clients."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        """As the SDK's, with every list-changed notification on (the door sends them)."""
        options = notification_options or NotificationOptions(
            prompts_changed=True, resources_changed=True, tools_changed=True
        )
        return super().create_initialization_options(options, experimental_capabilities, extensions)


def _connection(ctx: ServerRequestContext[Any, Any]) -> Connection | None:
    # The SDK's request context exposes the session proxy but not (yet) its Connection; the connection's
    # exit stack is the only end-of-connection hook, so read it from the proxy.
    conn = getattr(ctx.session, "_connection", None)
    return conn if isinstance(conn, Connection) else None


class McpDoor:
    """Shared state of all MCP connections of one gateway; owns the lowlevel `Server`."""

    def __init__(self, gw: Gateway, *, page_size: int = PAGE_SIZE) -> None:
        self.gw = gw
        self.core = gw.core
        self.page_size = page_size
        self.workspace_resources = WorkspaceResources(gw.core, gw.config.mcp.resource_max_bytes)
        self._resource_providers: list[ResourceProvider] = [self.workspace_resources]
        self._prompt_providers: list[PromptProvider] = [ConfigPrompts(gw.config.mcp)]
        self._sessions: dict[int, tuple[Connection, SessionState]] = {}
        self._subscribers: dict[str, int] = {}
        self.listen_bus = InMemorySubscriptionBus()
        self._listen = ListenHandler(self.listen_bus)
        self._tools: list[types.Tool] | None = None
        self._pending: set[str] = set()
        self._pending_uris: set[str] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False
        self.server = self._build_server()
        gw.registry.on_change(self._registry_changed)

    # -- the SDK server --------------------------------------------------------------------------------
    def _build_server(self) -> _GatewayServer:
        server = _GatewayServer(
            "gateway",
            version=__version__,
            title="Gateway",
            instructions=INSTRUCTIONS,
            get_tool_input_schema=self._input_schema,
        )
        add = server.add_request_handler
        add("tools/list", types.PaginatedRequestParams, self._list_tools)
        add("tools/call", types.CallToolRequestParams, self._call_tool)
        add("resources/list", types.PaginatedRequestParams, self._list_resources)
        add("resources/templates/list", types.PaginatedRequestParams, self._list_templates)
        add("resources/read", types.ReadResourceRequestParams, self._read_resource)
        add("resources/subscribe", types.SubscribeRequestParams, self._subscribe)
        add("resources/unsubscribe", types.UnsubscribeRequestParams, self._unsubscribe)
        add("subscriptions/listen", types.SubscriptionsListenRequestParams, self._listen_stream)
        add("prompts/list", types.PaginatedRequestParams, self._list_prompts)
        add("prompts/get", types.GetPromptRequestParams, self._get_prompt)
        add("completion/complete", types.CompleteRequestParams, self._complete)
        add("logging/setLevel", types.SetLevelRequestParams, self._set_level)
        server.middleware.append(self._track_sessions)
        return server

    def initialization_options(self) -> InitializationOptions:
        """What a 2025-era client is told at `initialize`."""
        return self.server.create_initialization_options()

    # -- lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Follow document changes on the bus (for resource notifications); let federation attach."""
        if self._watcher is None:
            subscription = self.gw.bus.subscribe(DOCUMENT_TOPIC)
            self._watcher = asyncio.create_task(self._watch_documents(subscription), name="mcp-documents")
            # Federated upstream servers add their resources and prompts through the providers API.
            attach = getattr(self.gw.federation, "attach_mcp_door", None)
            if callable(attach):
                attach(self)

    def end_listen_streams(self) -> None:
        """End every open `subscriptions/listen` stream gracefully (each sends its final result)."""
        self._listen.close()

    async def close(self) -> None:
        """Stop following the bus, end `subscriptions/listen` streams, wait briefly for notifications."""
        self._closed = True
        self._listen.close()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    async def serve_streams(self, read_stream: Any, write_stream: Any) -> None:
        """Serve one duplex connection (stdio) in whichever era its client opens."""
        await serve_dual_era_loop(
            self.server, read_stream, write_stream, lifespan_state={}, init_options=self.initialization_options()
        )

    # -- extension points ----------------------------------------------------------------------------------
    def add_resource_provider(self, provider: ResourceProvider) -> Callable[[], None]:
        """Offer `provider`'s resources on every connection; returns a function that withdraws it."""
        self._resource_providers.append(provider)
        self.notify_resources_changed()

        def remove() -> None:
            if provider in self._resource_providers:
                self._resource_providers.remove(provider)
                self.notify_resources_changed()

        return remove

    def add_prompt_provider(self, provider: PromptProvider) -> Callable[[], None]:
        """Offer `provider`'s prompts on every connection; returns a function that withdraws it."""
        self._prompt_providers.append(provider)
        self.notify_prompts_changed()

        def remove() -> None:
            if provider in self._prompt_providers:
                self._prompt_providers.remove(provider)
                self.notify_prompts_changed()

        return remove

    def notify_tools_changed(self) -> None:
        """Tell clients the tool list changed (the registry's changes do this by themselves)."""
        self._tools = None
        self._schedule("tools")

    def notify_resources_changed(self) -> None:
        """Tell clients the resource list changed (`notifications/resources/list_changed`)."""
        self._schedule("resources")

    def notify_prompts_changed(self) -> None:
        """Tell clients the prompt list changed (`notifications/prompts/list_changed`)."""
        self._schedule("prompts")

    def notify_resource_updated(self, uri: str) -> None:
        """Tell the clients subscribed to `uri` that it changed (`notifications/resources/updated`)."""
        self._pending_uris.add(uri)
        self._schedule(None)

    # -- notifications ----------------------------------------------------------------------------------------
    def _registry_changed(self) -> None:
        self.notify_tools_changed()

    def _schedule(self, kind: str | None) -> None:
        """Coalesce notifications made in one loop iteration (a federated server adding 20 tools is one)."""
        if self._closed:
            return
        if kind is not None:
            self._pending.add(kind)
        if self._flush_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not serving yet: nobody to tell
            self._pending.clear()
            self._pending_uris.clear()
            return
        self._flush_handle = loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        kinds, self._pending = self._pending, set()
        uris, self._pending_uris = self._pending_uris, set()
        events: list[ServerEvent] = []
        messages: list[tuple[str, dict[str, Any] | None, str | None]] = []
        for kind, event in (
            ("tools", ToolsListChanged()),
            ("resources", ResourcesListChanged()),
            ("prompts", PromptsListChanged()),
        ):
            if kind in kinds:
                events.append(event)
                messages.append((f"notifications/{kind}/list_changed", None, None))
        for uri in sorted(uris):
            events.append(ResourceUpdated(uri=uri))
            messages.append(("notifications/resources/updated", {"uri": uri}, uri))
        if not events:
            return
        self._spawn(self._publish(events))
        for conn, state in list(self._sessions.values()):
            wanted = [(m, p) for m, p, uri in messages if uri is None or uri in state.subscriptions]
            if wanted:
                self._spawn(self._notify(conn, wanted))

    async def _publish(self, events: list[ServerEvent]) -> None:
        for event in events:
            await self.listen_bus.publish(event)

    @staticmethod
    async def _notify(conn: Connection, messages: list[tuple[str, dict[str, Any] | None]]) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(NOTIFY_TIMEOUT_SECONDS):
                for method, params in messages:
                    await conn.notify(method, params)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch_documents(self, subscription: Any) -> None:
        """Document events from every door become resource notifications."""
        with subscription:
            async for event in subscription:
                self._document_event(event)

    def _document_event(self, event: Event) -> None:
        path = event.data.get("path")
        if not isinstance(path, str):
            return
        self.notify_resource_updated(self.workspace_resources.file_uri(path))
        if event.type in ("document.opened", "document.closed"):
            self.notify_resources_changed()
        if event.type in ("document.changed", "document.opened"):
            self.notify_resource_updated(self.workspace_resources.diagnostics_uri(path))

    # -- sessions ---------------------------------------------------------------------------------------------
    async def _track_sessions(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Server middleware: remember each 2025-era connection (for notifications) until it closes."""
        conn = _connection(ctx)
        if (
            conn is not None
            and conn.protocol_version not in MODERN_PROTOCOL_VERSIONS
            and conn.has_standalone_channel
            and id(conn) not in self._sessions
        ):
            key = id(conn)
            self._sessions[key] = (conn, SessionState(key))
            self.gw.metrics.connection_opened("mcp")
            conn.exit_stack.callback(self._forget_session, key)
        return await call_next(ctx)

    def _forget_session(self, key: int) -> None:
        entry = self._sessions.pop(key, None)
        if entry is None:
            return
        self.gw.metrics.connection_closed("mcp")
        for uri in entry[1].subscriptions:
            self._release(uri)

    def _state(self, ctx: ServerRequestContext[Any, Any]) -> SessionState | None:
        conn = _connection(ctx)
        entry = self._sessions.get(id(conn)) if conn is not None else None
        return entry[1] if entry is not None and entry[0] is conn else None

    @property
    def session_count(self) -> int:
        """2025-era connections open now."""
        return len(self._sessions)

    def _identity(self, ctx: ServerRequestContext[Any, Any]) -> Identity:
        request = ctx.request
        if request is None:  # stdio (or in process): the user's own process
            return LOCAL_PROCESS
        scope = getattr(request, "scope", None)
        identity = scope.get(IDENTITY_SCOPE_KEY) if isinstance(scope, Mapping) else None
        if isinstance(identity, Identity):
            return identity
        return ANONYMOUS if self.gw.authenticator.enabled else LOCAL_OWNER

    def _call(self, ctx: ServerRequestContext[Any, Any], **meta: Any) -> CallContext:
        return CallContext(
            identity=self._identity(ctx),
            door=Door.MCP,
            request_id=None if ctx.request_id is None else str(ctx.request_id),
            meta={k: v for k, v in meta.items() if v is not None},
            peer=SessionPeer(ctx, self._state(ctx)),
        )

    def _input_call(self, ctx: ServerRequestContext[Any, Any], params: types.InputResponseRequestParams) -> CallContext:
        """The call of a request that may take part in the 2026-07-28 multi-round input flow.

        Federated upstreams read these keys: whether this client answers an `InputRequiredResult` itself,
        the answers and state of its retry, and what it declared it can do.
        """
        modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
        responses = None
        if params.input_responses:
            responses = {
                key: value.model_dump(by_alias=True, mode="json", exclude_none=True)
                for key, value in params.input_responses.items()
            }
        capabilities = ctx.session.client_capabilities
        meta = {
            META_INPUT_RESPONSES: responses,
            META_REQUEST_STATE: params.request_state,
            META_INPUT_REQUIRED: True if modern else None,
            META_CLIENT_CAPABILITIES: None
            if capabilities is None
            else capabilities.model_dump(by_alias=True, mode="json", exclude_none=True),
        }
        return self._call(ctx, **meta)

    # -- tools ----------------------------------------------------------------------------------------------------
    def _tool_list(self) -> list[types.Tool]:
        if self._tools is None:
            tools = []
            for cap in self.gw.registry.for_door(Door.MCP):
                validate_and_warn_tool_name(cap.name)  # SEP-986; logs what a client may refuse
                try:
                    tools.append(capability_tool(cap))
                except Exception:
                    log.exception("mcp: capability %s cannot be described as a tool; not listed", cap.name)
            self._tools = tools
        return self._tools

    def _capability(self, name: str) -> Capability[Any, Any] | None:
        registry = self.gw.registry
        if name not in registry:
            return None
        cap = registry.get(name)
        return cap if cap.exposed_on(Door.MCP) else None

    def _input_schema(self, name: str) -> Mapping[str, Any] | None:
        """For the SDK's `Mcp-Param-*` header check: the schema when it has annotated properties to check."""
        cap = self._capability(name)
        return header_checked_schema(cap) if cap is not None else None

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams
    ) -> HandlerResult:
        tools, cursor = page(self._tool_list(), params.cursor, self.page_size, "tools")
        return types.ListToolsResult(tools=tools, next_cursor=cursor)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> HandlerResult:
        cap = self._capability(params.name)
        if cap is None:
            raise unknown("Tool", params.name, {"name": params.name})
        call = self._input_call(ctx, params)
        arguments = params.arguments or {}
        token = progress_token_from_params(ctx.params)
        try:
            if token is None:
                result = await self.core.execute(call, params.name, arguments)
            else:
                result = await self._execute_reporting(ctx, call, params.name, arguments)
        except GatewayError as exc:
            passed = upstream_error(exc)  # a federated upstream's own protocol error goes out as it is
            if passed is not None:
                raise passed from None
            return tool_error_result(exc)
        return tool_result(cap, result)

    async def _execute_reporting(
        self, ctx: ServerRequestContext[Any, Any], call: CallContext, name: str, arguments: dict[str, Any]
    ) -> BaseModel:
        """Run the execution and send its progress as `notifications/progress`, all before the result."""
        execution = self.core.start(call, name, arguments)
        counter = ProgressCounter()
        try:
            async for report in execution.progress_reports(PROGRESS_QUEUE):
                values = counter.next(report)
                if values is not None:
                    await ctx.session.report_progress(*values)
        except BaseException:
            execution.cancel()
            raise
        return await execution.wait()

    # -- resources ------------------------------------------------------------------------------------------
    async def _list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams
    ) -> HandlerResult:
        call = self._call(ctx)
        resources: list[types.Resource] = []
        for provider in list(self._resource_providers):
            for item in await self._guarded(provider.list_resources(call)):
                resources.append(as_model(types.Resource, item))
        items, cursor = page(resources, params.cursor, self.page_size, "resources")
        return types.ListResourcesResult(resources=items, next_cursor=cursor)

    async def _list_templates(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams
    ) -> HandlerResult:
        call = self._call(ctx)
        templates: list[types.ResourceTemplate] = []
        for provider in list(self._resource_providers):
            for item in await self._guarded(provider.list_resource_templates(call)):
                templates.append(as_model(types.ResourceTemplate, item))
        items, cursor = page(templates, params.cursor, self.page_size, "templates")
        return types.ListResourceTemplatesResult(resource_templates=items, next_cursor=cursor)

    async def _read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> HandlerResult:
        call = self._input_call(ctx, params)
        for provider in list(self._resource_providers):
            found = await self._guarded(provider.read_resource(call, params.uri))
            if found is not None:
                return _wire_result(found, types.ReadResourceResult)
        raise MCPError(code=MCP_INVALID_PARAMS, message="Resource not found", data={"uri": params.uri})

    async def _subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams
    ) -> HandlerResult:
        state = self._state(ctx)
        if state is not None and params.uri not in state.subscriptions:
            state.subscriptions.add(params.uri)
            self._retain(params.uri)
        return types.EmptyResult()

    async def _unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
    ) -> HandlerResult:
        state = self._state(ctx)
        if state is not None and params.uri in state.subscriptions:
            state.subscriptions.discard(params.uri)
            self._release(params.uri)
        return types.EmptyResult()

    async def _listen_stream(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
    ) -> HandlerResult:
        """2026-07-28 `subscriptions/listen`: the SDK's handler, with providers told about the URIs."""
        uris = list(dict.fromkeys(params.notifications.resource_subscriptions or ()))
        for uri in uris:
            self._retain(uri)
        try:
            return await self._listen(ctx, params)
        finally:
            for uri in uris:
                self._release(uri)

    def _retain(self, uri: str) -> None:
        self._subscribers[uri] = self._subscribers.get(uri, 0) + 1
        if self._subscribers[uri] == 1:
            self._spawn(self._tell_providers(uri, True))

    def _release(self, uri: str) -> None:
        count = self._subscribers.get(uri, 0) - 1
        if count > 0:
            self._subscribers[uri] = count
            return
        self._subscribers.pop(uri, None)
        with contextlib.suppress(RuntimeError):  # no running loop at interpreter shutdown
            self._spawn(self._tell_providers(uri, False))

    async def _tell_providers(self, uri: str, subscribe: bool) -> None:
        for provider in list(self._resource_providers):
            try:
                await provider.subscribe(uri, subscribe)
            except Exception as exc:
                log.debug("mcp: resource provider %r refused (un)subscribe of %s: %s", provider, uri, exc)

    # -- prompts and completion ----------------------------------------------------------------------------
    async def _list_prompts(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams
    ) -> HandlerResult:
        call = self._call(ctx)
        prompts: list[types.Prompt] = []
        for provider in list(self._prompt_providers):
            for item in await self._guarded(provider.list_prompts(call)):
                prompts.append(as_model(types.Prompt, item))
        items, cursor = page(prompts, params.cursor, self.page_size, "prompts")
        return types.ListPromptsResult(prompts=items, next_cursor=cursor)

    async def _get_prompt(
        self, ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> HandlerResult:
        call = self._input_call(ctx, params)
        for provider in list(self._prompt_providers):
            found = await self._guarded(provider.get_prompt(call, params.name, params.arguments))
            if found is not None:
                return _wire_result(found, types.GetPromptResult)
        raise unknown("Prompt", params.name, {"name": params.name})

    async def _complete(
        self, ctx: ServerRequestContext[Any, Any], params: types.CompleteRequestParams
    ) -> HandlerResult:
        call = self._call(ctx)
        context = dict(params.context.arguments or {}) if params.context is not None else {}
        ref = params.ref
        found: Any = None
        if isinstance(ref, types.PromptReference):
            for prompt_provider in list(self._prompt_providers):
                found = await self._guarded(prompt_provider.complete(call, ref, params.argument, context))
                if found is not None:
                    break
        else:
            for resource_provider in list(self._resource_providers):
                found = await self._guarded(resource_provider.complete(call, ref, params.argument, context))
                if found is not None:
                    break
        if found is None:
            completion = types.Completion(values=[], total=0, has_more=False)
        elif isinstance(found, Mapping) and "completion" in found:
            completion = as_model(types.Completion, found["completion"])
        else:
            completion = as_model(types.Completion, found)
        return types.CompleteResult(completion=completion)

    # -- logging -----------------------------------------------------------------------------------------------
    async def _set_level(
        self, ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams
    ) -> HandlerResult:
        state = self._state(ctx)
        if state is not None:
            state.log_level = log_level(params.level)
        return types.EmptyResult()

    # -- helpers ------------------------------------------------------------------------------------------------
    @staticmethod
    async def _guarded(awaitable: Any) -> Any:
        """Await a provider; core errors become JSON-RPC errors, anything else a logged internal error."""
        try:
            return await awaitable
        except (MCPError, asyncio.CancelledError):
            raise
        except GatewayError as exc:
            raise protocol_error(exc) from None
        except Exception:
            log.exception("mcp: a resource or prompt provider failed")
            raise MCPError(code=MCP_INTERNAL_ERROR, message="internal error; see the gateway log") from None


def _wire_result(found: Any, model: type[BaseModel]) -> HandlerResult:
    """A provider's answer as a handler result: models as they are, wire dicts validated then dumped."""
    if isinstance(found, BaseModel):
        return found
    if isinstance(found, Mapping) and found.get("resultType") == "input_required":
        return dict(found)  # a 2026-07-28 InputRequiredResult from an upstream, for the client to answer
    if isinstance(found, Mapping):
        validated: BaseModel = model.model_validate(dict(found), by_name=False)
        return validated
    raise TypeError(f"a provider returned {type(found).__name__}")
