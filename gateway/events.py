"""The event bus: publish events on topics; each subscriber has its own bounded queue.

A slow subscriber never slows the publisher or anyone else: when its queue is full the oldest event is
dropped and counted. `InMemoryBus` serves one process; `gateway.redis_bus.RedisBus` carries the same
events between instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

from pydantic import BaseModel, Field


class Event(BaseModel):
    """One event: `topic` routes it, `type` says what happened, `data` carries the details."""

    topic: str
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    ts: float = Field(default_factory=time.time)
    origin: str = ""
    id: str = Field(default_factory=lambda: secrets.token_hex(16))  # 32 random hex digits, as uuid4().hex


class Subscription:
    """A bounded queue of events whose topic matches `pattern` (fnmatch syntax)."""

    def __init__(self, bus: LocalFanout, pattern: str, maxsize: int) -> None:
        self._bus = bus
        self.pattern = pattern
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize)
        self.dropped = 0
        self.closed = False

    def matches(self, topic: str) -> bool:
        return fnmatch.fnmatchcase(topic, self.pattern)

    def offer(self, event: Event) -> None:
        """Queue `event`, dropping the oldest queued one when full (never blocks)."""
        if self.closed:
            return
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self._queue.get_nowait()
                    self.dropped += 1
                    self._bus.dropped_total += 1

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def get(self, timeout: float | None = None) -> Event:
        """The next event; raises `TimeoutError` after `timeout` and `EOFError` once closed."""
        if self.closed and self._queue.empty():
            raise EOFError("subscription closed")
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item is None:
            raise EOFError("subscription closed")
        return item

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._bus._unsubscribe(self)
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            try:
                yield await self.get()
            except EOFError:
                return

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus(Protocol):
    """What the core needs of a bus; both implementations provide it."""

    instance_id: str
    dropped_total: int
    spans_instances: bool
    """True when published events also reach other gateway processes (Redis); False for one process."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, event: Event) -> None: ...

    def publish_nowait(self, event: Event) -> None: ...

    def wants(self, topic: str) -> bool:
        """False when an event on `topic` would reach no one (a publisher may then skip building it)."""
        ...

    def subscribe(self, pattern: str = "*", maxsize: int | None = None) -> Subscription: ...

    def queue_depth(self) -> int: ...

    @property
    def healthy(self) -> bool: ...

    def status(self) -> dict[str, Any]: ...


class LocalFanout:
    """Delivers events to this process's subscribers; the base of both buses."""

    spans_instances = False

    def __init__(self, queue_size: int = 1000, instance_id: str | None = None) -> None:
        self.queue_size = queue_size
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self._subs: list[Subscription] = []
        self._wanted: dict[str, bool] = {}  # topic -> some subscription matches it (cleared on any change)
        self.dropped_total = 0

    def subscribe(self, pattern: str = "*", maxsize: int | None = None) -> Subscription:
        sub = Subscription(self, pattern, maxsize or self.queue_size)
        self._subs.append(sub)
        self._wanted.clear()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subs.remove(sub)
        self._wanted.clear()

    def wants(self, topic: str) -> bool:
        """Whether a subscription of this process matches `topic`."""
        wanted = self._wanted.get(topic)
        if wanted is None:
            wanted = self._wanted[topic] = any(sub.matches(topic) for sub in self._subs)
        return wanted

    def deliver(self, event: Event) -> None:
        for sub in list(self._subs):
            if sub.matches(event.topic):
                sub.offer(event)

    def queue_depth(self) -> int:
        return sum(s.depth for s in self._subs)

    def _close_subscriptions(self) -> None:
        for sub in list(self._subs):
            sub.close()


class InMemoryBus(LocalFanout):
    """The embedded default: events stay inside this process."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._close_subscriptions()

    async def publish(self, event: Event) -> None:
        self.publish_nowait(event)

    def publish_nowait(self, event: Event) -> None:
        if not event.origin:
            event.origin = self.instance_id
        self.deliver(event)

    @property
    def healthy(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {"kind": "memory", "healthy": True}
