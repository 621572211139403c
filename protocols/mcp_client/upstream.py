"""One upstream MCP server: connected with the SDK client, supervised, and mirrored into the registry.

The supervisor task owns the SDK `Client` (its anyio task groups must be entered and left by one task):
it connects, lists tools, resources, templates and prompts, registers each tool as a capability, and
then waits until the connection dies or the gateway closes. A stdio server that exits, or an HTTP
server that stops answering, has its tools withdrawn (`Registry.remove`, so every door's list changes)
and is reconnected with exponential backoff; its tools come back when it does.

Calls run in the callers' execution tasks. Progress from the upstream goes to `ctx.progress`; its
logging, elicitation and sampling requests go to the calling client through `ctx.peer` when that
client's door supports them. A 2026-07-28 upstream asks for input by returning an `InputRequiredResult`
instead: it is answered here through `ctx.peer` and the call retried, or handed to the door as it is
when the door says its client speaks that protocol itself (see `protocols.mcp_client` for the keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import anyio
import httpx2
import mcp_types as types
from mcp.client import Client
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway import errors
from gateway.config import McpUpstreamConfig
from gateway.execution import CallContext, ClientPeer, ExecutionContext
from gateway.identity import Role
from gateway.registry import Capability, DuplicateCapability, Registry

from .schema import UpstreamParams, UpstreamToolResult, params_model, result_model

if TYPE_CHECKING:
    from mcp.client._transport import TransportStreams

log = logging.getLogger("protocols.mcp_client")

State = Literal["idle", "starting", "running", "restarting", "failed", "closed"]

LAUNCHER = Path(__file__).with_name("launcher.py")
HEALTH_CHECK_SECONDS = 10.0
STABLE_SECONDS = 10.0
MAX_INPUT_ROUNDS = 8
READY_WAIT_SECONDS = 5.0
CLIENT_MODE = "auto"  # the SDK's era negotiation: server/discover, else the initialize handshake

# Keys a door may put in CallContext.meta for federated tools (documented in protocols.mcp_client).
META_INPUT_RESPONSES = "mcp.input_responses"
META_REQUEST_STATE = "mcp.request_state"
META_INPUT_REQUIRED = "mcp.input_required"
META_CLIENT_CAPABILITIES = "mcp.client_capabilities"
CLIENT_CAPABILITIES_META_KEY = "io.modelcontextprotocol/clientCapabilities"

# What the calling client can do, stamped on 2026-07-28 requests instead of the gateway's own capabilities,
# so an upstream asks only for what the client at the end of the line can answer.
_calling_client_capabilities: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "calling_client_capabilities", default=None
)

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: str, environ: dict[str, str] | None = None) -> str:
    """Replace `${NAME}` in a configured header value with that environment variable (empty if unset)."""
    env = os.environ if environ is None else environ
    return _ENV_REF.sub(lambda m: env.get(m.group(1), ""), value)


def upstream_headers(config: McpUpstreamConfig, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The HTTP headers sent to an upstream: its configured headers, plus its own bearer token if any.

    Only the upstream's configured credentials are ever sent: a downstream client's token stays with
    the gateway."""
    env = dict(os.environ) if environ is None else environ
    headers = {name: expand_env(value, env) for name, value in config.headers.items()}
    if config.bearer_token_env:
        token = env.get(config.bearer_token_env)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        else:
            log.warning(
                "mcp upstream %s: bearer_token_env %s is not set; connecting without a token",
                config.name,
                config.bearer_token_env,
            )
    return headers


class _WatchedStream:
    """A read stream that sets `ended` when the transport's stream ends (the server went away)."""

    def __init__(self, inner: Any, ended: asyncio.Event) -> None:
        self._inner = inner
        self._ended = ended

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._ended.set()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _WatchedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._inner.__anext__()
        except (StopAsyncIteration, anyio.ClosedResourceError):
            self._ended.set()
            raise

    async def __aenter__(self) -> _WatchedStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        self._ended.set()
        result: bool | None = await self._inner.__aexit__(exc_type, exc, tb)
        return result


class _WatchedTransport:
    """Wraps an SDK transport so the supervisor learns when its read stream ends."""

    def __init__(self, inner: contextlib.AbstractAsyncContextManager[TransportStreams], ended: asyncio.Event) -> None:
        self._inner = inner
        self._ended = ended

    async def __aenter__(self) -> TransportStreams:
        read_stream, write_stream = await self._inner.__aenter__()
        return _WatchedStream(read_stream, self._ended), write_stream

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        self._ended.set()
        return await self._inner.__aexit__(exc_type, exc, tb)


@dataclass
class _Call:
    """A call in flight on this upstream, so its server-to-client requests can find their client."""

    peer: ClientPeer | None
    log_deliveries: int = 0
    delivered: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class UpstreamLists:
    """What an upstream offers, as wire dicts (camelCase), from its last listing."""

    tools: list[types.Tool] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    templates: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)


_ERA_FIELDS = ("ttlMs", "cacheScope")  # the upstream's own caching hints: the door gives its own


def _wire(model: Any) -> dict[str, Any]:
    """A result as wire JSON for any era: `resultType` always present ("complete" unless the upstream asks for
    input; handshake-era serializers drop it), the upstream's own protocol stamps and cache hints removed."""
    data: dict[str, Any] = model.model_dump(by_alias=True, mode="json", exclude_none=True)
    data.setdefault("resultType", "complete")
    for key in _ERA_FIELDS:
        data.pop(key, None)
    meta = data.get("_meta")
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if not k.startswith("io.modelcontextprotocol/")}
        if kept:
            data["_meta"] = kept
        else:
            del data["_meta"]
    return data


class Upstream:
    """A supervised connection to one configured upstream MCP server."""

    def __init__(
        self,
        config: McpUpstreamConfig,
        registry: Registry,
        *,
        workspace_root: Path,
        on_lists_changed: Callable[[], None] | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.prefix = f"{config.name}_" if config.prefix is None else config.prefix
        self.registry = registry
        self.workspace_root = workspace_root
        self._on_lists_changed = on_lists_changed
        self._environ = environ
        self.state: State = "idle"
        self.last_error: str | None = None
        self.restarts = 0
        self.lists = UpstreamLists()
        self.registered: dict[str, str] = {}  # gateway capability name -> upstream tool name
        self.skipped: dict[str, str] = {}  # upstream tool name -> why it is not registered
        self.protocol_version: str | None = None
        self._client: Client | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._state_changed = asyncio.Event()
        self._calls: dict[int, _Call] = {}
        self._call_ids = 0
        self._broken: asyncio.Event | None = None
        self._resync: asyncio.Event | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.config.command is not None else "http"

    def start(self) -> None:
        """Start the supervisor (connect now, reconnect whenever the connection dies)."""
        if self._supervisor is None and not self._closed:
            self._set_state("starting")
            self._supervisor = asyncio.get_running_loop().create_task(
                self._supervise(), name=f"mcp-upstream-{self.name}"
            )
            self._supervisor.add_done_callback(self._supervisor_done)

    async def close(self) -> None:
        """Withdraw the tools and disconnect (the stdio server is stopped by the SDK's shutdown sequence)."""
        self._closed = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        self._withdraw()
        self._set_state("closed")

    def _supervisor_done(self, task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("mcp upstream %s: supervisor failed: %s", self.name, self.last_error, exc_info=exc)
            self._withdraw()
            self._set_state("failed")

    def _set_state(self, state: State) -> None:
        self.state = state
        self._state_changed.set()
        self._state_changed = asyncio.Event()

    async def next_state(self) -> State:
        """Wait for the next change of `state` and return it (for observers and tests)."""
        await self._state_changed.wait()
        return self.state

    async def wait_running(self, timeout: float | None = None) -> None:
        """Wait until connected; `UpstreamFailure` once it gave up or was closed."""
        async with asyncio.timeout(timeout):
            while self.state != "running":
                if self.state in ("failed", "closed"):
                    raise errors.UpstreamFailure(
                        f"upstream MCP server {self.name} is {self.state}: {self.last_error}",
                        data={"upstream": self.name},
                    )
                await self._state_changed.wait()

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        delay = self.config.restart_initial_seconds
        first = True
        while not self._closed:
            if not first:
                self.restarts += 1
                self._set_state("restarting")
            first = False
            started = loop.time()
            try:
                await self._connect_and_serve()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self.last_error = _describe(exc)
                log.warning("mcp upstream %s: connection failed: %s", self.name, self.last_error)
            finally:
                self._client = None
                self._withdraw()
            if self._closed:
                return
            if loop.time() - started >= STABLE_SECONDS:
                failures, delay = 0, self.config.restart_initial_seconds
            failures += 1
            if failures > self.config.max_restarts:
                log.error(
                    "mcp upstream %s: giving up after %d failed connections (%s)", self.name, failures, self.last_error
                )
                self._set_state("failed")
                return
            self._set_state("restarting")
            log.info("mcp upstream %s: reconnecting in %.1fs (%s)", self.name, delay, self.last_error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.restart_max_seconds)

    def _client_for(self, ended: asyncio.Event, stack: contextlib.AsyncExitStack) -> Client:
        transport: contextlib.AbstractAsyncContextManager[TransportStreams]
        if self.config.command is not None:
            argv = [sys.executable, "-I", "-S", str(LAUNCHER), str(os.getpid()), *self.config.command]
            params = StdioServerParameters(
                command=argv[0], args=argv[1:], env=dict(self.config.env) or None, cwd=self.workspace_root
            )
            from mcp.client.stdio import stdio_client

            transport = stdio_client(params)
        else:
            assert self.config.url is not None
            http = httpx2.AsyncClient(
                headers=upstream_headers(self.config, self._environ),
                timeout=httpx2.Timeout(30.0, read=max(300.0, self.config.timeout_seconds)),
            )
            stack.push_async_callback(http.aclose)
            transport = streamable_http_client(self.config.url, http_client=http)
        return Client(
            _WatchedTransport(transport, ended),
            read_timeout_seconds=self.config.timeout_seconds,
            sampling_callback=self._on_sampling,
            elicitation_callback=self._on_elicitation,
            list_roots_callback=self._on_list_roots,
            logging_callback=self._on_log,
            log_level="debug",
            message_handler=self._on_message,
            client_info=types.Implementation(name="gateway", version="0.1.0"),
            cache=None,
            mode=CLIENT_MODE,
        )

    async def _connect_and_serve(self) -> None:
        ended = asyncio.Event()
        self._broken = broken = asyncio.Event()
        self._resync = resync = asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            client = self._client_for(ended, stack)
            async with asyncio.timeout(self.config.timeout_seconds):
                await stack.enter_async_context(client)
            self.protocol_version = client.protocol_version
            if self.protocol_version in MODERN_PROTOCOL_VERSIONS:
                _stamp_calling_client_capabilities(client)
            await self._after_connect(client)
            self._client = client
            await self._sync(client)
            self.last_error = None
            self._set_state("running")
            log.info(
                "mcp upstream %s running (%s, protocol %s): %d tools as %s*",
                self.name,
                self.transport,
                self.protocol_version,
                len(self.registered),
                self.prefix,
            )
            async with anyio.create_task_group() as tg:
                if self.protocol_version in MODERN_PROTOCOL_VERSIONS:
                    tg.start_soon(self._listen, client, resync)
                if self.transport == "http":
                    tg.start_soon(self._health_checks, client, broken)
                while True:
                    waiters = {
                        asyncio.ensure_future(ended.wait()): "ended",
                        asyncio.ensure_future(broken.wait()): "broken",
                        asyncio.ensure_future(resync.wait()): "resync",
                    }
                    try:
                        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for waiter in waiters:
                            waiter.cancel()
                    reasons = {waiters[d] for d in done}
                    if reasons & {"ended", "broken"}:
                        self.last_error = (
                            "the server process exited"
                            if "ended" in reasons and self.transport == "stdio"
                            else "the connection was lost"
                        )
                        log.warning("mcp upstream %s: %s; withdrawing its tools", self.name, self.last_error)
                        self._client = None
                        self._withdraw()
                        tg.cancel_scope.cancel()
                        break
                    resync.clear()
                    try:
                        await self._sync(client)
                    except Exception as exc:
                        log.warning("mcp upstream %s: re-listing failed: %s", self.name, _describe(exc))
                        broken.set()

    async def _after_connect(self, client: Client) -> None:
        caps = client.server_capabilities
        if client.protocol_version not in MODERN_PROTOCOL_VERSIONS and caps.logging is not None:
            # Handshake-era servers filter log messages by the level set here; the door filters per client.
            with warnings.catch_warnings(), contextlib.suppress(MCPError):
                warnings.simplefilter("ignore")
                await client.session.set_logging_level("debug")

    async def _listen(self, client: Client, resync: asyncio.Event) -> None:
        """2026-07-28: list changes arrive on a `subscriptions/listen` stream."""
        caps = client.server_capabilities
        try:
            async with client.listen(
                tools_list_changed=caps.tools is not None,
                prompts_list_changed=caps.prompts is not None,
                resources_list_changed=caps.resources is not None,
            ) as subscription:
                async for _event in subscription:
                    resync.set()
        except Exception as exc:
            log.info("mcp upstream %s: no change notifications (%s)", self.name, _describe(exc))

    async def _health_checks(self, client: Client, broken: asyncio.Event) -> None:
        """HTTP upstreams: a cheap request now and then; a failure means reconnect."""
        while True:
            await anyio.sleep(HEALTH_CHECK_SECONDS)
            try:
                with anyio.fail_after(min(10.0, self.config.timeout_seconds)):
                    if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                        await client.session.list_tools()
                    else:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            await client.session.send_ping()
            except Exception as exc:
                if isinstance(exc, MCPError) and exc.code not in (types.CONNECTION_CLOSED, types.REQUEST_TIMEOUT):
                    continue  # the server answered: it is alive
                log.warning("mcp upstream %s: health check failed: %s", self.name, _describe(exc))
                broken.set()
                return

    # -- listings and registration --------------------------------------------------------------------
    async def _sync(self, client: Client) -> None:
        """Re-list everything the server offers and bring the registry in line with it."""
        caps = client.server_capabilities
        lists = UpstreamLists()
        if caps.tools is not None:
            lists.tools = [t async for t in _pages(lambda c: client.session.list_tools(params=_page(c)), "tools")]
        if caps.resources is not None:
            lists.resources = [
                _wire(r) async for r in _pages(lambda c: client.session.list_resources(params=_page(c)), "resources")
            ]
            with contextlib.suppress(MCPError):
                lists.templates = [
                    _wire(t)
                    async for t in _pages(
                        lambda c: client.session.list_resource_templates(params=_page(c)), "resource_templates"
                    )
                ]
        if caps.prompts is not None:
            lists.prompts = [
                _wire(p) async for p in _pages(lambda c: client.session.list_prompts(params=_page(c)), "prompts")
            ]
        self.lists = lists
        self._register_tools(lists.tools)
        if self._on_lists_changed is not None:
            self._on_lists_changed()

    def _register_tools(self, tools: list[types.Tool]) -> None:
        wanted = {self.prefix + t.name: t for t in tools}
        for name in [n for n in self.registered if n not in wanted]:
            self.registry.remove(name)
            del self.registered[name]
        self.skipped = {}
        for name, tool in wanted.items():
            cap = self._capability(name, tool)
            if name in self.registered:
                current = self.registry.get(name) if name in self.registry else None
                if current is not None and _same_tool(current, cap):
                    continue
                self.registry.remove(name)
                del self.registered[name]
            try:
                self.registry.add(cap)
            except DuplicateCapability:
                why = f"the name {name!r} is already taken by another capability"
                self.skipped[tool.name] = why
                log.error(
                    "mcp upstream %s: tool %r not federated: %s (set a prefix for this upstream)",
                    self.name,
                    tool.name,
                    why,
                )
                continue
            self.registered[name] = tool.name

    def _withdraw(self) -> None:
        for name in list(self.registered):
            self.registry.remove(name)
        self.registered.clear()
        if self.lists.resources or self.lists.templates or self.lists.prompts:
            self.lists = UpstreamLists()
            if self._on_lists_changed is not None:
                self._on_lists_changed()
        else:
            self.lists = UpstreamLists()

    def _capability(self, name: str, tool: types.Tool) -> Capability[Any, Any]:
        annotations = tool.annotations or types.ToolAnnotations()
        read_only = bool(annotations.read_only_hint)
        destructive = False if read_only else annotations.destructive_hint is not False
        idempotent = bool(annotations.idempotent_hint) or read_only
        description = tool.description or tool.title or annotations.title or ""
        summary, _, rest = description.strip().partition("\n\n")
        p_model = params_model(name, tool.input_schema)
        r_model = result_model(name, tool.output_schema)
        upstream_name = tool.name

        async def handler(ctx: ExecutionContext, params: UpstreamParams) -> UpstreamToolResult:
            return await self.call_tool(ctx, upstream_name, params.arguments(), r_model)

        handler.__doc__ = description or None
        return Capability(
            name=name,
            params_model=p_model,
            result_model=r_model,
            handler=handler,
            summary=" ".join(summary.split()) or name,
            description=rest.strip(),
            required_role=Role.VIEWER if read_only else Role.MEMBER,
            read_only=read_only,
            destructive=destructive,
            idempotent=idempotent,
            tags=("federated", self.name),
        )

    # -- calls ---------------------------------------------------------------------------------------------
    async def _ready_client(self) -> Client:
        client = self._client
        if client is not None and self.state == "running":
            return client
        try:
            await self.wait_running(READY_WAIT_SECONDS)
        except TimeoutError:
            raise errors.UpstreamFailure(
                f"upstream MCP server {self.name} is {self.state}"
                + (f": {self.last_error}" if self.last_error else ""),
                data={"upstream": self.name},
            ) from None
        assert self._client is not None
        return self._client

    @contextlib.asynccontextmanager
    async def _tracked(self, call: CallContext | None) -> AsyncIterator[_Call | None]:
        if call is None:
            yield None
            return
        self._call_ids += 1
        key = self._call_ids
        tracked = _Call(call.peer)
        self._calls[key] = tracked
        token = _calling_client_capabilities.set(_client_capabilities(call))
        try:
            yield tracked
        finally:
            _calling_client_capabilities.reset(token)
            del self._calls[key]

    async def _drive(
        self,
        call: CallContext | None,
        send: Callable[[types.InputResponses | None, str | None], Awaitable[Any]],
        *,
        what: str,
    ) -> Any:
        """Send a request that may answer `InputRequiredResult` (2026-07-28), on behalf of `call`.

        When the calling client speaks that protocol itself (`mcp.input_required`), the result goes back to
        it as it is, and its retry's `inputResponses`/`requestState` come in through `CallContext.meta`.
        Otherwise the gateway answers the input requests through the client's peer and retries."""
        meta = call.meta if call is not None else {}
        responses: Any = meta.get(META_INPUT_RESPONSES)
        state: Any = meta.get(META_REQUEST_STATE)
        pass_input_required = bool(meta.get(META_INPUT_REQUIRED))
        async with self._tracked(call) as tracked:
            for _round in range(MAX_INPUT_ROUNDS):
                answers, echoed = _input_responses(responses), state

                def attempt(
                    answers: types.InputResponses | None = answers, echoed: str | None = echoed
                ) -> Awaitable[Any]:
                    return send(answers, echoed)

                result = await self._request(attempt, what=what)
                if isinstance(result, types.InputRequiredResult) and not pass_input_required:
                    responses = await self._answer_input_requests(call, result)
                    state = result.request_state
                    continue
                await self._flush_logs(tracked)
                return result
        raise errors.UpstreamFailure(
            f"upstream {what} asked for input more than {MAX_INPUT_ROUNDS} times", data={"upstream": self.name}
        )

    async def call_tool(
        self,
        ctx: ExecutionContext,
        tool: str,
        arguments: dict[str, Any],
        model: type[UpstreamToolResult],
    ) -> UpstreamToolResult:
        """Call `tool` upstream on behalf of `ctx`, passing progress, logging and input requests through."""
        client = await self._ready_client()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            percentage = None
            if total:
                percentage = max(0.0, min(100.0, progress / total * 100.0))
            ctx.progress(message, percentage, progress=progress, total=total)

        def send(responses: types.InputResponses | None, state: str | None) -> Awaitable[Any]:
            return client.session.call_tool(
                tool,
                arguments,
                read_timeout_seconds=max(0.001, ctx.deadline - time.monotonic()),
                progress_callback=on_progress,
                input_responses=responses,
                request_state=state,
                allow_input_required=True,
            )

        result = await self._drive(ctx.call, send, what=f"tool {tool}")
        return model.model_validate(_wire(result))

    async def _request(self, send: Callable[[], Awaitable[Any]], *, what: str) -> Any:
        """One request upstream, its failures mapped onto the core's errors."""
        try:
            return await send()
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                if self._broken is not None:
                    self._broken.set()
                raise errors.UpstreamFailure(
                    f"upstream MCP server {self.name} went away during {what}", data={"upstream": self.name}
                ) from None
            if exc.code == types.REQUEST_TIMEOUT:
                raise errors.Timeout(f"upstream MCP server {self.name} did not answer {what} in time") from None
            raise _mapped(exc, self.name) from None
        except httpx2.TransportError as exc:
            if self._broken is not None:
                self._broken.set()
            raise errors.UpstreamFailure(
                f"upstream MCP server {self.name} is unreachable: {type(exc).__name__}", data={"upstream": self.name}
            ) from None

    async def _answer_input_requests(
        self, call: CallContext | None, result: types.InputRequiredResult
    ) -> dict[str, Any]:
        """Answer a 2026-07-28 upstream's input requests through the calling client, for the retry."""
        peer = call.peer if call is not None else None
        answers: dict[str, Any] = {}
        for key, request in (result.input_requests or {}).items():
            response: Any
            if isinstance(request, types.ElicitRequest):
                response = await self._elicit(peer, request.params)
            elif isinstance(request, types.CreateMessageRequest):
                response = await self._sample(peer, request.params)
            else:
                response = self._roots()
            if isinstance(response, types.ErrorData):
                raise errors.Unsupported(response.message, data={"upstream": self.name})
            answers[key] = response
        return answers

    # -- requests and notifications from the upstream ------------------------------------------------------
    def _route(self, feature: Literal["elicitation", "sampling", "logging"]) -> _Call | None:
        """The one in-flight call whose client can take `feature`; None when there is none or several."""
        candidates: dict[int, _Call] = {}
        for call in self._calls.values():
            if call.peer is not None and call.peer.supports(feature):
                candidates.setdefault(id(call.peer), call)
        if len(candidates) == 1:
            return next(iter(candidates.values()))
        if len(candidates) > 1:
            log.warning(
                "mcp upstream %s: %s request while %d clients have calls in flight; not forwarded",
                self.name,
                feature,
                len(candidates),
            )
        return None

    async def _elicit(
        self, peer: ClientPeer | None, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        if peer is None or not peer.supports("elicitation"):
            return types.ErrorData(
                code=types.INVALID_REQUEST, message="the calling client does not support elicitation"
            )
        if not isinstance(params, types.ElicitRequestFormParams):
            return types.ErrorData(code=types.INVALID_REQUEST, message="URL elicitation is not passed through")
        answer = await peer.elicit(params.message, dict(params.requested_schema))
        return types.ElicitResult.model_validate(answer, by_name=False)

    async def _sample(
        self, peer: ClientPeer | None, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        if peer is None or not peer.supports("sampling"):
            return types.ErrorData(code=types.INVALID_REQUEST, message="the calling client does not support sampling")
        answer = await peer.create_message(params.model_dump(by_alias=True, mode="json", exclude_none=True))
        if answer.get("content") is not None and isinstance(answer["content"], list):
            return types.CreateMessageResultWithTools.model_validate(answer, by_name=False)
        return types.CreateMessageResult.model_validate(answer, by_name=False)

    def _roots(self) -> types.ListRootsResult:
        return types.ListRootsResult(
            roots=[types.Root(uri=self.workspace_root.resolve().as_uri(), name=self.workspace_root.name)]
        )

    async def _on_elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        call = self._route("elicitation")
        return await self._elicit(call.peer if call is not None else None, params)

    async def _on_sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        call = self._route("sampling")
        return await self._sample(call.peer if call is not None else None, params)

    async def _on_list_roots(self, context: ClientRequestContext) -> types.ListRootsResult | types.ErrorData:
        return self._roots()

    async def _on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        call = self._route("logging")
        if call is None or call.peer is None:
            log.info("mcp upstream %s log (%s): %s", self.name, params.level, params.data)
            return
        call.log_deliveries += 1
        try:
            await call.peer.log(params.level, params.data, params.logger or self.name)
        except Exception as exc:
            log.debug("mcp upstream %s: log message not delivered: %s", self.name, exc)
        finally:
            call.log_deliveries -= 1
            if call.log_deliveries == 0:
                call.delivered.set()

    async def _flush_logs(self, call: _Call | None) -> None:
        """Let log messages the upstream sent before its answer reach the client before the answer does."""
        await asyncio.sleep(0)
        if call is None or call.log_deliveries == 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                while call.log_deliveries:
                    call.delivered.clear()
                    await call.delivered.wait()

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            log.debug("mcp upstream %s: transport error: %s", self.name, message)
            return
        if (
            isinstance(
                message,
                types.ToolListChangedNotification
                | types.PromptListChangedNotification
                | types.ResourceListChangedNotification,
            )
            and self._resync is not None
        ):
            self._resync.set()

    # -- resources, prompts, completion (for the MCP door's providers) ---------------------------------------
    async def read_resource(self, uri: str, call: CallContext | None = None) -> dict[str, Any]:
        """`resources/read` upstream on behalf of `call`; the wire result (an InputRequiredResult passes as
        for tools)."""
        client = await self._ready_client()

        def send(responses: types.InputResponses | None, state: str | None) -> Awaitable[Any]:
            return client.session.read_resource(
                uri, input_responses=responses, request_state=state, allow_input_required=True
            )

        return _wire(await self._drive(call, send, what=f"resource {uri}"))

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None, call: CallContext | None = None
    ) -> dict[str, Any]:
        """`prompts/get` upstream (by the upstream's own prompt name) on behalf of `call`; the wire result."""
        client = await self._ready_client()

        def send(responses: types.InputResponses | None, state: str | None) -> Awaitable[Any]:
            return client.session.get_prompt(
                name, arguments, input_responses=responses, request_state=state, allow_input_required=True
            )

        return _wire(await self._drive(call, send, what=f"prompt {name}"))

    async def complete(
        self, ref: dict[str, Any], argument: dict[str, str], context_arguments: dict[str, str] | None
    ) -> dict[str, Any]:
        """`completion/complete` upstream; the wire result."""
        client = await self._ready_client()
        if client.server_capabilities.completions is None:
            return {"completion": {"values": [], "hasMore": False}}
        reference: types.ResourceTemplateReference | types.PromptReference
        if ref.get("type") == "ref/prompt":
            reference = types.PromptReference.model_validate(ref, by_name=False)
        else:
            reference = types.ResourceTemplateReference.model_validate(ref, by_name=False)
        result = await self._request(
            lambda: client.session.complete(ref=reference, argument=argument, context_arguments=context_arguments),
            what="completion",
        )
        return _wire(result)

    async def subscribe(self, uri: str, subscribe: bool) -> None:
        """Pass a handshake-era `resources/subscribe` or `unsubscribe` on when the upstream supports it."""
        client = await self._ready_client()
        caps = client.server_capabilities.resources
        if client.protocol_version in MODERN_PROTOCOL_VERSIONS or caps is None or not caps.subscribe:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if subscribe:
                await self._request(lambda: client.session.subscribe_resource(uri), what=f"subscribe {uri}")
            else:
                await self._request(lambda: client.session.unsubscribe_resource(uri), what=f"unsubscribe {uri}")


def _client_capabilities(call: CallContext) -> dict[str, Any]:
    """The calling client's capabilities: as its door declared them, else what its peer supports."""
    declared = call.meta.get(META_CLIENT_CAPABILITIES)
    if isinstance(declared, dict):
        return declared
    caps: dict[str, Any] = {"roots": {}}  # roots are the gateway's workspace, answered here
    peer = call.peer
    if peer is not None:
        if peer.supports("sampling"):
            caps["sampling"] = {}
        if peer.supports("elicitation"):
            caps["elicitation"] = {"form": {}}
    return caps


def _stamp_calling_client_capabilities(client: Client) -> None:
    """Wrap the session's per-request `_meta` stamp (2026-07-28) to declare the calling client's capabilities.

    The SDK stamps the capabilities given at construction on every request; a federated call must declare
    what the downstream client can do instead. The stamp runs in the caller's task, so a context variable
    set around the call carries them."""
    session = client.session
    original = session._stamp

    def stamp(data: dict[str, Any], opts: Any) -> None:
        original(data, opts)
        caps = _calling_client_capabilities.get()
        meta = data.get("params", {}).get("_meta") if isinstance(data.get("params"), dict) else None
        if caps is not None and isinstance(meta, dict) and CLIENT_CAPABILITIES_META_KEY in meta:
            meta[CLIENT_CAPABILITIES_META_KEY] = caps

    session._stamp = stamp


def _page(cursor: str | None) -> types.PaginatedRequestParams | None:
    return types.PaginatedRequestParams(cursor=cursor) if cursor else None


async def _pages(fetch: Callable[[str | None], Awaitable[Any]], attr: str) -> AsyncIterator[Any]:
    cursor: str | None = None
    for _ in range(1000):
        page = await fetch(cursor)
        for item in getattr(page, attr):
            yield item
        cursor = page.next_cursor
        if not cursor:
            return


def _input_responses(value: Any) -> types.InputResponses | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.InvalidParams("inputResponses must be an object")
    out: dict[str, Any] = {}
    for key, answer in value.items():
        if not isinstance(answer, dict | types.ElicitResult | types.CreateMessageResult | types.ListRootsResult):
            raise errors.InvalidParams(f"inputResponses[{key!r}] must be an object")
        out[key] = answer
    return out  # the SDK validates the shapes when it builds the request


def _same_tool(current: Capability[Any, Any], new: Capability[Any, Any]) -> bool:
    return (
        current.params_model.model_json_schema() == new.params_model.model_json_schema()
        and getattr(current.result_model, "mcp_output_schema", None)
        == getattr(new.result_model, "mcp_output_schema", None)
        and current.summary == new.summary
        and current.description == new.description
        and (current.read_only, current.destructive, current.idempotent)
        == (new.read_only, new.destructive, new.idempotent)
    )


def _mapped(exc: MCPError, upstream: str) -> errors.GatewayError:
    """The core error for an upstream's JSON-RPC error; `data["mcp_error"]` keeps the original for the MCP door."""
    original: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.data is not None:
        original["data"] = exc.data
    data = {"upstream": upstream, "mcp_error": original}
    if exc.code == types.INVALID_PARAMS:
        return errors.InvalidParams(exc.message, data=data)
    if exc.code == types.METHOD_NOT_FOUND:
        return errors.NotFound(exc.message, data=data)
    return errors.UpstreamFailure(f"upstream MCP server {upstream}: {exc.message}", data=data)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _describe(exc.exceptions[0])
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]
