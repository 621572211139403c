"""The event bus: topic routing, bounded per-subscriber queues, and Redis fan-out between instances."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.events import Event, InMemoryBus, Subscription
from gateway.redis_bus import RedisBus

TIMEOUT = 10.0


async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = TIMEOUT) -> None:
    """Poll `predicate` (plain or async) with short awaits until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


def drain(sub: Subscription) -> list[Event]:
    """Everything queued right now, without waiting."""
    events = []
    while sub.depth:
        events.append(sub._queue.get_nowait())
    return [event for event in events if event is not None]


def ev(topic: str, n: int = 0, **data: Any) -> Event:
    return Event(topic=topic, type="test", data={"n": n, **data})


# --- in memory --------------------------------------------------------------------------------------------


async def test_subscribers_get_only_topics_matching_their_pattern() -> None:
    bus = InMemoryBus()
    everything = bus.subscribe("*")
    executions = bus.subscribe("executions")
    workspace = bus.subscribe("workspace.*")
    for topic in ["executions", "workspace.files", "workspace.docs", "executions.extra", "other"]:
        await bus.publish(ev(topic))
    assert [e.topic for e in drain(everything)] == [
        "executions",
        "workspace.files",
        "workspace.docs",
        "executions.extra",
        "other",
    ]
    assert [e.topic for e in drain(executions)] == ["executions"]
    assert [e.topic for e in drain(workspace)] == ["workspace.files", "workspace.docs"]


async def test_publish_stamps_origin_with_instance_id() -> None:
    bus = InMemoryBus(instance_id="me")
    sub = bus.subscribe()
    await bus.publish(ev("t"))
    assert (await sub.get(timeout=1)).origin == "me"


async def test_full_queue_drops_oldest_and_counts() -> None:
    bus = InMemoryBus(queue_size=100)
    slow = bus.subscribe("*", maxsize=3)
    fast = bus.subscribe("*")
    for n in range(5):
        await bus.publish(ev("t", n))
    assert [e.data["n"] for e in drain(slow)] == [2, 3, 4]  # the newest survive
    assert slow.dropped == 2
    assert bus.dropped_total == 2
    assert [e.data["n"] for e in drain(fast)] == [0, 1, 2, 3, 4]  # a slow subscriber costs others nothing
    assert fast.dropped == 0


async def test_closing_the_bus_ends_iteration_of_waiting_subscribers() -> None:
    bus = InMemoryBus()
    sub = bus.subscribe("*")
    received: list[Event] = []

    async def consume() -> None:
        async for event in sub:
            received.append(event)

    consumer = asyncio.create_task(consume())
    await bus.publish(ev("t", 1))
    await wait_for(lambda: len(received) == 1)
    await bus.close()
    await asyncio.wait_for(consumer, TIMEOUT)
    assert sub.closed
    with pytest.raises(EOFError):
        await sub.get(timeout=1)
    await bus.publish(ev("t", 2))  # publishing after close reaches nobody and does not fail
    assert bus.queue_depth() == 0


async def test_closing_a_subscription_delivers_what_was_queued_then_ends() -> None:
    bus = InMemoryBus()
    with bus.subscribe("*") as sub:
        await bus.publish(ev("t", 1))
    assert [event.data["n"] async for event in sub] == [1]


async def test_get_times_out_when_nothing_arrives() -> None:
    bus = InMemoryBus()
    sub = bus.subscribe("*")
    with pytest.raises(TimeoutError):
        await sub.get(timeout=0.01)


# --- redis ------------------------------------------------------------------------------------------------


@pytest.fixture
async def redis_buses(redis_url: str) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    first = RedisBus(redis_url, instance_id="first", reconnect_seconds=0.05)
    second = RedisBus(redis_url, instance_id="second", reconnect_seconds=0.05)
    await first.start()
    await second.start()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def exchange(a: RedisBus, b: RedisBus, tag: str) -> None:
    """Publish one event from each side and check each side sees both, each exactly once.

    Echo-freedom needs a fence: b publishes only after it got a's event, so by the time a gets b's event
    over its one Redis connection, any echo of a's own event (published earlier) has come in as well.
    """
    sub_a, sub_b = a.subscribe(f"{tag}.*"), b.subscribe(f"{tag}.*")
    try:
        await a.publish(ev(f"{tag}.one", 1))
        got_b = await sub_b.get(timeout=TIMEOUT)
        assert (got_b.origin, got_b.data["n"]) == (a.instance_id, 1)
        await b.publish(ev(f"{tag}.two", 2))
        got_a = [await sub_a.get(timeout=TIMEOUT), await sub_a.get(timeout=TIMEOUT)]
        assert [(e.origin, e.data["n"]) for e in got_a] == [(a.instance_id, 1), (b.instance_id, 2)]
        # b's own event: delivered locally once; a fence from a proves b's echo of it came and went.
        assert (await sub_b.get(timeout=TIMEOUT)).data["n"] == 2
        await a.publish(ev(f"{tag}.fence", 3))
        assert (await sub_b.get(timeout=TIMEOUT)).data["n"] == 3
        assert (await sub_a.get(timeout=TIMEOUT)).data["n"] == 3
        assert sub_a.depth == 0 and sub_b.depth == 0, (drain(sub_a), drain(sub_b))
    finally:
        sub_a.close()
        sub_b.close()


async def test_two_instances_see_each_others_events_exactly_once(
    redis_buses: tuple[RedisBus, RedisBus],
) -> None:
    first, second = redis_buses
    assert first.healthy and second.healthy
    await exchange(first, second, "round1")
    await exchange(second, first, "round2")
    assert first.status() == {"kind": "redis", "healthy": True, "last_error": None}


async def test_remote_events_respect_topic_patterns(redis_buses: tuple[RedisBus, RedisBus]) -> None:
    first, second = redis_buses
    files = second.subscribe("workspace.files")
    everything = second.subscribe("*")
    await first.publish(ev("executions", 1))
    await first.publish(ev("workspace.files", 2))
    await wait_for(lambda: everything.depth == 2)
    assert [e.data["n"] for e in drain(files)] == [2]


async def test_local_delivery_survives_redis_outage_and_bus_reconnects(
    redis_buses: tuple[RedisBus, RedisBus], redis_server: Any
) -> None:
    first, second = redis_buses
    local = first.subscribe("outage.*")
    redis_server.stop()
    await wait_for(lambda: not first.healthy and not second.healthy)
    assert first.status()["last_error"]

    started = time.monotonic()
    await first.publish(ev("outage.local", 1))
    assert time.monotonic() - started < 1.0  # an outage does not hold up publishers
    assert (await local.get(timeout=TIMEOUT)).data["n"] == 1
    assert first.publish_failures >= 1

    redis_server.start()
    await wait_for(lambda: first.healthy and second.healthy)
    await exchange(first, second, "after")
    await exchange(second, first, "after2")


async def test_hung_redis_holds_publishers_up_only_briefly_then_bus_recovers(redis_url: str, redis_server: Any) -> None:
    first = RedisBus(redis_url, instance_id="first", reconnect_seconds=0.05, ping_seconds=0.1, command_timeout=0.2)
    second = RedisBus(redis_url, instance_id="second", reconnect_seconds=0.05, ping_seconds=0.1)
    await first.start()
    await second.start()
    try:
        local = first.subscribe("hang.*")
        redis_server.pause()
        started = time.monotonic()
        await first.publish(ev("hang.local", 1))
        assert time.monotonic() - started < 2.0  # bounded by command_timeout, not forever
        assert (await local.get(timeout=TIMEOUT)).data["n"] == 1
        await wait_for(lambda: not first.healthy and not second.healthy)  # no pong: the reader notices too

        redis_server.resume()
        await wait_for(lambda: first.healthy and second.healthy)
        await exchange(first, second, "resumed")
    finally:
        await first.close()
        await second.close()


async def test_a_failed_publish_does_not_leave_the_bus_unhealthy_for_good(
    redis_buses: tuple[RedisBus, RedisBus], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = redis_buses
    real_publish = first._redis.publish
    calls = 0

    async def flaky_publish(channel: str, message: str) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RedisConnectionError("simulated publish failure")
        return await real_publish(channel, message)

    monkeypatch.setattr(first._redis, "publish", flaky_publish)
    await first.publish(ev("flaky.one", 1))
    assert not first.healthy
    assert first.status()["last_error"] == "simulated publish failure"
    await wait_for(lambda: first.healthy)  # the reader re-subscribes and proves Redis is fine
    await exchange(first, second, "flaky")


async def test_publish_nowait_batches_reach_the_other_instance_in_order(
    redis_buses: tuple[RedisBus, RedisBus],
) -> None:
    first, second = redis_buses
    remote = second.subscribe("batch")
    local = first.subscribe("batch")
    for n in range(500):
        first.publish_nowait(ev("batch", n))
    assert [e.data["n"] for e in drain(local)] == list(range(500))  # delivered locally at once
    received = [(await remote.get(timeout=TIMEOUT)).data["n"] for _ in range(500)]
    assert received == list(range(500))
    await wait_for(lambda: first.published_remote >= 500)
