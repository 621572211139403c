"""The durable run queue with a scripted `run_agent`: SQLite (embedded) and Redis (several instances)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.agents.models import AgentResult, AgentToolCall, RunAgentParams
from gateway.config import GatewayConfig, QueueConfig
from gateway.errors import Cancelled, Forbidden, InvalidParams, NotFound, Timeout, UpstreamFailure
from gateway.events import InMemoryBus
from gateway.execution import Core, ExecutionContext
from gateway.identity import Identity, Role
from gateway.llm.models import TokenUsage
from gateway.middleware import auth_middleware
from gateway.registry import Door, Registry
from gateway.runs import Priority, RunQueue, RunRecord, RunStatus, SubmitRun, backoff_delay, build_run_queue
from gateway.runs.redis_queue import RedisRunQueue
from gateway.runs.sqlite_queue import SqliteRunQueue
from gateway.workspace import Workspace

ALICE = Identity(subject="alice", method="api_key", role=Role.MEMBER)
BOB = Identity(subject="bob", method="api_key", role=Role.MEMBER)
FAST = QueueConfig(workers=1, max_attempts=3, backoff_initial_seconds=0.05, backoff_max_seconds=0.08)


class Tracker:
    """What the scripted agent did, across every queue instance: (instance, input, what) in order.

    `plans` maps an input to the outcome of each attempt (the last one repeats): "ok", "upstream",
    "timeout", "invalid", "gate" (wait for `gate`, then ok) or "hang" (until cancelled).
    """

    def __init__(self) -> None:
        self.plans: dict[str, list[str]] = {}
        self.events: list[tuple[str, str, str]] = []
        self.identities: list[tuple[str, str]] = []
        self.gate = asyncio.Event()
        self._cond = asyncio.Condition()

    async def log(self, instance: str, input: str, what: str) -> None:
        async with self._cond:
            self.events.append((instance, input, what))
            self._cond.notify_all()

    def count(self, what: str, input: str | None = None) -> int:
        return sum(1 for _, i, w in self.events if w == what and (input is None or i == input))

    def order(self, what: str = "started") -> list[str]:
        return [i for _, i, w in self.events if w == what]

    def instances(self, what: str = "started") -> set[str]:
        return {n for n, _, w in self.events if w == what}

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self._cond:
            await self._cond.wait_for(predicate)


def make_core(root: Path, tracker: Tracker, instance: str) -> Core:
    """A Core whose registry has only a scripted `run_agent`."""
    registry = Registry()

    @registry.register("run_agent", RunAgentParams, AgentResult, required_role=Role.MEMBER, read_only=False)
    async def run_agent(ctx: ExecutionContext, params: RunAgentParams) -> AgentResult:
        """Scripted agent run."""
        plan = tracker.plans.get(params.input, ["ok"])
        attempt = tracker.count("started", params.input)
        outcome = plan[min(attempt, len(plan) - 1)]
        tracker.identities.append((ctx.identity.subject, ctx.call.door.value))
        await tracker.log(instance, params.input, "started")
        ctx.progress("step 1/1", 50.0, kind="step", agent=params.agent, step=1)
        try:
            if outcome == "gate":
                await tracker.gate.wait()
            elif outcome == "hang":
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            await tracker.log(instance, params.input, "cancelled")
            raise
        if outcome == "upstream":
            raise UpstreamFailure("scripted upstream failure")
        if outcome == "timeout":
            raise Timeout("scripted timeout")
        if outcome == "invalid":
            raise InvalidParams("scripted invalid params")
        ctx.progress("calling read_file", 60.0, kind="tool_call", agent=params.agent, step=1, name="read_file")
        usage = TokenUsage(prompt_tokens=3, completion_tokens=2, total_tokens=5)
        ctx.progress("done", 100.0, kind="final", agent=params.agent, step=1, usage=usage.model_dump())
        await tracker.log(instance, params.input, "completed")
        call = AgentToolCall(name="read_file", ok=True, result_preview="...", step=1)
        return AgentResult(
            agent=params.agent,
            model="fake",
            output=f"done: {params.input}",
            steps=1,
            tool_calls=[call],
            usage=usage,
            stop_reason="final",
        )

    core = Core(registry, Workspace(root), InMemoryBus())
    core.middleware = [auth_middleware(False)]
    return core


def sqlite_queue(root: Path, tracker: Tracker, config: QueueConfig = FAST, instance: str = "a") -> SqliteRunQueue:
    core = make_core(root, tracker, instance)
    return SqliteRunQueue(core, config, root / "state", poll_seconds=0.05, heartbeat_seconds=0.05)


@pytest.fixture
def tracker() -> Tracker:
    return Tracker()


@pytest.fixture
async def queue(tmp_path: Path, tracker: Tracker) -> AsyncIterator[SqliteRunQueue]:
    q = sqlite_queue(tmp_path, tracker)
    await q.start()
    yield q
    tracker.gate.set()
    await q.close()


async def submit(q: RunQueue, input: str, priority: Priority = Priority.NORMAL, who: Identity = ALICE) -> RunRecord:
    return await q.submit(who, "helper", SubmitRun(input=input, priority=priority))


async def final(q: RunQueue, run_id: str, timeout: float = 10.0) -> RunRecord:
    record = await q.wait_final(run_id, timeout)
    assert record.status.terminal, record
    return record


# -- embedded (SQLite) -------------------------------------------------------------------------------------
async def test_higher_priorities_run_first_and_fifo_within_a_priority(queue: SqliteRunQueue, tracker: Tracker) -> None:
    tracker.plans["blocker"] = ["gate"]
    blocker = await submit(queue, "blocker")
    await tracker.wait_for(lambda: tracker.count("started") == 1)  # the one worker is busy
    runs = [
        await submit(queue, "low", Priority.LOW),
        await submit(queue, "normal-1"),
        await submit(queue, "critical", Priority.CRITICAL),
        await submit(queue, "high", Priority.HIGH),
        await submit(queue, "normal-2"),
    ]
    tracker.gate.set()
    for run in [blocker, *runs]:
        assert (await final(queue, run.id)).status is RunStatus.SUCCEEDED
    assert tracker.order() == ["blocker", "critical", "high", "normal-1", "normal-2", "low"]


async def test_the_record_shows_who_asked_steps_tool_calls_usage_and_timings(
    queue: SqliteRunQueue, tracker: Tracker
) -> None:
    run = await queue.submit(ALICE, "helper", SubmitRun(input="task", context={"path": "a.py"}))
    assert run.status is RunStatus.QUEUED and run.attempts == 0 and run.subject == "alice"
    done = await final(queue, run.id)
    assert done.status is RunStatus.SUCCEEDED
    assert (done.agent, done.input, done.context, done.priority) == ("helper", "task", {"path": "a.py"}, "normal")
    assert (done.attempts, done.steps, done.tool_calls, done.stop_reason) == (1, 1, 1, "final")
    assert done.usage.total_tokens == 5
    assert done.result is not None and done.result["output"] == "done: task"
    assert done.error is None
    assert done.started_at is not None and done.finished_at is not None
    assert done.created_at <= done.started_at <= done.finished_at
    assert done.duration_ms is not None and done.duration_ms >= 0
    # it ran as the asker, through the REST door
    assert tracker.identities == [("alice", Door.REST.value)]


async def test_retryable_failures_back_off_then_succeed(tmp_path: Path, tracker: Tracker) -> None:
    tracker.plans["flaky"] = ["upstream", "timeout", "ok"]
    q = sqlite_queue(tmp_path, tracker)
    await q.start()
    try:
        run = await submit(q, "flaky")
        seen: list[RunRecord] = []
        async for kind, data in q.watch(run.id):
            if kind in ("run", "final"):
                seen.append(RunRecord.model_validate(data))
        done = seen[-1]
    finally:
        await q.close()
    assert done.status is RunStatus.SUCCEEDED and done.attempts == 3 and done.error is None
    retries = [r for r in seen if r.status is RunStatus.QUEUED and r.error is not None]
    assert [r.error.code for r in retries if r.error] == ["upstream_failure", "timeout"]
    assert all(r.next_attempt_at is not None for r in retries)
    assert tracker.count("started", "flaky") == 3
    assert backoff_delay(FAST, 1) == 0.05 and backoff_delay(FAST, 2) == 0.08  # doubling, capped


async def test_backoff_waits_between_attempts(tmp_path: Path, tracker: Tracker) -> None:
    config = QueueConfig(workers=1, max_attempts=3, backoff_initial_seconds=0.2, backoff_max_seconds=0.3)
    tracker.plans["flaky"] = ["upstream", "upstream", "ok"]
    q = sqlite_queue(tmp_path, tracker, config)
    await q.start()
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    try:
        run = await submit(q, "flaky")
        async for kind, data in q.watch(run.id):
            if kind == "run" and data["status"] == "running":
                starts.append(loop.time())
            if kind == "final":
                assert data["status"] == "succeeded"
    finally:
        await q.close()
    assert len(starts) == 3
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.19 and gaps[1] >= 0.29  # 0.2, then doubled to 0.4 but capped at 0.3


async def test_max_attempts_then_failed(queue: SqliteRunQueue, tracker: Tracker) -> None:
    tracker.plans["broken"] = ["upstream"]
    done = await final(queue, (await submit(queue, "broken")).id)
    assert done.status is RunStatus.FAILED and done.attempts == 3
    assert done.error is not None and done.error.code == "upstream_failure"
    assert tracker.count("started", "broken") == 3


async def test_errors_that_are_not_retryable_fail_at_once(queue: SqliteRunQueue, tracker: Tracker) -> None:
    tracker.plans["bad"] = ["invalid"]
    done = await final(queue, (await submit(queue, "bad")).id)
    assert done.status is RunStatus.FAILED and done.attempts == 1
    assert done.error is not None and done.error.code == "invalid_params"


async def test_cancel_queued_and_running(queue: SqliteRunQueue, tracker: Tracker) -> None:
    tracker.plans["long"] = ["hang"]
    running = await submit(queue, "long")
    await tracker.wait_for(lambda: tracker.count("started") == 1)
    waiting = await submit(queue, "waiting")

    record, changed = await queue.cancel(waiting.id)
    assert changed and record.status is RunStatus.CANCELLED and record.attempts == 0

    record, changed = await queue.cancel(running.id, wait=5)
    assert changed and record.status is RunStatus.CANCELLED and record.attempts == 1
    assert record.error is not None and record.error.code == "cancelled"
    assert tracker.count("cancelled", "long") == 1

    record, changed = await queue.cancel(running.id)
    assert not changed and record.status is RunStatus.CANCELLED  # already over
    with pytest.raises(NotFound):
        await queue.cancel("nope")
    after = await submit(queue, "after")  # the worker is free again; the cancelled runs never come back
    assert (await final(queue, after.id)).status is RunStatus.SUCCEEDED
    assert tracker.order() == ["long", "after"]


async def test_graceful_close_mid_run_requeues_and_reopening_finishes_it(tmp_path: Path, tracker: Tracker) -> None:
    tracker.plans["job"] = ["hang", "ok"]
    first = sqlite_queue(tmp_path, tracker)
    await first.start()
    job = await submit(first, "job", Priority.HIGH)
    other = await submit(first, "other")
    await tracker.wait_for(lambda: tracker.count("started") == 1)
    await first.close()
    mid = await _read_record(tmp_path, job.id)
    assert mid.status is RunStatus.QUEUED and mid.attempts == 1  # back in the queue; the attempt counts
    assert (await _read_record(tmp_path, other.id)).status is RunStatus.QUEUED

    second = sqlite_queue(tmp_path, tracker, instance="b")
    await second.start()
    try:
        done = await final(second, job.id)
        assert (await final(second, other.id)).status is RunStatus.SUCCEEDED
    finally:
        await second.close()
    assert done.status is RunStatus.SUCCEEDED and done.attempts == 2
    assert (done.input, done.priority, done.subject, done.created_at) == ("job", "high", "alice", job.created_at)
    assert tracker.count("completed", "job") == 1 and tracker.count("completed", "other") == 1


async def test_a_run_left_running_by_a_dead_process_is_requeued_on_open(tmp_path: Path, tracker: Tracker) -> None:
    tracker.plans["job"] = ["hang", "ok"]
    first = sqlite_queue(tmp_path, tracker)
    await first.start()
    job = await submit(first, "job")
    await tracker.wait_for(lambda: tracker.count("started") == 1)
    await first.close(requeue_running=False)  # as if the process had died: nothing more is written
    assert (await _read_record(tmp_path, job.id)).status is RunStatus.RUNNING

    second = sqlite_queue(tmp_path, tracker, instance="b")
    await second.start()
    try:
        done = await final(second, job.id)
    finally:
        await second.close()
    assert done.status is RunStatus.SUCCEEDED and done.attempts == 2
    assert tracker.count("completed", "job") == 1


async def test_a_run_interrupted_on_every_attempt_fails(tmp_path: Path, tracker: Tracker) -> None:
    tracker.plans["poison"] = ["hang"]
    config = QueueConfig(workers=1, max_attempts=1)
    first = sqlite_queue(tmp_path, tracker, config)
    await first.start()
    job = await submit(first, "poison")
    await tracker.wait_for(lambda: tracker.count("started") == 1)
    await first.close(requeue_running=False)
    second = sqlite_queue(tmp_path, tracker, config)
    await second.start()
    try:
        done = await second.get(job.id)
    finally:
        await second.close()
    assert done.status is RunStatus.FAILED and done.error is not None and "interrupted" in done.error.message
    assert tracker.count("started", "poison") == 1


async def test_a_second_process_on_the_state_dir_only_queues_and_cancels(tmp_path: Path, tracker: Tracker) -> None:
    owner = sqlite_queue(tmp_path, tracker, instance="owner")
    await owner.start()
    tracker.plans["long"] = ["hang"]
    long = await submit(owner, "long")
    await tracker.wait_for(lambda: tracker.count("started") == 1)
    other = sqlite_queue(tmp_path, tracker, instance="other")  # say, `gateway lsp` next to `gateway serve`
    await other.start()
    try:
        assert owner.executes and not other.executes
        assert (await other.get(long.id)).status is RunStatus.RUNNING  # not re-queued under the owner's feet
        record, changed = await other.cancel(long.id, wait=5)  # reaches the owner through the record
        assert changed and record.status is RunStatus.CANCELLED
        queued = await submit(other, "from the other one")
        assert (await final(other, queued.id)).status is RunStatus.SUCCEEDED
        assert tracker.instances() == {"owner"}
        await owner.close()  # the owner exits: the other process takes the runs over
        later = await submit(other, "after the owner left")
        assert (await final(other, later.id)).status is RunStatus.SUCCEEDED
        assert other.executes and tracker.instances("completed") == {"owner", "other"}
    finally:
        await other.close()
        await owner.close()


async def test_watch_streams_the_record_progress_and_the_final_record(queue: SqliteRunQueue, tracker: Tracker) -> None:
    tracker.plans["watched"] = ["gate"]
    run = await submit(queue, "watched")
    events: list[tuple[str, dict[str, Any]]] = []

    async def read() -> None:
        async for kind, data in queue.watch(run.id):
            events.append((kind, data))

    reader = asyncio.create_task(read())
    await tracker.wait_for(lambda: tracker.count("started") == 1)
    tracker.gate.set()
    await asyncio.wait_for(reader, 10)
    kinds = [k for k, _ in events]
    assert kinds[0] == "run" and kinds[-1] == "final"
    progress = [d for k, d in events if k == "progress"]
    assert [p["data"]["kind"] for p in progress] == ["step", "tool_call", "final"]
    assert all(p["attempt"] == 1 for p in progress)
    assert events[-1][1]["status"] == "succeeded" and events[-1][1]["result"]["output"] == "done: watched"
    # a finished run streams its record and ends at once
    replay = [k async for k, _ in queue.watch(run.id)]
    assert replay == ["run", "final"]


async def test_list_shows_the_callers_runs_newest_first_with_a_status_filter_and_cursor(
    queue: SqliteRunQueue, tracker: Tracker
) -> None:
    tracker.plans["bad"] = ["invalid"]
    ids = [(await submit(queue, f"ok-{i}")).id for i in range(5)]
    bad = await submit(queue, "bad")
    await submit(queue, "bobs", who=BOB)
    for run_id in [*ids, bad.id]:
        await final(queue, run_id)
    first = await queue.list("alice", limit=4)
    assert [r.id for r in first.runs] == [bad.id, *reversed(ids[2:])]
    assert first.next_cursor is not None
    second = await queue.list("alice", limit=4, cursor=first.next_cursor)
    assert [r.id for r in second.runs] == [ids[1], ids[0]] and second.next_cursor is None
    failed = await queue.list("alice", status=RunStatus.FAILED)
    assert [r.id for r in failed.runs] == [bad.id]
    with pytest.raises(InvalidParams):
        await queue.list("alice", status=RunStatus.FAILED, cursor=first.next_cursor)  # made for another filter
    assert [r.input for r in (await queue.list("bob")).runs] == ["bobs"]


async def test_submit_checks_role_and_params(queue: SqliteRunQueue) -> None:
    viewer = Identity(subject="v", method="api_key", role=Role.VIEWER)
    with pytest.raises(Forbidden):
        await submit(queue, "x", who=viewer)
    with pytest.raises(NotFound):
        await queue.get("missing")
    await queue.close()
    with pytest.raises(Cancelled):
        await submit(queue, "late")


async def test_build_run_queue_picks_sqlite_in_the_state_dir(tmp_path: Path, tracker: Tracker) -> None:
    core = make_core(tmp_path, tracker, "a")
    embedded = build_run_queue(core, GatewayConfig.model_validate({"server": {"workspace": str(tmp_path)}}))
    assert isinstance(embedded, SqliteRunQueue) and embedded.path == tmp_path / ".gateway" / "runs.sqlite3"
    custom = build_run_queue(core, GatewayConfig.model_validate({"server": {"state_dir": str(tmp_path / "s")}}))
    assert isinstance(custom, SqliteRunQueue) and custom.path == tmp_path / "s" / "runs.sqlite3"
    shared = build_run_queue(core, GatewayConfig.model_validate({"redis_url": "redis://127.0.0.1:1/0"}))
    assert isinstance(shared, RedisRunQueue)
    await shared.close()


async def _read_record(root: Path, run_id: str) -> RunRecord:
    """The record as stored on disk, read without the queue."""

    def read() -> RunRecord:
        with contextlib.closing(sqlite3.connect(root / "state" / "runs.sqlite3")) as conn:
            row = conn.execute("SELECT record FROM runs WHERE id = ?", (run_id,)).fetchone()
        return RunRecord.model_validate_json(row[0])

    return await asyncio.to_thread(read)


# -- Redis: several instances on one Redis -----------------------------------------------------------------
IDLE = 0.4


@pytest.fixture
def prefix() -> str:
    return f"test:runs:{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def instances(
    tmp_path: Path, tracker: Tracker, redis_url: str, prefix: str
) -> AsyncIterator[dict[str, RedisRunQueue]]:
    made: dict[str, RedisRunQueue] = {}
    for name in ("a", "b"):
        made[name] = RedisRunQueue(
            make_core(tmp_path, tracker, name),
            FAST,
            redis_url,
            prefix=prefix,
            claim_idle_seconds=IDLE,
            poll_seconds=0.05,
            instance_id=name,
        )
        await made[name].start()
    yield made
    tracker.gate.set()
    for q in made.values():
        await q.close()


async def test_redis_runs_are_spread_over_instances_and_each_completes_once(
    instances: dict[str, RedisRunQueue], tracker: Tracker
) -> None:
    a, b = instances["a"], instances["b"]
    inputs = [f"job-{i}" for i in range(6)]
    for name in inputs:
        tracker.plans[name] = ["gate"]
    runs = [await submit(a, name) for name in inputs]
    # one worker each: both instances hold a run before any finishes
    await tracker.wait_for(lambda: tracker.instances() == {"a", "b"})
    tracker.gate.set()
    for run in runs:
        done = await final(b, run.id)
        assert done.status is RunStatus.SUCCEEDED and done.attempts == 1
    assert all(tracker.count("completed", name) == 1 for name in inputs)
    assert tracker.count("started") == 6
    assert tracker.instances("completed") == {"a", "b"}


async def test_redis_a_dead_workers_run_is_claimed_by_another_and_completes_once(
    instances: dict[str, RedisRunQueue], tracker: Tracker
) -> None:
    tracker.plans["job"] = ["hang", "ok"]
    run = await submit(instances["a"], "job")
    await tracker.wait_for(lambda: tracker.count("started") == 1)
    victim = tracker.events[0][0]
    survivor = "b" if victim == "a" else "a"
    await instances[victim].close(requeue_running=False)  # dies mid-run: no ack, no record update
    assert (await instances[survivor].get(run.id)).status is RunStatus.RUNNING
    done = await final(instances[survivor], run.id)
    assert done.status is RunStatus.SUCCEEDED and done.attempts == 2
    assert [(n, w) for n, _, w in tracker.events if w != "cancelled"] == [
        (victim, "started"),
        (survivor, "started"),
        (survivor, "completed"),
    ]


async def test_redis_a_long_run_keeps_its_claim_with_heartbeats(
    instances: dict[str, RedisRunQueue], tracker: Tracker
) -> None:
    tracker.plans["long"] = ["gate"]
    run = await submit(instances["a"], "long")
    await tracker.wait_for(lambda: tracker.count("started") == 1)
    loop = asyncio.get_running_loop()
    until = loop.time() + IDLE * 3  # well past the idle time after which a silent worker's run is taken
    while loop.time() < until:
        assert tracker.count("started") == 1
        await asyncio.sleep(0.05)
    tracker.gate.set()
    done = await final(instances["a"], run.id)
    assert done.status is RunStatus.SUCCEEDED and done.attempts == 1
    assert tracker.count("started") == 1 and tracker.count("completed") == 1


async def test_redis_a_duplicate_delivery_of_a_finished_run_is_not_executed(
    instances: dict[str, RedisRunQueue], tracker: Tracker, redis_url: str, prefix: str
) -> None:
    run = await submit(instances["a"], "once")
    assert (await final(instances["a"], run.id)).status is RunStatus.SUCCEEDED
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    stream = f"{prefix}:queue:normal"
    try:
        await client.xadd(stream, {"run": run.id})  # the same run delivered again
        async with asyncio.timeout(10):
            while await client.xlen(stream) or (await client.xpending(stream, "workers"))["pending"]:
                await asyncio.sleep(0.02)
    finally:
        await client.aclose()
    assert tracker.count("started", "once") == 1
    assert (await instances["b"].get(run.id)).attempts == 1


async def test_redis_priorities_retries_and_cancel_from_another_instance(
    instances: dict[str, RedisRunQueue], tracker: Tracker
) -> None:
    a, b = instances["a"], instances["b"]
    tracker.plans.update({"blocker-a": ["gate"], "blocker-b": ["gate"], "flaky": ["upstream", "ok"]})
    blockers = [await submit(a, "blocker-a"), await submit(a, "blocker-b")]
    await tracker.wait_for(lambda: tracker.count("started") == 2)  # both workers busy
    low = await submit(b, "low", Priority.LOW)
    flaky = await submit(b, "flaky")
    critical = await submit(b, "critical", Priority.CRITICAL)
    tracker.gate.set()
    for run in [*blockers, low, critical]:
        assert (await final(a, run.id)).status is RunStatus.SUCCEEDED
    done = await final(a, flaky.id)
    assert done.status is RunStatus.SUCCEEDED and done.attempts == 2
    started = tracker.order()[2:]
    assert started.index("critical") < started.index("low") and started.index("flaky") < started.index("low")

    tracker.plans.update({"stuck-1": ["hang"], "stuck-2": ["hang"]})
    stuck = [await submit(a, "stuck-1"), await submit(a, "stuck-2")]
    await tracker.wait_for(lambda: tracker.count("started", "stuck-1") + tracker.count("started", "stuck-2") == 2)
    queued = await submit(a, "never")  # both workers are busy
    record, changed = await b.cancel(queued.id)
    assert changed and record.status is RunStatus.CANCELLED and record.attempts == 0
    for run in stuck:
        runner = next(n for n, i, _ in tracker.events if i == run.input)
        other = b if runner == "a" else a  # cancel where it is not running: the heartbeat carries it over
        record, changed = await other.cancel(run.id, wait=5)
        assert changed and record.status is RunStatus.CANCELLED
        assert tracker.count("cancelled", run.input) == 1
    page = await b.list("alice", status=RunStatus.CANCELLED)
    assert {r.id for r in page.runs} == {queued.id, *(r.id for r in stuck)}
    assert tracker.count("started", "never") == 0
