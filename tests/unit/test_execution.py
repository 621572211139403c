from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.errors import Cancelled, Forbidden, Internal, InvalidParams, NotFound, RateLimited, Timeout, Unauthorized
from gateway.events import InMemoryBus
from gateway.execution import CallContext, Core, Execution, ExecutionContext, ExecutionStatus, ProgressReport
from gateway.identity import ANONYMOUS, Identity, Role
from gateway.metrics import Metrics
from gateway.middleware import auth_middleware, metrics_middleware, rate_limit_middleware
from gateway.ratelimit import MemoryRateLimiter
from gateway.registry import Door, Registry
from gateway.workspace import Workspace


class WaitParams(BaseModel):
    steps: int = 3


class Done(BaseModel):
    steps: int


def build(tmp_path: Path) -> tuple[Core, asyncio.Event]:
    registry = Registry()
    release = asyncio.Event()

    @registry.register("wait", WaitParams, Done)
    async def wait(ctx: ExecutionContext, params: WaitParams) -> Done:
        """Report progress, then wait until released."""
        for i in range(params.steps):
            ctx.progress(f"step {i}", percentage=100 * i / params.steps, step=i)
        await release.wait()
        return Done(steps=params.steps)

    @registry.register("boom", WaitParams, Done)
    async def boom(ctx: ExecutionContext, params: WaitParams) -> Done:
        """Fail unexpectedly."""
        raise RuntimeError("secret internals")

    @registry.register("edit", WaitParams, Done, required_role=Role.MEMBER, doors=frozenset({Door.REST}))
    async def edit(ctx: ExecutionContext, params: WaitParams) -> Done:
        """Needs the member role."""
        return Done(steps=params.steps)

    core = Core(registry, Workspace(tmp_path), InMemoryBus())
    return core, release


async def test_execution_reports_progress_and_publishes_lifecycle(tmp_path: Path) -> None:
    core, release = build(tmp_path)
    events = core.bus.subscribe("executions")
    reports: list[ProgressReport] = []
    call = CallContext(on_progress=reports.append, meta={"keep_result": True})
    execution = core.start(call, "wait", {"steps": 2})
    first = await events.get(timeout=2)
    assert first.type == "execution.started"
    assert first.data["execution_id"] == execution.id
    release.set()
    result = await execution.wait()
    assert result == Done(steps=2)
    assert [r.message for r in reports] == ["step 0", "step 1"]
    types = [(await events.get(timeout=2)).type for _ in range(3)]
    assert types == ["execution.progress", "execution.progress", "execution.finished"]
    assert execution.record.status is ExecutionStatus.FINISHED
    assert execution.record.duration_ms is not None and execution.record.result == {"steps": 2}
    assert core.get_execution(execution.id) is execution
    other = core.start(CallContext(), "wait", {"steps": 0})
    await other.wait()
    assert other.record.result is None  # kept only when the door can ask for it later


async def test_cancel_stops_a_running_execution(tmp_path: Path) -> None:
    core, _ = build(tmp_path)
    events = core.bus.subscribe("executions")
    execution = core.start(CallContext(), "wait", {})
    await events.get(timeout=2)  # started
    assert execution.cancel() is True
    with pytest.raises(Cancelled):
        await execution.wait()
    assert execution.record.status is ExecutionStatus.CANCELLED
    assert execution.cancel() is False
    kinds = [e.type async for e in _drain(events)]
    assert kinds[-1] == "execution.cancelled"


async def _drain(sub):  # type: ignore[no-untyped-def]
    while True:
        try:
            yield await sub.get(timeout=0.2)
        except TimeoutError:
            return


async def test_deadline_turns_into_timeout(tmp_path: Path) -> None:
    core, _ = build(tmp_path)
    with pytest.raises(Timeout) as info:
        await core.execute(CallContext(timeout=0.05), "wait", {})
    assert info.value.data["timeout_seconds"] == pytest.approx(0.05, abs=0.01)
    assert core.running == []


async def running_one(core: Core) -> Execution:
    """The execution running in `core`, once there is one (waiting at most 5 s)."""
    async with asyncio.timeout(5):
        while not core.running:
            await asyncio.sleep(0)
    assert len(core.running) == 1
    return core.running[0]


async def test_cancelling_the_caller_cancels_the_execution(tmp_path: Path) -> None:
    """Anyone's cancellation of the caller (a client gone) cancels the execution and goes on as one."""
    core, _ = build(tmp_path)
    caller = asyncio.create_task(core.execute(CallContext(), "wait", {}))
    execution = await running_one(core)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert execution.record.status is ExecutionStatus.CANCELLED
    assert core.running == []


async def test_invalid_params_are_refused_before_running(tmp_path: Path) -> None:
    core, _ = build(tmp_path)
    with pytest.raises(InvalidParams) as info:
        await core.execute(CallContext(), "wait", {"steps": "many"})
    assert info.value.data["errors"][0]["loc"] == "steps"
    assert core.running == []


async def test_unknown_and_door_hidden_capabilities_are_not_found(tmp_path: Path) -> None:
    core, _ = build(tmp_path)
    with pytest.raises(NotFound):
        await core.execute(CallContext(), "missing", {})
    with pytest.raises(NotFound):
        await core.execute(CallContext(door=Door.LSP), "edit", {})


async def test_unexpected_failures_become_internal_without_details(tmp_path: Path) -> None:
    core, _ = build(tmp_path)
    with pytest.raises(Internal) as info:
        await core.execute(CallContext(), "boom", {})
    assert "secret" not in info.value.message
    assert core.get_execution(info.value.data["execution_id"]).record.status is ExecutionStatus.FAILED


async def test_auth_middleware_checks_identity_and_role(tmp_path: Path) -> None:
    core, _ = build(tmp_path)
    core.middleware = [auth_middleware(auth_required=True)]
    with pytest.raises(Unauthorized):
        await core.execute(CallContext(identity=ANONYMOUS, door=Door.REST), "edit", {})
    viewer = Identity("v", "api_key", Role.VIEWER)
    with pytest.raises(Forbidden):
        await core.execute(CallContext(identity=viewer, door=Door.REST), "edit", {})
    member = Identity("m", "api_key", Role.MEMBER)
    assert await core.execute(CallContext(identity=member, door=Door.REST), "edit", {}) == Done(steps=3)


async def test_rate_limit_and_metrics_middleware(tmp_path: Path) -> None:
    core, _ = build(tmp_path)
    metrics = Metrics()
    core.middleware = [metrics_middleware(metrics), rate_limit_middleware(MemoryRateLimiter(0.001, 2), metrics)]
    member = Identity("m", "api_key", Role.MEMBER)
    call = CallContext(identity=member, door=Door.REST)
    await core.execute(call, "edit", {})
    await core.execute(call, "edit", {})
    with pytest.raises(RateLimited) as info:
        await core.execute(call, "edit", {})
    assert info.value.retry_after > 0
    text = metrics.render().decode()
    assert 'gateway_executions_total{capability="edit",door="rest",status="finished"} 2.0' in text
    assert 'gateway_executions_total{capability="edit",door="rest",status="failed"} 1.0' in text
    assert 'gateway_rate_limited_total{door="rest"} 1.0' in text


async def test_drain_waits_for_running_then_cancels_leftovers(tmp_path: Path) -> None:
    core, release = build(tmp_path)
    quick = core.start(CallContext(), "wait", {})
    slow_core, _ = build(tmp_path)
    slow = slow_core.start(CallContext(), "wait", {})
    asyncio.get_running_loop().call_soon(release.set)
    assert await core.drain(2.0) == 0
    assert quick.record.status is ExecutionStatus.FINISHED
    with pytest.raises(Cancelled):
        core.start(CallContext(), "wait", {})
    assert await slow_core.drain(0.05) == 1
    assert slow.record.status is ExecutionStatus.CANCELLED


async def test_progress_reports_stream_until_the_end_keeping_the_newest(tmp_path: Path) -> None:
    core, release = build(tmp_path)
    execution = core.start(CallContext(), "wait", {"steps": 5})
    reports = execution.progress_reports(maxsize=2)  # listening starts here, before the handler runs
    asyncio.get_running_loop().call_soon(release.set)
    seen = [r.message async for r in reports]
    assert seen == ["step 3", "step 4"]  # a slow reader loses the oldest, never the newest
    assert execution.record.status is ExecutionStatus.FINISHED
    assert execution._progress_listeners == []  # the stream let go of the execution


async def test_execute_runs_in_the_callers_task_and_cancel_comes_back_as_cancelled(tmp_path: Path) -> None:
    core, release = build(tmp_path)
    seen: list[asyncio.Task[object] | None] = []

    @core.registry.register("whose", WaitParams, Done)
    async def whose(ctx: ExecutionContext, params: WaitParams) -> Done:
        """Note the task it runs in, then wait."""
        seen.append(asyncio.current_task())
        await release.wait()
        return Done(steps=params.steps)

    async def caller() -> str:
        with pytest.raises(Cancelled):
            await core.execute(CallContext(), "whose", {})
        # The cancellation was the execution's, not this task's: the caller goes on awaiting normally.
        me = asyncio.current_task()
        assert me is not None and me.cancelling() == 0
        await asyncio.sleep(0)
        return "carried on"

    task = asyncio.create_task(caller())
    execution = await running_one(core)
    assert seen == [task]
    assert execution.task is task
    assert execution.cancel() is True
    assert await asyncio.wait_for(task, 5) == "carried on"
    assert execution.record.status is ExecutionStatus.CANCELLED
    assert execution.cancel() is False  # already over
    assert core.running == []


async def test_a_timeout_around_the_call_cancels_the_execution_and_stays_a_timeout(tmp_path: Path) -> None:
    """A timeout around the call is someone else's cancellation of the caller: it stays a TimeoutError."""
    core, _ = build(tmp_path)

    async def call_with_timeout() -> None:
        async with asyncio.timeout(0.05):
            await core.execute(CallContext(), "wait", {})

    task = asyncio.create_task(call_with_timeout())
    execution = await running_one(core)
    with pytest.raises(TimeoutError):
        await task
    assert execution.record.status is ExecutionStatus.CANCELLED
    assert core.running == []


async def test_a_started_execution_cancelled_before_it_ran_is_closed(tmp_path: Path) -> None:
    core, _ = build(tmp_path)
    execution = core.start(CallContext(), "wait", {})
    assert execution.cancel() is True
    assert execution.task is not None
    with pytest.raises(asyncio.CancelledError):
        await execution.task
    assert execution.record.status is ExecutionStatus.CANCELLED
    assert execution.record.error is not None and execution.record.error.code == "cancelled"
    assert core.running == []


async def test_lifecycle_events_are_built_only_when_someone_listens(tmp_path: Path) -> None:
    core, release = build(tmp_path)
    release.set()
    assert not core.bus.wants("executions")
    await core.execute(CallContext(), "wait", {"steps": 0})
    with core.bus.subscribe("exec*") as sub:
        assert core.bus.wants("executions") and not core.bus.wants("documents")
        await core.execute(CallContext(), "wait", {"steps": 0})
        kinds = [(await sub.get(timeout=2)).type for _ in range(2)]
    assert kinds == ["execution.started", "execution.finished"]
    assert not core.bus.wants("executions")  # the subscription closed
