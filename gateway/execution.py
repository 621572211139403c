"""Executions: every request on every door becomes one execution of one capability.

An execution has an id, the caller's identity and door, a deadline, cancellation and progress; its
lifecycle (started, progress, finished, failed, cancelled, with duration) is published on the event
bus, and one middleware chain (auth, rate limit, metrics, log line) wraps every one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, Field, ValidationError

from .errors import Cancelled, GatewayError, Internal, InvalidParams, NotFound, Timeout
from .events import Event, EventBus
from .identity import LOCAL_OWNER, Identity
from .registry import Capability, Door, Registry

if TYPE_CHECKING:
    from .workspace import Workspace

log = logging.getLogger("gateway.execution")

EXECUTION_TOPIC = "executions"


class ExecutionStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ProgressReport(BaseModel):
    """One progress step: a message, an optional percentage, optional structured data."""

    message: str | None = None
    percentage: float | None = Field(None, ge=0, le=100)
    data: dict[str, Any] | None = None


class ErrorInfo(BaseModel):
    """A wire-safe description of a failure."""

    code: str
    message: str
    data: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_error(cls, error: GatewayError) -> ErrorInfo:
        return cls(code=error.code, message=error.message, data=error.data)


class ExecutionRecord(BaseModel):
    """What `GET /v1/executions/{id}` shows: the state of one execution."""

    id: str
    capability: str
    door: str
    subject: str
    status: ExecutionStatus
    started_at: float
    finished_at: float | None = None
    duration_ms: float | None = None
    progress: ProgressReport | None = None
    error: ErrorInfo | None = None
    result: dict[str, Any] | None = None


class ClientPeer(Protocol):
    """What the calling client can do for a running execution, when its door supports it.

    The MCP door provides one (elicitation, sampling, logging); federated upstream tools use it to pass
    an upstream server's requests through to the downstream client.
    """

    def supports(self, feature: Literal["elicitation", "sampling", "logging"]) -> bool: ...

    async def elicit(self, message: str, requested_schema: dict[str, Any]) -> dict[str, Any]:
        """Ask the user; returns `{"action": "accept"|"decline"|"cancel", "content": {...}}`."""
        ...

    async def create_message(self, params: dict[str, Any]) -> dict[str, Any]:
        """MCP `sampling/createMessage` with plain-dict params and result."""
        ...

    async def log(self, level: str, data: Any, logger: str | None = None) -> None:
        """A log message for the client (MCP `notifications/message`)."""
        ...


@dataclass
class CallContext:
    """What a door knows about a request: who, which door, and how long it may take."""

    identity: Identity = LOCAL_OWNER
    door: Door = Door.INTERNAL
    timeout: float | None = None
    on_progress: Callable[[ProgressReport], None] | None = None
    request_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    peer: ClientPeer | None = None


class ExecutionContext:
    """What a capability handler sees: the call, the core, the workspace, cancellation and progress."""

    def __init__(self, execution: Execution, core: Core) -> None:
        self._execution = execution
        self.core = core

    @property
    def id(self) -> str:
        return self._execution.id

    @property
    def call(self) -> CallContext:
        return self._execution.call

    @property
    def identity(self) -> Identity:
        return self._execution.call.identity

    @property
    def peer(self) -> ClientPeer | None:
        """The calling client's back channel, when its door has one."""
        return self._execution.call.peer

    @property
    def workspace(self) -> Workspace:
        return self.core.workspace

    @property
    def deadline(self) -> float:
        return self._execution.deadline

    @property
    def cancelled(self) -> bool:
        return self._execution.cancel_requested

    def check_cancelled(self) -> None:
        """Raise `Cancelled` when a cancel was asked for; for handlers that run loops in threads."""
        if self._execution.cancel_requested:
            raise Cancelled("execution cancelled")

    def progress(self, message: str | None = None, percentage: float | None = None, **data: Any) -> None:
        self._execution.report(ProgressReport(message=message, percentage=percentage, data=data or None))


class Execution:
    """One running (or finished) call of a capability."""

    def __init__(self, core: Core, cap: Capability[Any, Any], params: BaseModel, call: CallContext) -> None:
        self.core = core
        self.id = secrets.token_hex(16)  # 32 random hex digits, like uuid4().hex, at a fraction of the cost
        self.capability = cap
        self.params = params
        self.call = call
        self.started_mono = time.monotonic()
        timeout = call.timeout if call.timeout is not None else core.default_timeout
        self.deadline = self.started_mono + timeout
        # The record's fields, kept plain: `record` builds the model only when someone asks for it.
        self.status = ExecutionStatus.RUNNING
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.duration_ms: float | None = None
        self.last_progress: ProgressReport | None = None
        self.error: ErrorInfo | None = None
        self.result: dict[str, Any] | None = None
        self.cancel_requested = False
        self.task: asyncio.Task[Any] | None = None
        """The task it runs in: its own (`Core.start`) or its caller's (`Core.execute`)."""
        self._progress_listeners: list[Callable[[ProgressReport], None]] = []
        if call.on_progress is not None:
            self._progress_listeners.append(call.on_progress)

    def release(self) -> None:
        """Drop what only a running execution needs: the caller's back channel, progress callback and meta
        (a door's request context, session and request objects). A finished
        execution is kept for `GET /v1/executions/{id}` (its record, its caller's identity and door) among
        the last `keep_finished`; holding on to every one's request objects made each collection longer."""
        call = self.call
        if call.peer is not None or call.on_progress is not None or call.meta:
            self.call = CallContext(
                identity=call.identity, door=call.door, timeout=call.timeout, request_id=call.request_id
            )

    @property
    def record(self) -> ExecutionRecord:
        """What `GET /v1/executions/{id}` shows, as of now."""
        return ExecutionRecord(
            id=self.id,
            capability=self.capability.name,
            door=self.call.door.value,
            subject=self.call.identity.subject,
            status=self.status,
            started_at=self.started_at,
            finished_at=self.finished_at,
            duration_ms=self.duration_ms,
            progress=self.last_progress,
            error=self.error,
            result=self.result,
        )

    @property
    def done(self) -> bool:
        return self.status is not ExecutionStatus.RUNNING

    def add_progress_listener(self, listener: Callable[[ProgressReport], None]) -> None:
        self._progress_listeners.append(listener)

    def report(self, report: ProgressReport) -> None:
        if self.done:
            return
        self.last_progress = report
        for listener in list(self._progress_listeners):
            try:
                listener(report)
            except Exception:
                log.exception("progress listener failed for execution %s", self.id)
        self.core.emit(self, "progress", report.model_dump(exclude_none=True))

    def cancel(self) -> bool:
        """Ask the execution to stop; returns False when it had already ended."""
        if self.done or self.task is None:
            return False
        self.cancel_requested = True
        self.task.cancel()
        return True

    async def wait(self) -> BaseModel:
        assert self.task is not None
        return await asyncio.shield(self.task)

    def progress_reports(self, maxsize: int = 256) -> AsyncIterator[ProgressReport]:
        """This execution's progress reports as they come, until it ends, for a door to stream.

        Listening starts at this call, so call it right after `Core.start` to miss nothing. The buffer is
        bounded: a slow reader loses the oldest reports, never the newest, and never slows the execution.
        """
        queue: asyncio.Queue[ProgressReport] = asyncio.Queue(maxsize)

        def on_progress(report: ProgressReport) -> None:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(report)

        self.add_progress_listener(on_progress)
        return self._stream(queue, on_progress)

    async def _stream(
        self, queue: asyncio.Queue[ProgressReport], listener: Callable[[ProgressReport], None]
    ) -> AsyncIterator[ProgressReport]:
        task = self.task
        assert task is not None
        try:
            while not task.done():
                getter = asyncio.ensure_future(queue.get())
                try:
                    await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not getter.done():
                        getter.cancel()
                if getter.done() and not getter.cancelled():
                    yield getter.result()
            while not queue.empty():
                yield queue.get_nowait()
        finally:
            self._progress_listeners.remove(listener)


Next = Callable[[], Awaitable[BaseModel]]
Middleware = Callable[[Execution, Next], Awaitable[BaseModel]]


class Core:
    """The execution core: registry, workspace, bus and the middleware chain."""

    def __init__(
        self,
        registry: Registry,
        workspace: Workspace,
        bus: EventBus,
        *,
        default_timeout: float = 60.0,
        keep_finished: int = 1000,
    ) -> None:
        self.registry = registry
        self.workspace = workspace
        self.bus = bus
        self.default_timeout = default_timeout
        self.keep_finished = keep_finished
        self.middleware: list[Middleware] = []
        self._running: dict[str, Execution] = {}
        self._finished: OrderedDict[str, Execution] = OrderedDict()
        self.accepting = True

    # -- lookup -------------------------------------------------------------------------------
    def capability_for(self, name: str, door: Door) -> Capability[Any, Any]:
        cap = self.registry.get(name)
        if not cap.exposed_on(door):
            raise NotFound(f"capability {name!r} is not available on the {door.value} door")
        return cap

    def get_execution(self, execution_id: str) -> Execution:
        found = self._running.get(execution_id) or self._finished.get(execution_id)
        if found is None:
            raise NotFound(f"no execution {execution_id!r}", data={"execution_id": execution_id})
        return found

    @property
    def running(self) -> list[Execution]:
        return list(self._running.values())

    # -- running --------------------------------------------------------------------------------
    def validate(self, cap: Capability[Any, Any], params: Mapping[str, Any] | BaseModel | None) -> BaseModel:
        model: type[BaseModel] = cap.params_model
        if isinstance(params, model):
            return params
        raw = params.model_dump() if isinstance(params, BaseModel) else (params or {})
        if not isinstance(raw, Mapping):
            raise InvalidParams("params must be an object")
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            errors = [
                {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_input=False)
            ]
            raise InvalidParams(f"invalid params for {cap.name}", data={"errors": errors}) from None

    def _admit(self, call: CallContext, name: str, params: Mapping[str, Any] | BaseModel | None) -> Execution:
        """A new running execution of `name` with validated params (not started yet)."""
        if not self.accepting:
            raise Cancelled("the gateway is shutting down")
        cap = self.capability_for(name, call.door)
        execution = Execution(self, cap, self.validate(cap, params), call)
        self._running[execution.id] = execution
        return execution

    def start(self, call: CallContext, name: str, params: Mapping[str, Any] | BaseModel | None = None) -> Execution:
        """Validate and start an execution in its own task; the caller may await `execution.wait()`."""
        execution = self._admit(call, name, params)
        execution.task = asyncio.create_task(
            self._execute(execution), name=f"exec:{execution.capability.name}:{execution.id}"
        )
        execution.task.add_done_callback(functools.partial(_task_done, execution))
        return execution

    async def execute(
        self, call: CallContext, name: str, params: Mapping[str, Any] | BaseModel | None = None
    ) -> BaseModel:
        """Run one capability to its end in the caller's own task; cancelling the caller cancels it.

        No task of its own (unlike `start`): that saves a task and two event-loop iterations (the first
        step, and waking the caller) on every request of every door. `Execution.cancel()` cancels the
        caller's task, and the cancellation comes back out as `Cancelled`; a cancellation of the caller by
        anyone else (a client gone, a timeout around this call) cancels the execution and propagates."""
        execution = self._admit(call, name, params)
        execution.task = asyncio.current_task()
        try:
            return await self._execute(execution, inline=True)
        finally:
            execution.release()

    async def _execute(self, execution: Execution, inline: bool = False) -> BaseModel:
        self.emit(execution, "started", {})
        ctx = ExecutionContext(execution, self)
        cap = execution.capability

        async def call_handler() -> BaseModel:
            result: object = await cap.handler(ctx, execution.params)
            if not isinstance(result, BaseModel) or not isinstance(result, cap.result_model):
                raise Internal(f"capability {cap.name} returned {type(result).__name__}")
            return result

        chain: Next = call_handler
        for mw in reversed(self.middleware):
            chain = _bind(mw, execution, chain)
        try:
            remaining = max(0.0, execution.deadline - time.monotonic())
            try:
                async with asyncio.timeout(remaining):
                    result = await chain()
            except TimeoutError:
                if execution.cancel_requested:
                    raise
                raise Timeout(
                    f"{cap.name} did not finish within its deadline",
                    data={"timeout_seconds": round(execution.deadline - execution.started_mono, 3)},
                ) from None
        except asyncio.CancelledError:
            self._finish(execution, ExecutionStatus.CANCELLED, error=Cancelled("execution cancelled"))
            task = execution.task
            # In the caller's own task (inline) only the cancellation `Execution.cancel()` asked for becomes
            # `Cancelled`; anyone else's cancellation of that task must go on as a cancellation.
            if inline and task is not None and (not execution.cancel_requested or task.uncancel() > 0):
                raise
            raise Cancelled("execution cancelled") from None
        except Cancelled as exc:
            self._finish(execution, ExecutionStatus.CANCELLED, error=exc)
            raise
        except GatewayError as exc:
            self._finish(execution, ExecutionStatus.FAILED, error=exc)
            raise
        except Exception as exc:
            log.exception("capability %s failed in execution %s", cap.name, execution.id)
            error = Internal("internal error; see the gateway log", data={"execution_id": execution.id})
            self._finish(execution, ExecutionStatus.FAILED, error=error)
            raise error from exc
        if inline and execution.cancel_requested and execution.task is not None:
            execution.task.uncancel()  # the handler swallowed the cancellation: the caller must not inherit it
        self._finish(execution, ExecutionStatus.FINISHED, result=result)
        return result

    def _finish(
        self,
        execution: Execution,
        status: ExecutionStatus,
        *,
        result: BaseModel | None = None,
        error: GatewayError | None = None,
    ) -> None:
        execution.status = status
        execution.finished_at = time.time()
        duration_ms = execution.duration_ms = round((time.monotonic() - execution.started_mono) * 1000, 3)
        if error is not None:
            execution.error = ErrorInfo.from_error(error)
        if result is not None and execution.call.meta.get("keep_result"):
            # Only doors that can ask for it later (REST's GET /v1/executions/{id}) keep the result: a
            # thousand kept outlines or file texts made the heap, and full GC pauses, grow.
            execution.result = result.model_dump(mode="json")
        self._running.pop(execution.id, None)
        self._finished[execution.id] = execution
        while len(self._finished) > self.keep_finished:
            self._finished.popitem(last=False)
        data: dict[str, Any] = {"duration_ms": duration_ms}
        if execution.error is not None:
            data["error"] = execution.error.model_dump()
        self.emit(execution, status.value, data)

    def emit(self, execution: Execution, kind: str, data: dict[str, Any]) -> None:
        """Publish a lifecycle event for `execution` on the bus without blocking the caller (nothing to do
        when no one, here or on another instance, could receive it)."""
        if not self.bus.wants(EXECUTION_TOPIC):
            return
        event = Event(
            topic=EXECUTION_TOPIC,
            type=f"execution.{kind}",
            data={
                "execution_id": execution.id,
                "capability": execution.capability.name,
                "door": execution.call.door.value,
                "subject": execution.call.identity.subject,
                **data,
            },
        )
        self.bus.publish_nowait(event)

    # -- shutdown ----------------------------------------------------------------------------------
    async def drain(self, grace_seconds: float) -> int:
        """Stop accepting, let running executions finish for `grace_seconds`, cancel the rest.

        Returns how many executions had to be cancelled.
        """
        self.accepting = False
        tasks = [e.task for e in self._running.values() if e.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=grace_seconds)
        leftover = list(self._running.values())
        for execution in leftover:
            execution.cancel()
        pending = [e.task for e in leftover if e.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=2)
        return len(leftover)


def _task_done(execution: Execution, task: asyncio.Task[BaseModel]) -> None:
    """An execution's own task ended: mark its outcome as seen (the execution holds it), close an execution
    whose task was cancelled before it ever ran, and drop what only a running execution needs."""
    if not task.cancelled():
        task.exception()
    if not execution.done:
        execution.core._finish(execution, ExecutionStatus.CANCELLED, error=Cancelled("execution cancelled"))
    execution.release()


def _bind(mw: Middleware, execution: Execution, nxt: Next) -> Next:
    async def step() -> BaseModel:
        return await mw(execution, nxt)

    return step
