"""The event bus across instances: Redis pub/sub carries events, local delivery stays immediate.

An event published here reaches local subscribers at once and goes to Redis tagged with this instance's
id; events that come back from Redis with our own id are ignored, events of other instances are delivered
locally. When Redis is unreachable the bus keeps serving local subscribers, reports itself unhealthy
and reconnects in the background. "Unreachable" includes a Redis that keeps the socket open but stops
answering: publishing is bounded by `command_timeout`, and an idle subscription that gets no pong back
for three pings is torn down. The bus counts as healthy only once Redis has confirmed the subscription.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from .events import Event, LocalFanout

log = logging.getLogger("gateway.bus")


def _redact(url: str) -> str:
    """The URL without its password, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class RedisBus(LocalFanout):
    """A `LocalFanout` whose events also travel through Redis pub/sub to the other instances."""

    spans_instances = True

    def __init__(
        self,
        url: str,
        *,
        channel_prefix: str = "gateway:events",
        queue_size: int = 1000,
        instance_id: str | None = None,
        reconnect_seconds: float = 0.5,
        ping_seconds: float = 1.0,
        command_timeout: float = 1.0,
        outbox_size: int = 10_000,
    ) -> None:
        super().__init__(queue_size, instance_id)
        self.url = url
        self.prefix = channel_prefix
        self.reconnect_seconds = reconnect_seconds
        # An idle subscription pings every `ping_seconds`; no reply at all for three of them means the
        # server is gone even though the socket is open (a hung or partitioned Redis).
        self.ping_seconds = ping_seconds
        self.liveness_seconds = 3 * ping_seconds
        # Publishing never waits on Redis indefinitely: a reply slower than `command_timeout` fails it.
        # A broken connection (say, from before a Redis restart) gets one immediate retry; a timeout none.
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=2,
            socket_timeout=command_timeout,
            health_check_interval=10,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.last_error: str | None = None
        self.published_remote = 0
        self.publish_failures = 0
        # Events from `publish_nowait` wait here for the writer task, which sends them in pipelined batches.
        self._outbox: collections.deque[Event] = collections.deque(maxlen=outbox_size)
        self._outbox_ready = asyncio.Event()
        self._outbox_idle = asyncio.Event()
        self._outbox_idle.set()
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read_loop(), name="redis-bus-reader")
        self._writer = asyncio.create_task(self._write_loop(), name="redis-bus-writer")
        # Give the first connection a moment so readiness is right at start; never fail start-up on it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), 2.0)

    async def close(self) -> None:
        if self._writer is not None and self._outbox and self.healthy:
            with contextlib.suppress(TimeoutError):  # flush what is queued, briefly
                await asyncio.wait_for(self._outbox_idle.wait(), 2.0)
        for task in (self._writer, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._close_subscriptions()
        await self._redis.aclose()

    @property
    def healthy(self) -> bool:
        return self._connected.is_set()

    def status(self) -> dict[str, Any]:
        return {"kind": "redis", "healthy": self.healthy, "last_error": self.last_error}

    async def publish(self, event: Event) -> None:
        if not event.origin:
            event.origin = self.instance_id
        self.deliver(event)
        if not self.healthy:
            self.publish_failures += 1
            return
        try:
            await self._redis.publish(f"{self.prefix}:{event.topic}", event.model_dump_json())
            self.published_remote += 1
        except (RedisError, OSError) as exc:
            self.publish_failures += 1
            self._mark_down(exc)

    def wants(self, topic: str) -> bool:
        """Always: another instance's subscribers may want it (events go to Redis whoever listens here)."""
        return True

    def publish_nowait(self, event: Event) -> None:
        """Deliver locally now and queue the event for Redis; never waits (the writer task sends it)."""
        if not event.origin:
            event.origin = self.instance_id
        self.deliver(event)
        if not self.healthy:
            self.publish_failures += 1
            return
        if len(self._outbox) == self._outbox.maxlen:
            self.publish_failures += 1  # the oldest queued event falls out
        self._outbox.append(event)
        self._outbox_idle.clear()
        self._outbox_ready.set()

    async def _write_loop(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while self._outbox:
                batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), 256))]
                pipe = self._redis.pipeline(transaction=False)
                for event in batch:
                    pipe.publish(f"{self.prefix}:{event.topic}", event.model_dump_json())
                try:
                    await pipe.execute()
                    self.published_remote += len(batch)
                except (RedisError, OSError) as exc:
                    self.publish_failures += len(batch)
                    self._mark_down(exc)
            self._outbox_idle.set()

    def _mark_down(self, exc: BaseException) -> None:
        if self._connected.is_set():
            log.warning("redis bus unreachable: %s", exc)
        self._connected.clear()
        self.last_error = str(exc) or type(exc).__name__

    async def _read_loop(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await self._subscribe(pubsub)
                if not self._connected.is_set():
                    log.info("redis bus connected to %s", _redact(self.url))
                self._connected.set()
                self.last_error = None
                await self._receive(pubsub)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                raise
            except (RedisError, OSError) as exc:
                self._mark_down(exc)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                await asyncio.sleep(self.reconnect_seconds)

    async def _subscribe(self, pubsub: PubSub) -> None:
        """Subscribe and wait for the server's confirmation: only then do remote events really arrive."""
        await pubsub.psubscribe(f"{self.prefix}:*")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(2.0, self.liveness_seconds)
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise RedisConnectionError("redis did not confirm the subscription")
            message = await pubsub.get_message(timeout=remaining)
            if message is not None and message.get("type") == "psubscribe":
                return

    async def _receive(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        last_heard = loop.time()
        while True:
            if not self._connected.is_set():
                # A publish failed: this connection is suspect too, so subscribe afresh to prove it.
                raise RedisConnectionError(self.last_error or "redis publish failed")
            message = await pubsub.get_message(timeout=self.ping_seconds)
            if message is not None:
                last_heard = loop.time()
                self._on_message(message)
                continue
            if loop.time() - last_heard > self.liveness_seconds:
                raise RedisConnectionError(f"no reply from redis for {self.liveness_seconds:g}s")
            await pubsub.ping()

    def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") != "pmessage":
            return
        try:
            event = Event.model_validate_json(message["data"])
        except ValueError:
            log.warning("dropping malformed event from redis channel %r", message.get("channel"))
            return
        if event.origin == self.instance_id:
            return
        self.deliver(event)
