"""The durable run queue: agent runs submitted now, executed by worker tasks, recorded as they go.

A run is one `run_agent` execution asked for ahead of time: `submit` stores a record (status `queued`) and
returns at once; worker tasks (`QueueConfig.workers` per instance) take runs in priority order (FIFO within
a priority) and execute them through `core.execute(CallContext(identity=<the asker>, door=Door.REST,
on_progress=...), "run_agent", {...})`, so auth, limits, metrics and the event stream apply as to any call.

Attempts: an attempt that fails with a retryable error (`UpstreamFailure`, `Timeout`, `Internal`,
`RateLimited`) is retried after an exponential backoff (`backoff_initial_seconds`, doubling, capped at
`backoff_max_seconds`) until `max_attempts`; any other error (`InvalidParams`, `NotFound`, `Forbidden`, ...)
fails the run at once, and a cancel (`DELETE /v1/runs/{id}`) ends it as `cancelled`. An attempt cut short
because the process stopped (shutdown, crash) counts too: the run goes back to the queue and is picked up
again, by this process after a restart or by another instance, until its attempts are used up.

Progress: every progress report of the execution goes on the event bus (topic `runs`, type
`run.progress`) next to status changes (`run.status`), so `watch` can stream a run from any instance.

Backends: `SqliteRunQueue` (the embedded default, one file in the state directory) and `RedisRunQueue`
(streams with a consumer group, shared by every instance on that Redis). This module holds what they
share: the worker loop, attempts and backoff, cancellation, progress and watching.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from ..config import QueueConfig
from ..errors import Cancelled, Forbidden, GatewayError, Internal, NotFound, RateLimited, Timeout, UpstreamFailure
from ..events import Event, Subscription
from ..execution import CallContext, Core, ErrorInfo, ProgressReport
from ..identity import Identity
from ..llm.models import TokenUsage
from ..registry import Door
from .models import (
    RunPage,
    RunRecord,
    RunStatus,
    SubmitRun,
    decode_cursor,
    encode_cursor,
)

log = logging.getLogger("gateway.runs")

RUNS_TOPIC = "runs"
RUN_CAPABILITY = "run_agent"
RETRYABLE: tuple[type[GatewayError], ...] = (UpstreamFailure, Timeout, Internal, RateLimited)
# Progress kinds that change the record's counters; text deltas and tool progress only go to watchers.
COUNTED_KINDS = frozenset({"step", "tool_call", "final"})

Heartbeat = Literal["ok", "cancel", "lost"]


def backoff_delay(config: QueueConfig, failed_attempts: int) -> float:
    """Seconds to wait after the `failed_attempts`-th failure: initial, doubling, capped."""
    exponent = max(0, failed_attempts - 1)
    return float(min(config.backoff_max_seconds, config.backoff_initial_seconds * (2**exponent)))


def retryable(error: GatewayError) -> bool:
    """True for errors worth another attempt (upstream trouble, deadlines, internal errors, rate limits)."""
    return isinstance(error, RETRYABLE) and not isinstance(error, Cancelled)


def _duration_ms(record: RunRecord, now: float) -> float | None:
    return None if record.started_at is None else round((now - record.started_at) * 1000, 3)


@dataclass
class Claim:
    """A run a worker has taken for one attempt; `token` proves the attempt is still this worker's."""

    record: RunRecord
    identity: Identity
    token: str
    exhausted: bool = False  # the run was interrupted with its attempts used up: fail it, do not execute
    backend: dict[str, Any] = field(default_factory=dict)  # what the backend needs to settle the attempt


class _Active:
    """A run executing in this process: its task, counters and why it is being stopped."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.task: asyncio.Task[BaseModel] | None = None
        self.user_cancelled = False
        self.lost = False
        self.dirty = False  # counters changed since the last save
        self.finished = False  # the attempt's execution is over: the helpers stop
        self.wake = asyncio.Event()  # a change or the end, for the progress writer
        self.done = asyncio.Event()  # the end, for the heartbeat
        self.steps = 0
        self.tool_calls = 0
        self.usage = TokenUsage()

    def stop(self, *, user: bool = False, lost: bool = False) -> None:
        self.user_cancelled = self.user_cancelled or user
        self.lost = self.lost or lost
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def finish(self) -> None:
        self.finished = True
        self.wake.set()
        self.done.set()

    def observe(self, report: ProgressReport) -> bool:
        """Update the counters from an agent progress report; True when the record should be saved."""
        data = report.data or {}
        kind = data.get("kind")
        if kind not in COUNTED_KINDS:
            return False
        if kind == "step" and isinstance(data.get("step"), int):
            self.steps = data["step"]
        elif kind == "tool_call":
            self.tool_calls += 1
        elif kind == "final" and isinstance(data.get("usage"), dict):
            with contextlib.suppress(ValueError):
                self.usage = TokenUsage.model_validate(data["usage"])
        return True


class RunQueue(abc.ABC):
    """Submit, look at, list, cancel and watch runs; worker tasks execute them. Backends store them."""

    kind = "abstract"

    def __init__(
        self,
        core: Core,
        config: QueueConfig,
        *,
        capability: str = RUN_CAPABILITY,
        poll_seconds: float = 1.0,
        heartbeat_seconds: float | None = None,
        instance_id: str | None = None,
    ) -> None:
        self.core = core
        self.config = config
        self.capability = capability
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self._workers: list[asyncio.Task[None]] = []
        self._active: dict[str, _Active] = {}
        self._cancel_pending: set[str] = set()
        self._listener: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._closing = False
        self._abandon = False
        self._started = False
        self.executes = True  # False: this instance submits and reads runs, another one executes them

    # -- backend ------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def _open(self) -> None:
        """Connect or open the store; put back runs a dead process left `running`."""

    @abc.abstractmethod
    async def _close_backend(self) -> None:
        """Release the store."""

    @abc.abstractmethod
    async def _insert(self, record: RunRecord, identity: Identity) -> None:
        """Store a new queued run."""

    @abc.abstractmethod
    async def _load(self, run_id: str) -> RunRecord | None:
        """The stored record, or None."""

    @abc.abstractmethod
    async def _page(
        self, subject: str, status: RunStatus | None, limit: int, after: tuple[float, str] | None
    ) -> list[RunRecord]:
        """Up to `limit` runs of `subject`, newest first, strictly after the (created_at, id) key."""

    @abc.abstractmethod
    async def _claim(self, consumer: str) -> Claim | None:
        """Take the next due run for an attempt (status running, attempts + 1), or None."""

    @abc.abstractmethod
    async def _settle(self, claim: Claim, record: RunRecord, mode: Literal["final", "retry", "requeue"]) -> bool:
        """Store the attempt's outcome if the attempt is still ours: a final status, a retry due at
        `record.next_attempt_at`, or straight back to the queue. False when the attempt was lost."""

    @abc.abstractmethod
    async def _save_progress(self, claim: Claim, steps: int, tool_calls: int, usage: TokenUsage) -> None:
        """Store the running attempt's counters."""

    @abc.abstractmethod
    async def _cancel(self, run_id: str, now: float) -> Literal["cancelled", "running", "done", "missing"]:
        """Cancel a queued run (then `cancelled`), or mark a running one for cancellation (`running`)."""

    async def _heartbeat(self, claim: Claim) -> Heartbeat:
        """Keep the attempt ours while it runs; `cancel` when a cancel was asked for elsewhere."""
        return "ok"

    async def _idle_wait(self) -> float:
        """How long an idle worker sleeps before looking again (unless woken)."""
        return self.poll_seconds

    async def _stopping(self) -> None:
        """`close` has begun: stop any background work of the backend's own."""
        return None

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the store, re-queue interrupted runs and start `QueueConfig.workers` worker tasks."""
        if self._started:
            return
        await self._open()
        self._started = True
        self._listener = asyncio.create_task(self._listen(), name=f"runs-listen:{self.instance_id}")
        if self.executes:
            self._spawn_workers()

    def _spawn_workers(self) -> None:
        """Start `QueueConfig.workers` worker tasks (a backend that starts passive calls it on taking over)."""
        if self._closing or self._workers:
            return
        for index in range(self.config.workers):
            consumer = f"{self.instance_id}-{index}"
            self._workers.append(asyncio.create_task(self._worker(consumer), name=f"runs-worker:{consumer}"))

    async def close(self, *, requeue_running: bool = True, timeout: float = 10.0) -> None:
        """Stop the workers and close the store.

        Running attempts are cancelled; with `requeue_running` (the default) their runs go straight back
        to the queue. With False nothing more is written, as if the process had died: the runs stay
        `running`, to be re-queued when the embedded queue reopens or claimed by another instance after
        the idle time (tests use this to simulate a crash).
        """
        if not self._started:
            return
        self._closing = True
        self._abandon = not requeue_running
        self._changed.set()
        await self._stopping()
        for active in list(self._active.values()):
            active.stop()
        workers, self._workers = self._workers, []
        if workers:
            _, pending = await asyncio.wait(workers, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        self._started = False
        await self._close_backend()

    # -- the API ------------------------------------------------------------------------------------
    async def submit(self, identity: Identity, agent: str, request: SubmitRun) -> RunRecord:
        """Queue a run of `agent` for `identity`; returns its record (status `queued`)."""
        if self._closing or not self._started:
            raise Cancelled("the run queue is shutting down")
        cap = self.core.capability_for(self.capability, Door.REST)
        if identity.role < cap.required_role:
            raise Forbidden(f"running agents needs the {cap.required_role.name.lower()} role")
        self.core.validate(cap, {"agent": agent, "input": request.input, "context": request.context})
        record = RunRecord(
            id=uuid.uuid4().hex,
            agent=agent,
            input=request.input,
            context=request.context,
            priority=request.priority,
            subject=identity.subject,
            max_attempts=self.config.max_attempts,
            created_at=time.time(),
        )
        await self._insert(record, identity)
        self._publish("run.queued", record)
        self._changed.set()
        return record

    async def get(self, run_id: str) -> RunRecord:
        """The run's record; NotFound when there is none."""
        record = await self._load(run_id)
        if record is None:
            raise NotFound(f"no run {run_id!r}", data={"run_id": run_id})
        return record

    async def list(
        self, subject: str, *, status: RunStatus | None = None, limit: int = 50, cursor: str | None = None
    ) -> RunPage:
        """`subject`'s runs, newest first, optionally only those with `status`; keyset-paginated."""
        after = decode_cursor(cursor, status.value if status else None)
        rows = await self._page(subject, status, limit + 1, after)
        page, more = rows[:limit], len(rows) > limit
        nxt = encode_cursor(page[-1].created_at, page[-1].id, status.value if status else None) if more else None
        return RunPage(runs=page, next_cursor=nxt)

    async def cancel(self, run_id: str, *, wait: float = 10.0) -> tuple[RunRecord, bool]:
        """Cancel a queued or running run; returns its record and False when it had already ended.

        A running run's execution is cancelled (here, or on the instance running it) and this waits up to
        `wait` seconds for the run to end, so the record returned is usually final.
        """
        outcome = await self._cancel(run_id, time.time())
        if outcome == "missing":
            raise NotFound(f"no run {run_id!r}", data={"run_id": run_id})
        if outcome == "done":
            return await self.get(run_id), False
        if outcome == "cancelled":
            record = await self.get(run_id)
            self._publish("run.status", record)
            return record, True
        with self.core.bus.subscribe(RUNS_TOPIC) as sub:
            active = self._active.get(run_id)
            if active is not None:
                active.stop(user=True)
            else:  # claimed here a moment ago, or running on another instance
                self._cancel_pending.add(run_id)
                self.core.bus.publish_nowait(Event(topic=RUNS_TOPIC, type="run.cancel", data={"run_id": run_id}))
            record = await self._until_final(run_id, sub, wait)
        if record.status.terminal:
            self._cancel_pending.discard(run_id)
        return record, True

    async def watch(self, run_id: str) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        """Stream a run: `run` (the record now), then `progress` reports of its execution and `run` on each
        status change, and `final` (the final record) when it ends. Works for runs on any instance."""
        with self.core.bus.subscribe(RUNS_TOPIC) as sub:
            record = await self.get(run_id)
            yield "run", record.model_dump(mode="json")
            while not record.status.terminal:
                try:
                    event = await sub.get(timeout=self.poll_seconds)
                except TimeoutError:
                    event = None
                except EOFError:
                    return  # the bus closed: the gateway is stopping
                if event is not None and event.data.get("run_id") != run_id:
                    continue
                if event is not None and event.type == "run.progress":
                    yield "progress", {k: v for k, v in event.data.items() if k != "run_id"}
                    continue
                if event is not None and event.type != "run.status":
                    continue
                fresh = await self.get(run_id)  # a status event, or a quiet spell: look at the record
                if fresh.status != record.status and not fresh.status.terminal:
                    yield "run", fresh.model_dump(mode="json")
                record = fresh
            yield "final", record.model_dump(mode="json")

    async def wait_final(self, run_id: str, timeout: float) -> RunRecord:
        """The run's record once it has ended (or as it is after `timeout` seconds)."""
        with self.core.bus.subscribe(RUNS_TOPIC) as sub:
            return await self._until_final(run_id, sub, timeout)

    async def _until_final(self, run_id: str, sub: Subscription, timeout: float) -> RunRecord:
        """Re-read the record on each of its status events (or every `poll_seconds`) until it is final."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            record = await self.get(run_id)
            remaining = deadline - loop.time()
            if record.status.terminal or remaining <= 0:
                return record
            with contextlib.suppress(TimeoutError, EOFError):
                while True:
                    event = await sub.get(timeout=min(remaining, self.poll_seconds))
                    if event.type == "run.status" and event.data.get("run_id") == run_id:
                        break

    # -- workers ------------------------------------------------------------------------------------
    def _publish(self, kind: str, record: RunRecord, **extra: Any) -> None:
        """Tell every instance (watchers, idle workers) about a run: `run.queued` or `run.status`."""
        data = {
            "run_id": record.id,
            "agent": record.agent,
            "subject": record.subject,
            "status": record.status.value,
            "priority": record.priority.value,
            "attempt": record.attempts,
            **extra,
        }
        self.core.bus.publish_nowait(Event(topic=RUNS_TOPIC, type=kind, data=data))

    async def _listen(self) -> None:
        """Hear `runs` events: new work (wake the workers) and cancels asked for on other instances."""
        with self.core.bus.subscribe(RUNS_TOPIC) as sub:
            async for event in sub:
                if event.type == "run.queued":
                    self._changed.set()
                elif event.type == "run.cancel":
                    active = self._active.get(str(event.data.get("run_id")))
                    if active is not None:
                        active.stop(user=True)

    async def _worker(self, consumer: str) -> None:
        """Take runs one at a time until closed; sleep when there is nothing due (a submit wakes it)."""
        failures = 0
        while not self._closing:
            self._changed.clear()
            claim: Claim | None = None
            if self.core.accepting:
                try:
                    claim = await self._claim(consumer)
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the store is unreachable: log, back off, try again
                    failures += 1
                    if failures == 1:
                        log.warning("runs: cannot take runs from the %s queue: %s", self.kind, exc)
                    await self._sleep(min(30.0, self.poll_seconds * 2**failures))
                    continue
            if claim is None:
                idle = self.poll_seconds
                if self.core.accepting and not self._closing:
                    with contextlib.suppress(Exception):
                        idle = await self._idle_wait()
                await self._sleep(idle)
                continue
            try:
                await self._attempt(claim)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("runs: settling run %s failed", claim.record.id)

    async def _sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less when something changed (a submit here or on another instance)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), max(0.001, seconds))

    async def _attempt(self, claim: Claim) -> None:
        """Execute one attempt of a claimed run and store how it went."""
        record = claim.record
        if self._closing or not self.core.accepting:  # taken just as the process began to stop
            await self._requeue(claim, None, counted=False)
            return
        if claim.exhausted:
            error = Internal(f"the run was interrupted on each of its {record.max_attempts} attempts")
            await self._end(claim, RunStatus.FAILED, error=error)
            return
        if record.cancel_requested or record.id in self._cancel_pending:
            self._cancel_pending.discard(record.id)
            await self._end(claim, RunStatus.CANCELLED, error=Cancelled("run cancelled"))
            return
        self._publish("run.status", record)
        active = _Active(claim)
        self._active[record.id] = active

        def on_progress(report: ProgressReport) -> None:
            if active.observe(report):
                active.dirty = True
                active.wake.set()
            data = {"run_id": record.id, "attempt": record.attempts, **report.model_dump(exclude_none=True)}
            self.core.bus.publish_nowait(Event(topic=RUNS_TOPIC, type="run.progress", data=data))

        call = CallContext(
            identity=claim.identity,
            door=Door.REST,
            on_progress=on_progress,
            meta={"run_id": record.id, "attempt": record.attempts},
        )
        params = {"agent": record.agent, "input": record.input, "context": record.context}
        task = asyncio.create_task(
            self.core.execute(call, self.capability, params), name=f"run:{record.id}:{record.attempts}"
        )
        active.task = task
        helpers = [asyncio.create_task(self._flush_progress(active))]
        if self.heartbeat_seconds is not None:
            helpers.append(asyncio.create_task(self._beat(active, self.heartbeat_seconds)))
        try:
            await asyncio.wait({task})  # not `await task`: cancelling this worker must not read as a cancel
        except asyncio.CancelledError:
            active.stop()
            raise
        finally:
            # The helpers are told to stop rather than cancelled: a Redis call cut off by a cancel can
            # swallow it. Only one that does not stop in time is cancelled.
            active.finish()
            _, stuck = await asyncio.wait(helpers, timeout=10)
            for helper in stuck:
                helper.cancel()
            self._active.pop(record.id, None)
        outcome: BaseModel | GatewayError
        if task.cancelled():
            outcome = Cancelled("run cancelled")
        elif isinstance(task.exception(), GatewayError):
            outcome = task.exception()  # type: ignore[assignment]
        elif task.exception() is not None:
            outcome = Internal("internal error; see the gateway log")
        else:
            outcome = task.result()
        if self._abandon or active.lost:
            return
        await self._conclude(claim, active, outcome)

    async def _conclude(self, claim: Claim, active: _Active, outcome: BaseModel | GatewayError) -> None:
        record = claim.record
        self._cancel_pending.discard(record.id)
        if isinstance(outcome, BaseModel):
            await self._end(claim, RunStatus.SUCCEEDED, result=outcome, active=active)
        elif isinstance(outcome, Cancelled):
            if not active.user_cancelled and (self._closing or not self.core.accepting):
                await self._requeue(claim, active, counted=True)  # a shutdown, not a cancel: run it again later
            else:
                await self._end(claim, RunStatus.CANCELLED, error=outcome, active=active)
        elif not retryable(outcome) or record.attempts >= record.max_attempts:
            await self._end(claim, RunStatus.FAILED, error=outcome, active=active)
        else:
            now = time.time()
            updated = self._with_counters(record, active)
            updated.status = RunStatus.QUEUED
            updated.error = ErrorInfo.from_error(outcome)
            updated.next_attempt_at = now + backoff_delay(self.config, record.attempts)
            if await self._settle(claim, updated, "retry"):
                self._publish("run.status", updated)
                log.info(
                    "runs: run %s attempt %d failed (%s); retry in %.2fs",
                    record.id,
                    record.attempts,
                    outcome.code,
                    updated.next_attempt_at - now,
                )

    async def _requeue(self, claim: Claim, active: _Active | None, *, counted: bool) -> None:
        """Put a run whose attempt a shutdown cut short back in the queue; the attempt counts when it ran."""
        updated = self._with_counters(claim.record, active)
        updated.status = RunStatus.QUEUED
        updated.next_attempt_at = None
        if not counted:
            updated.attempts -= 1
        elif updated.attempts >= updated.max_attempts:
            await self._end(claim, RunStatus.FAILED, error=Internal("the run was interrupted by a shutdown"))
            return
        if await self._settle(claim, updated, "requeue"):
            self._publish("run.status", updated)

    async def _end(
        self,
        claim: Claim,
        status: RunStatus,
        *,
        result: BaseModel | None = None,
        error: GatewayError | None = None,
        active: _Active | None = None,
    ) -> None:
        now = time.time()
        updated = self._with_counters(claim.record, active)
        updated.status = status
        updated.finished_at = now
        updated.duration_ms = _duration_ms(updated, now)
        updated.next_attempt_at = None
        updated.error = ErrorInfo.from_error(error) if error is not None else None
        if result is not None:
            dumped = result.model_dump(mode="json")
            updated.result = dumped
            if isinstance(dumped.get("steps"), int):
                updated.steps = dumped["steps"]
            if isinstance(dumped.get("tool_calls"), list):
                updated.tool_calls = len(dumped["tool_calls"])
            if isinstance(dumped.get("usage"), dict):
                with contextlib.suppress(ValueError):
                    updated.usage = TokenUsage.model_validate(dumped["usage"])
            stop = dumped.get("stop_reason")
            updated.stop_reason = stop if isinstance(stop, str) else None
        if await self._settle(claim, updated, "final"):
            self._publish("run.status", updated)

    @staticmethod
    def _with_counters(record: RunRecord, active: _Active | None) -> RunRecord:
        updated = record.model_copy(deep=True)
        if active is not None:
            updated.steps, updated.tool_calls, updated.usage = active.steps, active.tool_calls, active.usage
        return updated

    async def _flush_progress(self, active: _Active) -> None:
        """Write the counters when they change (one write at a time; later changes coalesce)."""
        while True:
            await active.wake.wait()
            active.wake.clear()
            if active.dirty:
                active.dirty = False
                try:
                    await self._save_progress(active.claim, active.steps, active.tool_calls, active.usage)
                except Exception as exc:
                    log.warning("runs: saving progress of %s failed: %s", active.claim.record.id, exc)
            if active.finished:
                return

    async def _beat(self, active: _Active, every: float) -> None:
        """Keep a long attempt ours; stop it when cancelled elsewhere or taken over by another worker."""
        while not active.finished:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(active.done.wait(), every)
            if active.finished:
                return
            try:
                state = await self._heartbeat(active.claim)
            except Exception as exc:
                log.warning("runs: heartbeat of %s failed: %s", active.claim.record.id, exc)
                continue
            if state == "cancel":
                active.stop(user=True)
            elif state == "lost":
                log.warning("runs: run %s was taken over by another worker; stopping here", active.claim.record.id)
                active.stop(lost=True)
                return
