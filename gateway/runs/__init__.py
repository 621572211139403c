"""The durable run queue: agent runs submitted ahead of time, executed by workers, recorded and streamed.

`build_run_queue` picks the backend from the config: Redis streams when `redis_url` is set (runs shared
by every instance), else a SQLite file in the state directory (`server.state_dir`, default
`<workspace>/.gateway`). See `queue.py` for attempts, backoff, cancellation and progress.
"""

from __future__ import annotations

from pathlib import Path

from ..config import GatewayConfig
from ..execution import Core
from .models import PRIORITY_ORDER, Priority, RunPage, RunRecord, RunStatus, SubmitRun, parse_submit
from .queue import RUN_CAPABILITY, RUNS_TOPIC, RunQueue, backoff_delay, retryable

__all__ = [
    "PRIORITY_ORDER",
    "RUNS_TOPIC",
    "RUN_CAPABILITY",
    "Priority",
    "RunPage",
    "RunQueue",
    "RunRecord",
    "RunStatus",
    "SubmitRun",
    "backoff_delay",
    "build_run_queue",
    "parse_submit",
    "retryable",
    "state_dir",
]


def state_dir(config: GatewayConfig) -> Path:
    """Where durable state lives: `server.state_dir`, or `<workspace>/.gateway`."""
    if config.server.state_dir is not None:
        return Path(config.server.state_dir)
    return Path(config.server.workspace) / ".gateway"


def build_run_queue(core: Core, config: GatewayConfig, directory: Path | None = None) -> RunQueue:
    """The run queue for `config`: on Redis when `redis_url` is set, else in SQLite under `directory`."""
    if config.redis_url:
        from .redis_queue import RedisRunQueue

        return RedisRunQueue(core, config.queue, config.redis_url)
    from .sqlite_queue import SqliteRunQueue

    return SqliteRunQueue(core, config.queue, directory or state_dir(config))
