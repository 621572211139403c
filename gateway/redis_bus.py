"""The event bus across instances: Redis pub/sub carries events, local delivery stays immediate.

An event published here reaches local subscribers at once and goes to Redis tagged with this instance's
id; events that come back from Redis with our own id are ignored, events of other instances are delivered
locally. When Redis is unreachable the bus keeps serving local subscribers, reports itself unhealthy
and reconnects in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .events import Event, LocalFanout

log = logging.getLogger("gateway.bus")


class RedisBus(LocalFanout):
    def __init__(
        self,
        url: str,
        *,
        channel_prefix: str = "gateway:events",
        queue_size: int = 1000,
        instance_id: str | None = None,
        reconnect_seconds: float = 0.5,
    ) -> None:
        super().__init__(queue_size, instance_id)
        self.url = url
        self.prefix = channel_prefix
        self.reconnect_seconds = reconnect_seconds
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=None, health_check_interval=10
        )
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.last_error: str | None = None
        self.published_remote = 0
        self.publish_failures = 0

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read_loop(), name="redis-bus-reader")
        # Give the first connection a moment so readiness is right at start; never fail start-up on it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), 2.0)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
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

    def _mark_down(self, exc: BaseException) -> None:
        if self._connected.is_set():
            log.warning("redis bus unreachable: %s", exc)
        self._connected.clear()
        self.last_error = str(exc) or type(exc).__name__

    async def _read_loop(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(f"{self.prefix}:*")
                if not self._connected.is_set():
                    log.info("redis bus connected to %s", self.url)
                self._connected.set()
                self.last_error = None
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        await pubsub.ping()
                        continue
                    self._on_message(message)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            except (RedisError, OSError) as exc:
                self._mark_down(exc)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(self.reconnect_seconds)

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
