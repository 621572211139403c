"""The composition root: builds the core from config and runs the doors in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import signal
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .analysis.engine import Engine
from .analysis.service import AnalysisService
from .auth import Authenticator
from .capabilities import analysis, documents, files
from .config import GatewayConfig
from .events import EventBus, InMemoryBus
from .execution import Core
from .llm import LLMService
from .metrics import Metrics
from .middleware import access_lines, auth_middleware, logging_middleware, metrics_middleware, rate_limit_middleware
from .ratelimit import RateLimiter, build_rate_limiter
from .registry import Registry
from .startup import resume_gc
from .workspace import Workspace

if TYPE_CHECKING:
    from aiohttp import web

    from protocols.lsp import LspDoor
    from protocols.mcp import McpDoor
    from protocols.mcp_client import Federation

    from .capabilities.admin import Membership
    from .collab import CollabService
    from .runs import RunQueue  # runs

log = logging.getLogger("gateway")


class StartupRefused(Exception):
    """The configuration asks for something unsafe or impossible; the message says why."""


class CollabAccess:
    """The shared-document service, built on first use: pycrdt loads only when someone collaborates."""

    def __init__(self, config: GatewayConfig, workspace: Workspace, bus: EventBus) -> None:
        self._config = config
        self._workspace = workspace
        self._bus = bus
        self._lock = asyncio.Lock()
        self.service: CollabService | None = None
        self.closed = False

    async def get(self) -> CollabService:
        if self.service is not None:
            return self.service
        async with self._lock:
            if self.service is None:
                from .collab import CollabService, CollabStore, FileStore

                store: CollabStore
                if self._config.redis_url:
                    from .collab_redis import RedisStore

                    store = RedisStore(self._config.redis_url)
                else:
                    from .runs import state_dir

                    store = FileStore(state_dir(self._config) / "collab")
                service = CollabService(self._workspace, self._bus, store)
                await service.start()
                self.service = service
        return self.service

    async def close(self) -> None:
        self.closed = True
        service, self.service = self.service, None
        if service is not None:
            await service.close()


@dataclass
class Gateway:
    """Everything one gateway process holds, shared by all doors."""

    config: GatewayConfig
    registry: Registry
    workspace: Workspace
    bus: EventBus
    core: Core
    metrics: Metrics
    authenticator: Authenticator
    limiter: RateLimiter | None
    analysis: AnalysisService
    federation: Federation | None = None  # upstream MCP servers; set by start() when any are configured
    _background_started: bool = field(default=False, init=False, repr=False)
    _background_task: asyncio.Future[None] | None = field(default=None, init=False, repr=False)
    _closing: bool = field(default=False, init=False, repr=False)
    # -- LLM access, agents, inline completion (gateway/llm, gateway/agents) ------------------------------
    llm: LLMService | None = None
    collab: CollabAccess | None = None  # shared documents (gateway/collab); built on first use
    membership: Membership | None = None  # workspace roles set by owners (gateway/capabilities/admin)
    _members_task: asyncio.Task[None] | None = None

    async def _follow_members(self) -> None:
        """Apply member changes made on other instances."""
        from .capabilities.admin import MEMBERS_TOPIC, apply_member_event

        with self.bus.subscribe(MEMBERS_TOPIC) as sub:
            async for event in sub:
                if event.origin != self.bus.instance_id and self.membership is not None:
                    apply_member_event(self.membership, event)

    def start_llm(self) -> None:
        """Refuse agents that name unknown tools; import litellm in the background when a model is set."""
        if self.config.agents:
            from .agents import check_agent_tools

            prefixes = [u.name + "_" if u.prefix is None else u.prefix for u in self.config.mcp.upstreams]
            problems = check_agent_tools(self.registry, self.config.agents, prefixes)
            if problems:
                raise StartupRefused("; ".join(problems))
        if self.llm is not None:
            self.llm.start_warming()

    # -- end LLM ------------------------------------------------------------------------------------------
    # -- durable run queue (gateway/runs) -----------------------------------------------------------------
    runs: RunQueue | None = None  # set by start() when agents are configured

    async def start_runs(self) -> None:
        """Open the run queue (SQLite in the state dir, or Redis) and start its workers, when agents exist.

        Without agents there is nothing to run, and no state directory is created in the workspace.
        """
        if self.runs is not None or "run_agent" not in self.registry:
            return
        from .runs import build_run_queue, state_dir

        queue = build_run_queue(self.core, self.config, state_dir(self.config))
        await queue.start()
        self.runs = queue

    async def close_runs(self) -> None:
        """Stop the workers; runs cut short go back to the queue for the next start (or another instance)."""
        runs, self.runs = self.runs, None
        if runs is not None:
            await runs.close()

    # -- end of durable run queue -------------------------------------------------------------------------

    async def start(self, *, background: bool = True) -> None:
        """Start what serving needs. With `background=False` the analysis engines' background work
        (workspace index, disk watcher, warming jedi) waits for `ready()`: `gateway lsp` answers the
        editor's initialize first and does that work afterwards instead of competing with it."""
        self.start_llm()  # LLM: first, so a refused agent config leaves nothing to clean up
        await self.bus.start()
        if self.membership is not None and self._members_task is None:
            self._members_task = asyncio.get_running_loop().create_task(self._follow_members())
        if background:
            await self.start_background()
        await self.start_federation()
        await self.start_runs()  # runs: last, its workers use everything above

    async def start_background(self) -> None:
        """Start the analysis engines' background work (once)."""
        if self._background_started:
            return
        self._background_started = True
        await self.analysis.start()
        await asyncio.to_thread(self.metrics.build)  # prometheus_client, before the first execution needs it

    def ready(self) -> None:
        """The first client has its answer (or the listeners are up): resume the garbage collector that
        start-up paused and start the background work `start(background=False)` held back. Idempotent."""
        resume_gc()
        if not self._background_started and self._background_task is None and not self._closing:
            self._background_task = asyncio.ensure_future(self.start_background())

    async def close(self) -> None:
        self._closing = True
        if self._background_task is not None:
            with contextlib.suppress(Exception):
                await self._background_task  # it returns quickly; then analysis.close() stops what it began
        await self.close_runs()  # runs: first, its workers use everything below
        if self.collab is not None:
            await self.collab.close()
        if self._members_task is not None:
            self._members_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._members_task
        if self.llm is not None:  # LLM
            await self.llm.close()
        await self.close_federation()
        await self.analysis.close()
        await self.bus.close()
        if self.limiter is not None:
            await self.limiter.close()
        access_lines.flush()  # the last executions' lines, before the process goes

    # -- MCP federation (protocols.mcp_client, imported only when upstreams are configured) ---------------
    async def start_federation(self) -> None:
        """Connect the configured upstream MCP servers; their tools join the registry as they come up."""
        if not self.config.mcp.upstreams or self.federation is not None:
            return
        from protocols.mcp_client import Federation

        self.federation = Federation(self.config.mcp.upstreams, self.registry, workspace_root=self.workspace.root)
        await self.federation.start()

    async def close_federation(self) -> None:
        """Disconnect the upstream MCP servers and withdraw their tools."""
        federation, self.federation = self.federation, None
        if federation is not None:
            await federation.close()

    # -- end of MCP federation ----------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True when `host` names only loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(config: GatewayConfig) -> None:
    """Refuse to listen beyond loopback with no authentication configured."""
    host = config.server.host
    if not is_loopback(host) and not config.auth.enabled:
        raise StartupRefused(
            f"refusing to listen on {host}: it is not a loopback address and no auth is configured. "
            "Configure [auth] api_keys or [auth.jwt], or bind to 127.0.0.1."
        )


def build_bus(config: GatewayConfig) -> EventBus:
    if config.redis_url:
        from .redis_bus import RedisBus

        return RedisBus(config.redis_url, queue_size=config.limits.bus_queue_size)
    return InMemoryBus(queue_size=config.limits.bus_queue_size)


def build_engines(config: GatewayConfig, workspace: Workspace) -> list[Engine]:
    """The analysis engines in the order they are asked: managed servers, jedi, tree-sitter."""
    engines: list[Engine] = []
    limiter = asyncio.Semaphore(config.analysis.worker_threads)
    if config.analysis.servers:
        # The LSP client lives with the doors (it speaks lsprotocol); only this composition root imports it.
        from protocols.lsp_client import ManagedServerEngine

        from .analysis.presets import resolve_server

        engines.extend(ManagedServerEngine(resolve_server(s), workspace) for s in config.analysis.servers)
    if config.analysis.jedi:
        from .analysis.jedi_engine import JediEngine

        engines.append(JediEngine(workspace, limiter))
    if config.analysis.tree_sitter:
        from .analysis.treesitter import TreeSitterEngine

        engines.append(TreeSitterEngine(workspace, config.analysis, limiter))
    return engines


def build_gateway(config: GatewayConfig) -> Gateway:
    """Wire registry, workspace, bus, auth, limits, engines and middleware from `config`."""
    registry = Registry()
    workspace = Workspace(Path(config.server.workspace))
    service = AnalysisService(workspace, build_engines(config, workspace))
    documents.register(registry)
    files.register(registry, config.limits)
    analysis.register(registry, service, config.analysis.max_results)
    # -- tools and write_file (gateway/tools, gateway/capabilities/workspace_write) --------------------
    from . import tools
    from .capabilities import workspace_write

    workspace_write.register(registry, config.limits)
    try:
        tools.register(registry, config.tools)
    except ValueError as exc:  # a tool that cannot work (bad schema, unset header variable): say which, exit 2
        raise StartupRefused(str(exc)) from None
    # -- end tools and write_file ---------------------------------------------------------------------
    bus = build_bus(config)
    metrics = Metrics()
    metrics.bind_bus(
        depth=lambda: float(bus.queue_depth()),
        dropped=lambda: float(bus.dropped_total),
        healthy=lambda: bus.healthy,
    )
    # -- LLM access, agents, inline completion (gateway/llm, gateway/agents); litellm loads lazily -----
    llm = LLMService(config.models, metrics)
    # Both register nothing unless configured; without that their modules (and models) stay unimported.
    if config.agents:
        from .agents import register as register_agents

        register_agents(registry, llm, config.agents)
    if config.inline_completion.model is not None:
        from .capabilities import inline_completion

        inline_completion.register(registry, llm, config.inline_completion)
    # -- end LLM ------------------------------------------------------------------------------------------
    from .capabilities import admin
    from .capabilities import collab as collab_capabilities
    from .runs import state_dir

    membership = admin.Membership(state_dir(config) / "members.json")
    gateway_ref: list[Gateway] = []

    async def restart_upstream(name: str) -> bool:
        federation = gateway_ref[0].federation if gateway_ref else None
        upstream = federation.upstreams.get(name) if federation is not None else None
        if upstream is None:
            return False
        await upstream.close()
        upstream.start()
        return True

    admin.register(registry, membership, restart_upstream if config.mcp.upstreams else None)

    collab = CollabAccess(config, workspace, bus)
    collab_capabilities.register(registry, collab.get)
    authenticator = Authenticator(config.auth)
    limiter = build_rate_limiter(config)
    core = Core(
        registry,
        workspace,
        bus,
        default_timeout=config.server.default_deadline_seconds,
        keep_finished=config.limits.finished_executions_kept,
    )
    core.middleware = [
        logging_middleware(),
        metrics_middleware(metrics),
        auth_middleware(authenticator.enabled, membership),
    ]
    if limiter is not None:
        core.middleware.append(rate_limit_middleware(limiter, metrics))
    gw = Gateway(
        config, registry, workspace, bus, core, metrics, authenticator, limiter, service, llm=llm, collab=collab
    )
    gw.membership = membership
    gateway_ref.append(gw)
    return gw


def settle_heap() -> None:
    """Collect once, then move everything start-up built (modules, classes, schemas, config) out of the
    collector's sight (`gc.freeze`): full collections then walk only what requests allocate. With
    everything imported a full collection took ~90 ms and a third of the collector's time under load.
    Call it before `Gateway.ready()`, whose own freeze would otherwise keep start-up's garbage for good."""
    gc.collect()
    gc.freeze()


def announce(door: str, url: str) -> None:
    print(f"listening {door} {url}", file=sys.stderr, flush=True)


async def start_http(gw: Gateway, lsp_door: LspDoor, mcp_door: McpDoor | None = None) -> tuple[web.AppRunner, str]:
    """Start the one HTTP listener (REST, LSP over WebSocket at /lsp, MCP at /mcp) and return its URL."""
    from aiohttp import web

    from protocols.rest import create_app
    from protocols.rest.server import add_lsp_websocket

    app = create_app(gw)
    add_lsp_websocket(app, lsp_door)
    from protocols.hub import add_hub_routes

    add_hub_routes(app, gw)
    # -- MCP door: streamable HTTP at /mcp (protocols/mcp) --
    if mcp_door is not None:
        from protocols.mcp.http import add_mcp_http

        add_mcp_http(app, mcp_door)
    # -- end MCP door --
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    server = runner.server
    if server is not None:
        gw.metrics.connections.labels("rest").set_function(lambda: float(len(server.connections)))
    site = web.TCPSite(runner, gw.config.server.host, gw.config.server.http_port, reuse_address=True)
    await site.start()
    port = gw.config.server.http_port
    if port == 0:
        port = _bound_port(runner, port)
    return runner, f"http://{_shown(gw.config.server.host)}:{port}"


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def run_main(main: Coroutine[Any, Any, int]) -> int:
    """`asyncio.run(main)`, telling sniffio that this thread runs asyncio while it does.

    anyio (under the MCP SDK, httpx and starlette) asks sniffio which async library is running dozens of
    times per MCP request. Without an answer declared for the thread, sniffio finds out each time by
    importing `asyncio.current_task` and calling it, and on Python 3.11 that makes a `getpid()` system
    call. The gateway's main thread runs nothing but this event loop, so it says so once, through sniffio's
    own `thread_local.name` (the hook event-loop owners set); other threads are unaffected."""
    try:
        import sniffio
    except ImportError:  # anyio then asks asyncio directly
        return asyncio.run(main)
    previous = sniffio.thread_local.name
    sniffio.thread_local.name = "asyncio"
    try:
        return asyncio.run(main)
    finally:
        sniffio.thread_local.name = previous


async def run_lsp_stdio(config: GatewayConfig) -> int:
    """`gateway lsp`: the LSP door over this process's stdin and stdout."""
    from protocols.lsp import run_stdio

    gw = build_gateway(config)
    await gw.start(background=False)  # the session calls gw.ready() once the initialize result is out
    try:
        return await run_stdio(gw)
    finally:
        await gw.core.drain(1.0)
        await gw.close()


# -- MCP door: stdio (protocols/mcp) --
async def run_mcp_stdio(config: GatewayConfig) -> int:
    """`gateway mcp`: the MCP door over this process's stdin and stdout."""
    from protocols.mcp import run_stdio as run_mcp

    gw = build_gateway(config)
    await gw.start()
    gw.ready()
    try:
        return await run_mcp(gw)
    finally:
        await gw.core.drain(1.0)
        await gw.close()


# -- end MCP door --


def _bound_port(runner: web.AppRunner, default: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return default


async def serve(config: GatewayConfig) -> int:
    """Run `gateway serve` until SIGINT/SIGTERM; returns the exit code."""
    check_exposure(config)
    gw = build_gateway(config)
    await gw.start()
    if gw.collab is not None:
        await gw.collab.get()  # a served workspace brings back its unsaved shared documents at once
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner: web.AppRunner | None = None
    from protocols.lsp import LspDoor

    lsp_door = LspDoor(gw)
    # -- MCP door (protocols/mcp) --
    from protocols.mcp import McpDoor

    mcp_door = McpDoor(gw)
    await mcp_door.start()
    # -- end MCP door --
    try:
        runner, url = await start_http(gw, lsp_door, mcp_door)
        announce("http", url)
        if config.server.lsp_port is not None:
            port = await lsp_door.start_tcp(config.server.host, config.server.lsp_port)
            announce("lsp", f"tcp://{_shown(config.server.host)}:{port}")
        settle_heap()  # listening: collect once and freeze what start-up built (before ready() freezes too)
        gw.ready()
        await stop.wait()
        log.info("shutting down: no new requests; waiting for running executions")
        for site in list(runner.sites):
            await site.stop()
        await lsp_door.stop_tcp()
        cancelled = await gw.core.drain(config.server.shutdown_grace_seconds)
        if cancelled:
            log.warning("cancelled %d executions that outlived the shutdown grace period", cancelled)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        if runner is not None:
            await runner.cleanup()
        await mcp_door.close()  # MCP door
        await gw.close()
    return 0
