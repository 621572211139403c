"""Shared-document state in Redis: every instance appends its updates, anyone can catch up from them.

Each document is a Redis list of Yjs updates (`<prefix>:doc:<path>`) plus a set of the shared paths.
Appends go through a writer task that pipelines them; while Redis is unreachable they wait in a bounded
outbox (and the resynchronisation after the outage offers every document's whole state anyway). A list
that grows past `compact_after` entries is compacted atomically: the first N entries are replaced by
their merge, entries appended meanwhile by other instances are kept.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from typing import cast

import redis.asyncio as aioredis
from pycrdt import merge_updates
from redis.exceptions import RedisError

log = logging.getLogger("gateway.collab")


class RedisStore:
    def __init__(
        self, url: str, *, prefix: str = "gateway:collab", compact_after: int = 500, outbox_size: int = 100_000
    ) -> None:
        self.prefix = prefix
        self.compact_after = compact_after
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        self._outbox: collections.deque[tuple[str, bytes]] = collections.deque(maxlen=outbox_size)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None
        self.failures = 0

    def _key(self, path: str) -> str:
        return f"{self.prefix}:doc:{path}"

    async def load(self, path: str) -> list[bytes]:
        try:
            items = cast(list[bytes], await self._redis.lrange(self._key(path), 0, -1))
        except (RedisError, OSError) as exc:
            log.warning("collab: cannot load %s from Redis (%s); starting from what this instance has", path, exc)
            return []
        return items

    def append(self, path: str, update: bytes) -> None:
        self._outbox.append((path, update))
        self._idle.clear()
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while True:
            if not self._outbox:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(self._outbox)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for path, update in batch:
                        pipe.rpush(self._key(path), update)
                        pipe.sadd(f"{self.prefix}:paths", path)
                    results = await pipe.execute()
            except (RedisError, OSError) as exc:
                self.failures += 1
                log.debug("collab: Redis append failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            for _ in batch:
                if self._outbox:
                    self._outbox.popleft()
            lengths = {path: int(results[2 * i]) for i, (path, _u) in enumerate(batch)}
            for path, length in lengths.items():
                if length > self.compact_after:
                    with contextlib.suppress(RedisError, OSError):
                        await self._compact(path, length)

    async def _compact(self, path: str, length: int) -> None:
        key = self._key(path)
        items = cast(list[bytes], await self._redis.lrange(key, 0, length - 1))
        if len(items) < 2:
            return
        merged = merge_updates(*items)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.ltrim(key, len(items), -1)
            pipe.lpush(key, merged)
            await pipe.execute()

    def bind(self, path: str, merged: Callable[[], bytes]) -> None:
        """Compaction merges the stored updates themselves; the live state is not needed."""

    def discard(self, path: str) -> None:
        """Kept: other instances may still have the document open; it goes when someone saves it."""

    async def paths(self) -> list[str]:
        try:
            members = await self._redis.smembers(f"{self.prefix}:paths")
        except (RedisError, OSError):
            return []
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def flush(self, timeout: float = 2.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)

    async def close(self) -> None:
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
        with contextlib.suppress(Exception):
            await self._redis.aclose()
