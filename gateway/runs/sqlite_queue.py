"""The embedded run queue: runs and their records in one SQLite file in the gateway's state directory.

All SQL runs on one dedicated thread with one connection (WAL journal), so the event loop never blocks
on the disk and statements never interleave. Taking a run is one `BEGIN IMMEDIATE` transaction that picks
the most urgent due run (priority, then submission order) and marks it `running` with its attempt
counted; settling an attempt only writes when the run is still `running` with that attempt number, so a
stale worker can never overwrite a newer outcome. On open, runs left `running` by a process that died are
put back in the queue (the attempt counts); queued runs are picked up as before.

One process executes a state directory's runs: the one holding an exclusive lock on `runs.lock` there.
Another gateway process on the same workspace (say, `gateway lsp` started by an editor next to
`gateway serve`) still submits, reads and cancels runs, but runs no workers and never re-queues runs the
owner is executing; a cancel it asks for reaches the owner through the record (the owner's heartbeat
reads it). It tries for the lock every few seconds and takes over the runs when the owner exits. For
several instances sharing the work, configure `redis_url`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..config import QueueConfig
from ..errors import Internal
from ..execution import Core, ErrorInfo
from ..identity import Identity
from ..llm.models import TokenUsage
from .models import RunRecord, RunStatus, identity_from_json, identity_to_json
from .queue import Claim, Heartbeat, RunQueue, log

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: one process per state directory is up to the user
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")

DB_NAME = "runs.sqlite3"
LOCK_NAME = "runs.lock"
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    ready_at REAL NOT NULL,
    created_at REAL NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    identity TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_due ON runs (status, priority DESC, seq);
CREATE INDEX IF NOT EXISTS runs_by_subject ON runs (subject, created_at DESC, id DESC);
"""


class SqliteRunQueue(RunQueue):
    """`RunQueue` on a SQLite file (`<state_dir>/runs.sqlite3`), surviving restarts."""

    kind = "sqlite"

    def __init__(
        self, core: Core, config: QueueConfig, state_dir: Path, *, heartbeat_seconds: float = 2.0, **options: Any
    ) -> None:
        super().__init__(core, config, heartbeat_seconds=heartbeat_seconds, **options)
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        self._conn: sqlite3.Connection | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock_fd: int | None = None
        self._takeover: asyncio.Task[None] | None = None

    # -- the database thread ----------------------------------------------------------------------------
    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` on the database thread."""
        if self._executor is None:
            raise RuntimeError("the run queue is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._call, fn, *args))

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._conn is None:
            raise RuntimeError("the run queue is closed")
        return fn(self._conn, *args)

    async def _open(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="runs-sqlite")
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, _connect, self.path)
        self._lock_fd = await loop.run_in_executor(self._executor, _lock, self.state_dir / LOCK_NAME)
        self.executes = self._lock_fd is not None
        if self.executes:
            await self._recover()
        else:
            log.warning("runs: another gateway process executes the runs in %s; this one only queues", self.path)
            self._takeover = asyncio.create_task(self._take_over(), name="runs-sqlite-takeover")

    async def _recover(self) -> None:
        requeued, failed = await self._db(_recover, time.time())
        if requeued or failed:
            log.info("runs: %d interrupted runs re-queued, %d failed (attempts used up)", requeued, failed)

    async def _take_over(self) -> None:
        """While another process owns the state directory, try for its lock now and then; run once it is ours."""

        def grab(_conn: sqlite3.Connection) -> None:
            self._lock_fd = _lock(self.state_dir / LOCK_NAME)  # stored here, so a cancel cannot lose it

        while self._lock_fd is None:
            await asyncio.sleep(self.poll_seconds * 5)
            await self._db(grab)
        await self._recover()
        self.executes = True
        log.info("runs: this process now executes the runs in %s", self.path)
        self._spawn_workers()

    async def _stopping(self) -> None:
        takeover, self._takeover = self._takeover, None
        if takeover is not None:
            takeover.cancel()
            await asyncio.gather(takeover, return_exceptions=True)

    async def _close_backend(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await loop.run_in_executor(executor, conn.close)
        lock_fd, self._lock_fd = self._lock_fd, None
        if lock_fd is not None:
            os.close(lock_fd)  # releases the lock
        executor.shutdown(wait=False)

    # -- the backend ------------------------------------------------------------------------------------
    async def _insert(self, record: RunRecord, identity: Identity) -> None:
        await self._db(_insert, record, identity_to_json(identity))

    async def _load(self, run_id: str) -> RunRecord | None:
        return await self._db(_load, run_id)

    async def _page(
        self, subject: str, status: RunStatus | None, limit: int, after: tuple[float, str] | None
    ) -> list[RunRecord]:
        return await self._db(_page, subject, status.value if status else None, limit, after)

    async def _claim(self, consumer: str) -> Claim | None:
        return await self._db(_claim, time.time())

    async def _settle(self, claim: Claim, record: RunRecord, mode: Literal["final", "retry", "requeue"]) -> bool:
        ready_at = record.next_attempt_at if mode == "retry" and record.next_attempt_at else time.time()
        return await self._db(_settle, record, claim.record.attempts, ready_at)

    async def _save_progress(self, claim: Claim, steps: int, tool_calls: int, usage: TokenUsage) -> None:
        await self._db(_save_progress, claim.record.id, claim.record.attempts, steps, tool_calls, usage)

    async def _cancel(self, run_id: str, now: float) -> Literal["cancelled", "running", "done", "missing"]:
        return await self._db(_cancel, run_id, now)

    async def _heartbeat(self, claim: Claim) -> Heartbeat:
        """A cancel asked for by another process shows in the record."""
        return await self._db(_check, claim.record.id, claim.record.attempts)

    async def _idle_wait(self) -> float:
        """Sleep until the next retry is due (or a submit wakes the worker), at most `poll_seconds` x 5."""
        due = await self._db(_next_due)
        longest = self.poll_seconds * 5
        return longest if due is None else max(0.001, min(longest, due - time.time()))


# -- SQL, run on the database thread -------------------------------------------------------------------
def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    ignore = path.parent / ".gitignore"
    if not ignore.exists():  # keep the state directory out of git and of the workspace's file listings
        with contextlib.suppress(OSError):
            ignore.write_text("*\n")
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


def _lock(path: Path) -> int | None:
    """An exclusive, non-blocking lock on `path`: its file descriptor, or None when another process has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _check(conn: sqlite3.Connection, run_id: str, attempt: int) -> Heartbeat:
    row = conn.execute("SELECT status, attempt, record FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None or row[0] != RunStatus.RUNNING.value or row[1] != attempt:
        return "lost"
    return "cancel" if RunRecord.model_validate_json(row[2]).cancel_requested else "ok"


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Any:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _store(conn: sqlite3.Connection, record: RunRecord, ready_at: float | None = None) -> None:
    sets = "status = ?, attempt = ?, record = ?" + (", ready_at = ?" if ready_at is not None else "")
    values: list[Any] = [record.status.value, record.attempts, record.model_dump_json()]
    if ready_at is not None:
        values.append(ready_at)
    conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*values, record.id])


def _insert(conn: sqlite3.Connection, record: RunRecord, identity: str) -> None:
    with _transaction(conn):
        conn.execute(
            "INSERT INTO runs (id, subject, status, priority, ready_at, created_at, attempt, identity, record)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.subject,
                record.status.value,
                record.priority.rank,
                record.created_at,
                record.created_at,
                record.attempts,
                identity,
                record.model_dump_json(),
            ),
        )


def _load(conn: sqlite3.Connection, run_id: str) -> RunRecord | None:
    row = conn.execute("SELECT record FROM runs WHERE id = ?", (run_id,)).fetchone()
    return None if row is None else RunRecord.model_validate_json(row[0])


def _page(
    conn: sqlite3.Connection, subject: str, status: str | None, limit: int, after: tuple[float, str] | None
) -> list[RunRecord]:
    sql = "SELECT record FROM runs WHERE subject = ?"
    args: list[Any] = [subject]
    if status is not None:
        sql += " AND status = ?"
        args.append(status)
    if after is not None:
        sql += " AND (created_at < ? OR (created_at = ? AND id < ?))"
        args += [after[0], after[0], after[1]]
    sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
    args.append(limit)
    return [RunRecord.model_validate_json(row[0]) for row in conn.execute(sql, args)]


def _claim(conn: sqlite3.Connection, now: float) -> Claim | None:
    with _transaction(conn):
        row = conn.execute(
            "SELECT identity, record FROM runs WHERE status = 'queued' AND ready_at <= ?"
            " ORDER BY priority DESC, seq LIMIT 1",
            (now,),
        ).fetchone()
        if row is None:
            return None
        record = RunRecord.model_validate_json(row[1])
        record.status = RunStatus.RUNNING
        record.attempts += 1
        record.started_at = record.started_at or now
        record.next_attempt_at = None
        record.steps, record.tool_calls, record.usage = 0, 0, TokenUsage()
        _store(conn, record)
    return Claim(record=record, identity=identity_from_json(row[0]), token=f"{record.id}:{record.attempts}")


def _settle(conn: sqlite3.Connection, record: RunRecord, attempt: int, ready_at: float) -> bool:
    with _transaction(conn):
        row = conn.execute("SELECT status, attempt FROM runs WHERE id = ?", (record.id,)).fetchone()
        if row is None or row[0] != RunStatus.RUNNING.value or row[1] != attempt:
            return False
        _store(conn, record, ready_at if record.status is RunStatus.QUEUED else None)
    return True


def _save_progress(
    conn: sqlite3.Connection, run_id: str, attempt: int, steps: int, tool_calls: int, usage: TokenUsage
) -> None:
    with _transaction(conn):
        row = conn.execute(
            "SELECT record FROM runs WHERE id = ? AND status = 'running' AND attempt = ?", (run_id, attempt)
        ).fetchone()
        if row is None:
            return
        record = RunRecord.model_validate_json(row[0])
        record.steps, record.tool_calls, record.usage = steps, tool_calls, usage
        _store(conn, record)


def _cancel(conn: sqlite3.Connection, run_id: str, now: float) -> Literal["cancelled", "running", "done", "missing"]:
    with _transaction(conn):
        row = conn.execute("SELECT record FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return "missing"
        record = RunRecord.model_validate_json(row[0])
        if record.status.terminal:
            return "done"
        record.cancel_requested = True
        if record.status is RunStatus.RUNNING:
            _store(conn, record)
            return "running"
        record.status = RunStatus.CANCELLED
        record.finished_at = now
        record.next_attempt_at = None
        record.duration_ms = None if record.started_at is None else round((now - record.started_at) * 1000, 3)
        record.error = ErrorInfo(code="cancelled", message="run cancelled before it ran")
        _store(conn, record)
        return "cancelled"


def _next_due(conn: sqlite3.Connection) -> float | None:
    row = conn.execute("SELECT MIN(ready_at) FROM runs WHERE status = 'queued'").fetchone()
    return None if row is None or row[0] is None else float(row[0])


def _recover(conn: sqlite3.Connection, now: float) -> tuple[int, int]:
    """Runs a dead process left `running`: back to the queue, or failed when their attempts are used up."""
    requeued = failed = 0
    with _transaction(conn):
        for (raw,) in conn.execute("SELECT record FROM runs WHERE status = 'running'").fetchall():
            record = RunRecord.model_validate_json(raw)
            if record.attempts >= record.max_attempts:
                record.status = RunStatus.FAILED
                record.finished_at = now
                record.duration_ms = None if record.started_at is None else round((now - record.started_at) * 1000, 3)
                error = Internal(f"the run was interrupted on each of its {record.max_attempts} attempts")
                record.error = ErrorInfo.from_error(error)
                failed += 1
                _store(conn, record)
            else:
                record.status = RunStatus.QUEUED
                record.next_attempt_at = None
                requeued += 1
                _store(conn, record, now)
    return requeued, failed
