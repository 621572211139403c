"""The REST door on the gateway's one HTTP listener."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gateway import __version__
from gateway.app import Gateway
from gateway.errors import Forbidden, GatewayError, InvalidParams, NotFound, PayloadTooLarge, Unauthorized
from gateway.execution import CallContext, Execution
from gateway.identity import Identity, Role
from gateway.metrics import CONTENT_TYPE_LATEST
from gateway.registry import Door
from gateway.runs import RunQueue, RunRecord, RunStatus, parse_submit
from translators.errors import problem, problem_from_error
from translators.openapi import build_openapi, capability_path, rest_capabilities

log = logging.getLogger("gateway.rest")

GATEWAY_KEY = web.AppKey("gateway", Gateway)
IDENTITY = web.RequestKey("gateway.identity", Identity)
# RFC 9728 protected-resource metadata (for MCP clients over HTTP when JWT auth is configured): public.
WELL_KNOWN_RESOURCE = "/.well-known/oauth-protected-resource"
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", WELL_KNOWN_RESOURCE, WELL_KNOWN_RESOURCE + "/mcp"}
)
PROBLEM = "application/problem+json"
SOCKET_PATHS = frozenset({"/lsp", "/ws"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM, headers=headers, charset="utf-8")


def error_response(error: GatewayError, resource_metadata: str | None = None) -> web.Response:
    status, body = problem_from_error(error)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="gateway"'
        if resource_metadata is not None:  # RFC 9728 section 5.1
            headers["WWW-Authenticate"] += f', resource_metadata="{resource_metadata}"'
    if status == 429:
        headers["Retry-After"] = str(max(1, int(-(-float(body.get("retry_after", 1)) // 1))))
    return problem_response(status, body, headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into problem+json; nothing else (no traceback) reaches the wire."""
    try:
        return await handler(request)
    except GatewayError as exc:
        if exc.code == "internal":
            log.error("internal error on %s %s: %s", request.method, request.path, exc.message)
        metadata = resource_metadata_url(request) if exc.code == "unauthorized" else None
        return error_response(exc, metadata)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(exc.status, "http_error")
        detail = exc.reason
        if exc.status == 413:
            detail = "request body is larger than the configured limit"
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return problem_response(exc.status, problem(exc.status, code, detail), headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(500, problem(500, "internal", "internal error; see the gateway log"))


# -- RFC 9728 protected-resource metadata (the MCP door's OAuth discovery; JWT auth only) ----------------
def _resource_url(request: web.Request) -> str | None:
    """This gateway's resource URL: `[auth.jwt] resource`, else the MCP endpoint at the requested host."""
    gw = request.app[GATEWAY_KEY]
    jwt = gw.config.auth.jwt
    if jwt is None:
        return None
    if jwt.resource:
        return jwt.resource
    host = "".join(c for c in request.host if c.isalnum() or c in ".-:[]_") or "localhost"
    return f"{request.scheme}://{host}/mcp"


def resource_metadata_url(request: web.Request) -> str | None:
    """Where the protected-resource metadata is (RFC 9728 section 3.1), or None without JWT auth."""
    resource = _resource_url(request)
    if resource is None:
        return None
    scheme, _, rest = resource.partition("://")
    authority, slash, path = rest.partition("/")
    suffix = f"/{path}".rstrip("/") if slash else ""
    return f"{scheme}://{authority}{WELL_KNOWN_RESOURCE}{suffix}"


async def protected_resource_metadata(request: web.Request) -> web.Response:
    """RFC 9728 metadata: the resource, who issues its tokens, and that they go in the header only."""
    gw = request.app[GATEWAY_KEY]
    jwt = gw.config.auth.jwt
    resource = _resource_url(request)
    if jwt is None or resource is None:
        raise NotFound("no protected-resource metadata: JWT auth is not configured")
    body = {
        "resource": resource,
        "authorization_servers": list(jwt.authorization_servers) or [jwt.issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": "gateway",
    }
    return web.json_response(body, headers={"Cache-Control": "max-age=300"})


# -- end RFC 9728 -----------------------------------------------------------------------------------------


def auth_middleware_for(gw: Gateway) -> Any:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization")
        is_socket = request.path in SOCKET_PATHS or request.path.startswith("/yjs/")
        if header is None and is_socket and "token" in request.query:
            header = f"Bearer {request.query['token']}"  # browsers cannot set headers on a WebSocket
        identity = gw.authenticator.authenticate(header)
        request[IDENTITY] = identity
        return await handler(request)

    return authenticate


def body_size_middleware_for(limit: int) -> Any:
    @web.middleware
    async def check_size(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(
                f"request body of {request.content_length} bytes exceeds the limit of {limit}",
                data={"limit": limit},
            )
        return await handler(request)

    return check_size


def _identity(request: web.Request) -> Identity:
    identity: Identity = request[IDENTITY]
    return identity


def _dump(model: BaseModel) -> str:
    return model.model_dump_json()


async def read_json_object(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidParams(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidParams("request body must be a JSON object")
    return body


def _wants_sse(request: web.Request) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


def _wants_async(request: web.Request) -> bool:
    return "respond-async" in request.headers.get("Prefer", "")


def _timeout(request: web.Request) -> float | None:
    raw = request.headers.get("Request-Timeout") or request.query.get("timeout")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidParams("timeout must be a number of seconds") from None
    if not 0 < value <= 3600:
        raise InvalidParams("timeout must be between 0 and 3600 seconds")
    return value


class RestDoor:
    """Request handlers; every capability call becomes a core execution."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._openapi: str | None = None
        gw.registry.on_change(self._forget_openapi)

    def _forget_openapi(self) -> None:
        self._openapi = None

    async def capabilities(self, request: web.Request) -> web.Response:
        caps = []
        for cap in rest_capabilities(list(self.gw.registry)):
            caps.append(
                {
                    "name": cap.name,
                    "summary": cap.summary,
                    "description": cap.description,
                    "path": capability_path(cap.name),
                    "doors": sorted(d.value for d in cap.doors),
                    "required_role": cap.required_role.name.lower(),
                    "read_only": cap.read_only,
                    "destructive": cap.destructive,
                    "idempotent": cap.idempotent,
                    "params_schema": cap.params_model.model_json_schema(),
                    "result_schema": cap.result_model.model_json_schema(mode="serialization"),
                }
            )
        return web.json_response({"capabilities": caps})

    async def call(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.gw.core.capability_for(name, Door.REST)
        params = await read_json_object(request)
        call = CallContext(
            identity=_identity(request), door=Door.REST, timeout=_timeout(request), meta={"keep_result": True}
        )
        if _wants_sse(request):
            return await self._call_sse(request, name, params, call)
        execution = self.gw.core.start(call, name, params)
        if _wants_async(request):
            location = f"/v1/executions/{execution.id}"
            return web.Response(
                status=202,
                text=_dump(execution.record),
                content_type="application/json",
                headers={"Location": location, "Preference-Applied": "respond-async"},
            )
        try:
            result = await execution.wait()
        except asyncio.CancelledError:
            execution.cancel()
            raise
        return web.Response(
            text=_dump(result), content_type="application/json", headers={"X-Execution-Id": execution.id}
        )

    async def _call_sse(
        self, request: web.Request, name: str, params: dict[str, Any], call: CallContext
    ) -> web.StreamResponse:
        execution = self.gw.core.start(call, name, params)
        reports = execution.progress_reports()
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Execution-Id": execution.id,
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        try:
            await _sse(response, "started", {"execution_id": execution.id, "capability": name})
            async for report in reports:
                await _sse(response, "progress", report.model_dump(exclude_none=True))
            assert execution.task is not None
            try:
                result = execution.task.result()
            except GatewayError as exc:
                await _sse(response, "error", problem_from_error(exc)[1])
            else:
                await _sse(response, "result", result.model_dump(mode="json"))
        except (ConnectionResetError, asyncio.CancelledError):
            execution.cancel()
            raise
        await response.write_eof()
        return response

    def _visible(self, request: web.Request, execution: Execution) -> None:
        identity = _identity(request)
        if identity.role < Role.ADMIN and execution.call.identity.subject != identity.subject:
            raise NotFound(f"no execution {execution.id!r}")

    async def get_execution(self, request: web.Request) -> web.Response:
        execution = self.gw.core.get_execution(request.match_info["id"])
        self._visible(request, execution)
        return web.Response(text=_dump(execution.record), content_type="application/json")

    async def cancel_execution(self, request: web.Request) -> web.Response:
        execution = self.gw.core.get_execution(request.match_info["id"])
        self._visible(request, execution)
        if _identity(request).role < Role.VIEWER:
            raise Forbidden("not allowed to cancel")
        if execution.done:
            status, body = (
                409,
                problem(409, "already_finished", f"execution already {execution.record.status}"),
            )
            body["execution"] = execution.record.model_dump(mode="json")
            return problem_response(status, body)
        execution.cancel()
        if execution.task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(execution.task), 5)
        return web.Response(text=_dump(execution.record), content_type="application/json")

    async def openapi(self, request: web.Request) -> web.Response:
        if self._openapi is None:
            self._openapi = json.dumps(
                build_openapi(
                    rest_capabilities(list(self.gw.registry)),
                    version=__version__,
                    auth=self.gw.authenticator.enabled,
                    run_record=RunRecord if self.gw.config.agents else None,
                )
            )
        return web.Response(text=self._openapi, content_type="application/json")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__})

    async def readyz(self, request: web.Request) -> web.Response:
        bus = self.gw.bus.status()
        ready = bus["healthy"] and self.gw.core.accepting
        body = {"status": "ready" if ready else "degraded", "bus": bus, "accepting": self.gw.core.accepting}
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.gw.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _sse(response: web.StreamResponse, event: str, data: Any) -> None:
    payload = json.dumps(data, separators=(",", ":"))
    await response.write(f"event: {event}\ndata: {payload}\n\n".encode())


# -- durable run queue (gateway/runs): POST /v1/agents/{name}/runs, GET /v1/runs, GET|DELETE /v1/runs/{id} --
RUNS_PAGE_DEFAULT = 50


class RunsDoor:
    """The run queue's endpoints; the queue itself is `Gateway.runs` (present when agents are configured)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def _queue(self) -> RunQueue:
        if self.gw.runs is None:
            raise NotFound("no run queue: no agents are configured")
        return self.gw.runs

    def _caller(self, request: web.Request) -> Identity:
        identity = _identity(request)
        if self.gw.authenticator.enabled and not identity.authenticated:
            raise Unauthorized("authentication required")
        return identity

    async def _visible(self, request: web.Request) -> RunRecord:
        """The run named in the path, if the caller asked for it (admins see every run)."""
        identity = self._caller(request)
        run_id = request.match_info["id"]
        record = await self._queue().get(run_id)
        if identity.role < Role.ADMIN and record.subject != identity.subject:
            raise NotFound(f"no run {run_id!r}", data={"run_id": run_id})
        return record

    async def submit(self, request: web.Request) -> web.Response:
        """Queue a run of the agent: 202 with the record and `Location: /v1/runs/{id}`."""
        identity = self._caller(request)
        name = request.match_info["name"]
        queue = self._queue()
        if name not in {a.name for a in self.gw.config.agents}:
            raise NotFound(f"no agent named {name!r}", data={"agent": name})
        body = parse_submit(await read_json_object(request))
        record = await queue.submit(identity, name, body)
        return web.Response(
            status=202,
            text=_dump(record),
            content_type="application/json",
            headers={"Location": f"/v1/runs/{record.id}"},
        )

    async def get(self, request: web.Request) -> web.StreamResponse:
        """The record; with `Accept: text/event-stream` the run live: `run`, `progress`..., `final`."""
        record = await self._visible(request)
        if not _wants_sse(request):
            return web.Response(text=_dump(record), content_type="application/json")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        try:
            async with contextlib.aclosing(self._queue().watch(record.id)) as events:
                async for kind, data in events:
                    await _sse(response, kind, data)
            await response.write_eof()
        except ConnectionResetError:  # the client went away; the run goes on
            pass
        return response

    async def cancel(self, request: web.Request) -> web.Response:
        """Cancel a queued or running run: 200 with the final record (202 if it is still stopping),
        409 when it had already ended."""
        record = await self._visible(request)
        record, changed = await self._queue().cancel(record.id)
        if not changed:
            body = problem(409, "already_finished", f"run already {record.status.value}")
            body["run"] = record.model_dump(mode="json")
            return problem_response(409, body)
        status = 200 if record.status.terminal else 202
        return web.Response(status=status, text=_dump(record), content_type="application/json")

    async def list(self, request: web.Request) -> web.Response:
        """The caller's runs, newest first: `?status=&limit=&cursor=`."""
        identity = self._caller(request)
        raw_status = request.query.get("status") or None
        try:
            status = RunStatus(raw_status) if raw_status else None
        except ValueError:
            allowed = ", ".join(s.value for s in RunStatus)
            raise InvalidParams(f"status must be one of {allowed}", data={"value": raw_status}) from None
        most = self.gw.config.limits.max_page_size
        try:
            limit = int(request.query.get("limit", RUNS_PAGE_DEFAULT))
        except ValueError:
            raise InvalidParams("limit must be an integer") from None
        if not 1 <= limit <= most:
            raise InvalidParams(f"limit must be between 1 and {most}", data={"limit": limit})
        if self.gw.runs is None:
            return web.json_response({"runs": [], "next_cursor": None})
        page = await self.gw.runs.list(identity.subject, status=status, limit=limit, cursor=request.query.get("cursor"))
        return web.Response(text=_dump(page), content_type="application/json")


def add_run_routes(app: web.Application, gw: Gateway) -> None:
    """The run queue's routes on the REST app."""
    door = RunsDoor(gw)
    app.router.add_post("/v1/agents/{name}/runs", door.submit)
    app.router.add_get("/v1/runs", door.list)
    app.router.add_get("/v1/runs/{id}", door.get)
    app.router.add_delete("/v1/runs/{id}", door.cancel)


# -- end of durable run queue ---------------------------------------------------------------------------------


def create_app(gw: Gateway) -> web.Application:
    """The aiohttp application of the REST door; later doors add their routes to it."""
    limit = gw.config.server.max_body_bytes
    app = web.Application(
        client_max_size=limit,
        middlewares=[errors_middleware, body_size_middleware_for(limit), auth_middleware_for(gw)],
    )
    app[GATEWAY_KEY] = gw
    door = RestDoor(gw)

    app.router.add_get("/v1/capabilities", door.capabilities)
    app.router.add_post("/v1/capabilities/{name}", door.call)
    app.router.add_get("/v1/executions/{id}", door.get_execution)
    app.router.add_delete("/v1/executions/{id}", door.cancel_execution)
    app.router.add_get("/openapi.json", door.openapi)
    app.router.add_get("/healthz", door.healthz)
    app.router.add_get("/readyz", door.readyz)
    app.router.add_get("/metrics", door.metrics)
    add_run_routes(app, gw)  # the durable run queue
    app.router.add_get(WELL_KNOWN_RESOURCE, protected_resource_metadata)
    app.router.add_get(WELL_KNOWN_RESOURCE + "/mcp", protected_resource_metadata)
    return app


def add_lsp_websocket(app: web.Application, lsp_door: Any) -> None:
    """LSP over WebSocket at /lsp: one JSON-RPC message per frame, one session per socket."""

    async def lsp_socket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=32 * 1024 * 1024)
        await ws.prepare(request)
        await lsp_door.handle_websocket(ws, _identity(request))
        return ws

    app.router.add_get("/lsp", lsp_socket)
