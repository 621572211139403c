"""The run queue across instances: Redis streams with a consumer group, records in Redis hashes.

Layout (under `prefix`, default `gateway:runs`):

- `queue:<priority>`: one stream per priority, each entry `{run: <id>}`; consumer group `workers`. Workers look
  at the streams from critical to low and take one entry at a time (`XREADGROUP ... COUNT 1`), so higher
  priorities go first and each priority is FIFO.
- `run:<id>`: the record, one hash field per record field (JSON values), plus `identity` (who asked) and
  `owner` (the token of the attempt running now).
- `lock:<id>`: held (with a time to live of `claim_idle_seconds`) by the worker running the run.
- `delayed`: a sorted set of runs waiting out a retry backoff (score: when due; member `<priority>|<id>`);
  workers move due ones back into their stream.
- `subject:<subject>`: a sorted set of each caller's runs by creation time, for listing.

Exactly once: starting an attempt is one Lua script that refuses runs already final (the duplicate entry is
just acknowledged), refuses runs whose lock another live worker holds, and otherwise counts the attempt and
takes the lock and the `owner` token. Every later write (progress, outcome) is a script that first checks
the token, so a worker that lost its run writes nothing. A dead worker's entries stay pending in the group;
after `claim_idle_seconds` another worker takes them with `XAUTOCLAIM`. A live worker keeps its long runs
with a heartbeat every `claim_idle_seconds / 3` that renews the lock and re-claims its own entry to reset
the entry's idle time (`XCLAIM ... JUSTID`); the heartbeat also notices a cancel asked for on another
instance. Scripts build the stream key of a delayed run from its member, so this layout needs a single
Redis (not Redis Cluster).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ..config import QueueConfig
from ..execution import Core
from ..identity import Identity
from ..llm.models import TokenUsage
from .models import PRIORITY_ORDER, Priority, RunRecord, RunStatus, identity_from_json, identity_to_json
from .queue import Claim, Heartbeat, RunQueue

GROUP = "workers"
RECORD_FIELDS = frozenset(RunRecord.model_fields)


def _j(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


QUEUED, RUNNING = _j(RunStatus.QUEUED.value), _j(RunStatus.RUNNING.value)

# KEYS: run, lock. ARGV: token, lock ttl ms, now, empty usage.
BEGIN = f"""
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status ~= '{QUEUED}' and status ~= '{RUNNING}' then return 'done' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'busy' end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
local most = tonumber(redis.call('HGET', KEYS[1], 'max_attempts') or '1')
if status == '{RUNNING}' and attempts >= most then return 'exhausted' end
redis.call('HSET', KEYS[1], 'attempts', attempts + 1, 'status', '{RUNNING}', 'next_attempt_at', 'null',
  'steps', '0', 'tool_calls', '0', 'usage', ARGV[4])
if redis.call('HGET', KEYS[1], 'started_at') == 'null' then redis.call('HSET', KEYS[1], 'started_at', ARGV[3]) end
return 'ok'
"""

# KEYS: run, lock, stream, delayed. ARGV: token, entry id, group, mode, delayed member, due score, run id,
# then field/value pairs.
FINISH = f"""
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= '{RUNNING}' then return 0 end
for i = 8, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HDEL', KEYS[1], 'owner')
redis.call('DEL', KEYS[2])
redis.call('XACK', KEYS[3], ARGV[3], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
if ARGV[4] == 'retry' then
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[5])
elseif ARGV[4] == 'requeue' then
  redis.call('XADD', KEYS[3], '*', 'run', ARGV[7])
end
return 1
"""

# KEYS: run. ARGV: token, then field/value pairs.
PROGRESS = f"""
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= '{RUNNING}' then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

# KEYS: run, lock, stream. ARGV: token, lock ttl ms, group, consumer, entry id.
HEARTBEAT = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 'lost' end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('XCLAIM', KEYS[3], ARGV[3], ARGV[4], 0, ARGV[5], 'JUSTID')
if redis.call('HGET', KEYS[1], 'cancel_requested') == 'true' then return 'cancel' end
return 'ok'
"""

# KEYS: run, delayed. ARGV: now, delayed member, error.
CANCEL = f"""
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == '{RUNNING}' then
  redis.call('HSET', KEYS[1], 'cancel_requested', 'true')
  return 'running'
end
if status ~= '{QUEUED}' then return 'done' end
local started = redis.call('HGET', KEYS[1], 'started_at')
local duration = 'null'
if started and started ~= 'null' then
  duration = string.format('%.3f', (tonumber(ARGV[1]) - tonumber(started)) * 1000)
end
redis.call('HSET', KEYS[1], 'status', '"cancelled"', 'cancel_requested', 'true', 'finished_at', ARGV[1],
  'duration_ms', duration, 'next_attempt_at', 'null', 'error', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[2])
return 'cancelled'
"""

# KEYS: delayed. ARGV: now, stream key prefix, how many at most.
PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local sep = string.find(member, '|', 1, true)
  redis.call('XADD', ARGV[2] .. string.sub(member, 1, sep - 1), '*', 'run', string.sub(member, sep + 1))
end
return #due
"""


class RedisRunQueue(RunQueue):
    """`RunQueue` on Redis: every instance's workers take runs from the same streams."""

    kind = "redis"

    def __init__(
        self,
        core: Core,
        config: QueueConfig,
        url: str,
        *,
        prefix: str = "gateway:runs",
        claim_idle_seconds: float = 30.0,
        heartbeat_seconds: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(core, config, heartbeat_seconds=heartbeat_seconds or claim_idle_seconds / 3, **options)
        self.prefix = prefix
        self.claim_idle_ms = max(1, int(claim_idle_seconds * 1000))
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5
        )
        self._begin = self._redis.register_script(BEGIN)
        self._finish = self._redis.register_script(FINISH)
        self._progress = self._redis.register_script(PROGRESS)
        self._beat_script = self._redis.register_script(HEARTBEAT)
        self._cancel_script = self._redis.register_script(CANCEL)
        self._promote = self._redis.register_script(PROMOTE)

    # -- keys -------------------------------------------------------------------------------------------
    def _stream(self, priority: Priority | str) -> str:
        return f"{self.prefix}:queue:{Priority(priority).value}"

    def _run(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}"

    def _lock(self, run_id: str) -> str:
        return f"{self.prefix}:lock:{run_id}"

    def _subject(self, subject: str) -> str:
        return f"{self.prefix}:subject:{subject}"

    @property
    def _delayed(self) -> str:
        return f"{self.prefix}:delayed"

    # -- lifecycle ----------------------------------------------------------------------------------------
    async def _open(self) -> None:
        await self._ensure_groups()

    async def _ensure_groups(self) -> None:
        for priority in PRIORITY_ORDER:
            try:
                await self._redis.xgroup_create(self._stream(priority), GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _close_backend(self) -> None:
        await self._redis.aclose()

    # -- records ------------------------------------------------------------------------------------------
    @staticmethod
    def _encode(record: RunRecord) -> dict[str, str]:
        return {key: _j(value) for key, value in record.model_dump(mode="json").items()}

    @staticmethod
    def _decode(fields: Any) -> RunRecord | None:
        """The record in a run hash (values are JSON), or None when the hash is empty."""
        if not isinstance(fields, dict) or not fields.get("id"):
            return None
        return RunRecord.model_validate({k: json.loads(v) for k, v in fields.items() if k in RECORD_FIELDS})

    async def _insert(self, record: RunRecord, identity: Identity) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            mapping = {**self._encode(record), "identity": identity_to_json(identity)}
            pipe.hset(self._run(record.id), mapping=cast(Any, mapping))
            pipe.zadd(self._subject(record.subject), {record.id: record.created_at})
            pipe.xadd(self._stream(record.priority), {"run": record.id})
            await pipe.execute()

    async def _load(self, run_id: str) -> RunRecord | None:
        return self._decode(await self._redis.hgetall(self._run(run_id)))

    async def _page(
        self, subject: str, status: RunStatus | None, limit: int, after: tuple[float, str] | None
    ) -> list[RunRecord]:
        key = self._subject(subject)
        top: float | str = "+inf" if after is None else after[0]
        found: list[RunRecord] = []
        offset, batch = 0, max(50, limit)
        while len(found) < limit:
            members = cast(
                "list[tuple[str, float]]",
                await self._redis.zrevrangebyscore(key, top, "-inf", start=offset, num=batch, withscores=True),
            )
            if not members:
                break
            offset += len(members)
            ids = [m for m, score in members if after is None or score < after[0] or m < after[1]]
            async with self._redis.pipeline(transaction=False) as pipe:
                for run_id in ids:
                    pipe.hgetall(self._run(run_id))
                rows = await pipe.execute()
            for row in rows:
                record = self._decode(row)
                if record is not None and (status is None or record.status is status):
                    found.append(record)
        return found[:limit]

    # -- attempts -----------------------------------------------------------------------------------------
    async def _claim(self, consumer: str) -> Claim | None:
        try:
            await self._promote(keys=[self._delayed], args=[_j(time.time()), f"{self.prefix}:queue:", 100])
            for priority in PRIORITY_ORDER:
                stream = self._stream(priority)
                # A dead worker's entries first (pending longer than the idle time), then new ones.
                stale: Any = await self._redis.xautoclaim(
                    stream, GROUP, consumer, min_idle_time=self.claim_idle_ms, start_id="0-0", count=1
                )
                for entry_id, fields in stale[1]:
                    claim = await self._start(stream, entry_id, fields, consumer)
                    if claim is not None:
                        return claim
                fresh: Any = await self._redis.xreadgroup(GROUP, consumer, {stream: ">"}, count=1)
                for _, entries in fresh or []:
                    for entry_id, fields in entries:
                        claim = await self._start(stream, entry_id, fields, consumer)
                        if claim is not None:
                            return claim
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._ensure_groups()  # the streams were deleted (say, a flushed Redis): make them again
        return None

    async def _start(self, stream: str, entry_id: str, fields: dict[str, str] | None, consumer: str) -> Claim | None:
        """Begin an attempt for a delivered entry, or acknowledge it when its run needs nothing more."""
        run_id = (fields or {}).get("run")
        if run_id:
            token = f"{consumer}:{uuid.uuid4().hex[:8]}"
            args: list[str | int] = [token, self.claim_idle_ms, _j(time.time()), TokenUsage().model_dump_json()]
            state = await self._begin(keys=[self._run(run_id), self._lock(run_id)], args=args)
            if state == "busy":  # another live worker holds it; its heartbeat takes the entry back
                return None
            if state in ("ok", "exhausted"):
                raw: Any = await self._redis.hgetall(self._run(run_id))
                record = self._decode(raw)
                if record is not None:
                    return Claim(
                        record=record,
                        identity=identity_from_json(str(raw["identity"])),
                        token=token,
                        exhausted=state == "exhausted",
                        backend={"stream": stream, "entry": entry_id, "consumer": consumer},
                    )
        async with self._redis.pipeline(transaction=True) as pipe:  # final already, missing or malformed
            pipe.xack(stream, GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            await pipe.execute()
        return None

    async def _settle(self, claim: Claim, record: RunRecord, mode: Literal["final", "retry", "requeue"]) -> bool:
        fields = self._encode(record)
        pairs = [item for key, value in fields.items() for item in (key, value)]
        due = record.next_attempt_at if record.next_attempt_at is not None else 0
        done = await self._finish(
            keys=[self._run(record.id), self._lock(record.id), claim.backend["stream"], self._delayed],
            args=[
                claim.token,
                claim.backend["entry"],
                GROUP,
                mode,
                f"{record.priority.value}|{record.id}",
                _j(due),
                record.id,
                *pairs,
            ],
        )
        return bool(done)

    async def _save_progress(self, claim: Claim, steps: int, tool_calls: int, usage: TokenUsage) -> None:
        args = [claim.token, "steps", _j(steps), "tool_calls", _j(tool_calls), "usage", usage.model_dump_json()]
        await self._progress(keys=[self._run(claim.record.id)], args=args)

    async def _heartbeat(self, claim: Claim) -> Heartbeat:
        run_id = claim.record.id
        state = await self._beat_script(
            keys=[self._run(run_id), self._lock(run_id), claim.backend["stream"]],
            args=[claim.token, self.claim_idle_ms, GROUP, claim.backend["consumer"], claim.backend["entry"]],
        )
        return "cancel" if state == "cancel" else "lost" if state == "lost" else "ok"

    async def _cancel(self, run_id: str, now: float) -> Literal["cancelled", "running", "done", "missing"]:
        record = await self._load(run_id)
        member = f"{record.priority.value}|{run_id}" if record is not None else ""
        error = _j({"code": "cancelled", "message": "run cancelled before it ran", "data": {}})
        state = await self._cancel_script(keys=[self._run(run_id), self._delayed], args=[_j(now), member, error])
        if state not in ("cancelled", "running", "done", "missing"):
            raise RuntimeError(f"unexpected cancel state {state!r}")
        outcome: Literal["cancelled", "running", "done", "missing"] = state
        return outcome
