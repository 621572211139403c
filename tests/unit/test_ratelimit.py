"""Rate limits: token buckets in memory and in Redis, shared atomically, failing open on an outage."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.config import GatewayConfig
from gateway.errors import RateLimited
from gateway.ratelimit import MemoryRateLimiter, RedisRateLimiter, build_rate_limiter, enforce


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll an async predicate with short awaits until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# --- memory -----------------------------------------------------------------------------------------------


async def test_memory_allows_burst_then_refuses_with_retry_after(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(rate_per_second=2, burst=5, clock=clock)
    assert [await limiter.acquire("alice") for _ in range(5)] == [0.0] * 5
    assert await limiter.acquire("alice") == pytest.approx(0.5)  # one token at 2/s
    assert await limiter.acquire("alice", cost=3) == pytest.approx(1.5)
    assert await limiter.acquire("bob") == 0.0  # buckets are per key


async def test_memory_refills_at_rate_up_to_burst(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(rate_per_second=2, burst=5, clock=clock)
    for _ in range(5):
        await limiter.acquire("alice")
    clock.now += 0.5
    assert await limiter.acquire("alice") == 0.0
    assert await limiter.acquire("alice") == pytest.approx(0.5)
    clock.now += 0.25
    assert await limiter.acquire("alice") == pytest.approx(0.25)  # half a token is there already
    clock.now += 3600  # a long idle time refills to the burst, not beyond
    assert [await limiter.acquire("alice") for _ in range(6)][-2:] == [0.0, pytest.approx(0.5)]


async def test_memory_refusal_does_not_consume_tokens(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(rate_per_second=1, burst=2, clock=clock)
    await limiter.acquire("k", cost=2)
    for _ in range(10):
        assert await limiter.acquire("k") == pytest.approx(1.0)
    clock.now += 1
    assert await limiter.acquire("k") == 0.0


async def test_memory_real_clock_refill() -> None:
    limiter = MemoryRateLimiter(rate_per_second=50, burst=1)
    assert await limiter.acquire("k") == 0.0
    wait = await limiter.acquire("k")
    assert 0 < wait <= 0.02
    await asyncio.sleep(wait + 0.005)  # honouring the Retry-After the limiter gave is enough
    assert await limiter.acquire("k") == 0.0


async def test_memory_bounds_tracked_keys_evicting_full_buckets_first(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(rate_per_second=1, burst=3, max_keys=100, clock=clock)
    await limiter.acquire("hot", cost=3)  # empty bucket: must survive eviction while it matters
    for i in range(99):
        await limiter.acquire(f"idle-{i}")
    clock.now += 1.5  # idle buckets (2 of 3 tokens) are full again; "hot" has 1.5 tokens
    for i in range(50):
        await limiter.acquire(f"new-{i}")
    assert len(limiter) <= 100
    assert await limiter.acquire("hot", cost=2) == pytest.approx(0.5)  # state kept, not reset to full


async def test_memory_never_exceeds_max_keys_under_a_flood(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(rate_per_second=1, burst=3, max_keys=50, clock=clock)
    for i in range(1000):
        await limiter.acquire(f"k{i}")
        assert len(limiter) <= 50


async def test_cost_above_burst_or_negative_is_a_programming_error() -> None:
    limiter = MemoryRateLimiter(rate_per_second=1, burst=3)
    with pytest.raises(ValueError):
        await limiter.acquire("k", cost=4)
    with pytest.raises(ValueError):
        await limiter.acquire("k", cost=-1)
    with pytest.raises(ValueError):
        MemoryRateLimiter(rate_per_second=0, burst=3)


async def test_enforce_raises_rate_limited_with_retry_after(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(rate_per_second=4, burst=1, clock=clock)
    await enforce(limiter, "k")
    with pytest.raises(RateLimited) as info:
        await enforce(limiter, "k")
    assert info.value.retry_after == pytest.approx(0.25)
    assert info.value.data["retry_after"] == pytest.approx(0.25)
    await enforce(None, "k")  # no limiter configured: nothing to enforce


def test_build_rate_limiter_follows_config() -> None:
    assert build_rate_limiter(GatewayConfig()) is None
    memory = build_rate_limiter(GatewayConfig.model_validate({"rate_limit": {"enabled": True, "burst": 7}}))
    assert isinstance(memory, MemoryRateLimiter) and memory.burst == 7
    shared = build_rate_limiter(
        GatewayConfig.model_validate({"rate_limit": {"enabled": True}, "redis_url": "redis://127.0.0.1:1/0"})
    )
    assert isinstance(shared, RedisRateLimiter)


# --- redis ------------------------------------------------------------------------------------------------


@pytest.fixture
async def make_redis_limiter(redis_url: str) -> AsyncIterator[Callable[..., RedisRateLimiter]]:
    made: list[RedisRateLimiter] = []

    def make(**kwargs: Any) -> RedisRateLimiter:
        kwargs.setdefault("rate_per_second", 1)
        kwargs.setdefault("burst", 5)
        limiter = RedisRateLimiter(redis_url, **kwargs)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.close()


async def test_redis_allows_burst_then_refuses_with_retry_after(
    make_redis_limiter: Callable[..., RedisRateLimiter],
) -> None:
    limiter = make_redis_limiter(rate_per_second=0.5, burst=5)
    assert [await limiter.acquire("alice") for _ in range(5)] == [0.0] * 5
    wait = await limiter.acquire("alice")
    assert 1.9 < wait <= 2.0  # one token at 0.5/s, less the few ms the test took
    assert await limiter.acquire("bob") == 0.0
    assert limiter.healthy


async def test_redis_refills_at_rate(make_redis_limiter: Callable[..., RedisRateLimiter]) -> None:
    limiter = make_redis_limiter(rate_per_second=50, burst=2)
    assert await limiter.acquire("k", cost=2) == 0.0
    wait = await limiter.acquire("k")
    assert 0 < wait <= 0.02
    await asyncio.sleep(wait + 0.005)  # honouring the Retry-After the limiter gave is enough
    assert await limiter.acquire("k") == 0.0


async def test_redis_buckets_expire_once_full_again(
    make_redis_limiter: Callable[..., RedisRateLimiter], redis_url: str
) -> None:
    limiter = make_redis_limiter(rate_per_second=1, burst=5, prefix="rl-test")
    await limiter.acquire("k", cost=2)
    client = aioredis.Redis.from_url(redis_url)
    try:
        ttl_ms = await client.pttl("rl-test:k")
        assert 2000 < ttl_ms <= 3000  # two tokens to refill at 1/s, plus a second of margin
        assert await client.hget("rl-test:k", "tokens") == b"3"
    finally:
        await client.aclose()


async def test_redis_limit_is_atomic_across_instances_under_concurrency(
    make_redis_limiter: Callable[..., RedisRateLimiter],
) -> None:
    burst = 20
    # Generous timeouts: this is about atomicity, and a loaded machine must not turn it into fail-open.
    first = make_redis_limiter(rate_per_second=0.001, burst=burst, socket_timeout=10, max_connections=8)
    second = make_redis_limiter(rate_per_second=0.001, burst=burst, socket_timeout=10)
    calls = [limiter.acquire("shared") for _ in range(50) for limiter in (first, second)]
    results = await asyncio.gather(*calls)
    assert sum(1 for wait in results if wait == 0.0) == burst
    assert all(wait > 0 for wait in results if wait != 0.0)
    assert first.healthy and second.healthy  # no allowance came from failing open
    assert await first.acquire("other") == 0.0


async def test_redis_fails_open_when_redis_is_down_and_recovers(
    make_redis_limiter: Callable[..., RedisRateLimiter],
    redis_server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = make_redis_limiter(rate_per_second=0.001, burst=1, retry_interval=0.05)
    assert await limiter.acquire("k") == 0.0
    assert await limiter.acquire("k") > 0
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        started = time.monotonic()
        assert [await limiter.acquire("k") for _ in range(20)] == [0.0] * 20
        assert time.monotonic() - started < 2.0  # an outage costs no per-request retries
    assert not limiter.healthy
    warnings = [r for r in caplog.records if r.name == "gateway.ratelimit" and r.levelno == logging.WARNING]
    assert len(warnings) == 1  # logged once, not per request

    redis_server.start()  # an empty Redis: the script cache and the bucket are gone

    async def enforcing_again() -> bool:
        return await limiter.acquire("k") > 0

    await wait_for(enforcing_again, timeout=5)
    assert limiter.healthy


async def test_redis_hung_server_fails_open_within_the_socket_timeout(
    make_redis_limiter: Callable[..., RedisRateLimiter], redis_server: Any
) -> None:
    limiter = make_redis_limiter(rate_per_second=0.001, burst=1, socket_timeout=0.2, retry_interval=0.05)
    assert await limiter.acquire("k") == 0.0
    redis_server.pause()
    started = time.monotonic()
    assert await limiter.acquire("k") == 0.0
    assert time.monotonic() - started < 1.0  # one timeout, no retries of it
    assert not limiter.healthy
    assert limiter.status()["healthy"] is False

    redis_server.resume()

    async def enforcing_again() -> bool:
        return await limiter.acquire("k") > 0

    await wait_for(enforcing_again, timeout=5)
    assert limiter.healthy
