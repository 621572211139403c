"""Rate limits: a token bucket per key (usually the caller's subject), in memory or shared through Redis.

`acquire` answers 0.0 when the request may go ahead, else how many seconds to wait before the bucket holds
enough tokens (what a door puts in `Retry-After`). A bucket starts full with `burst` tokens and refills at
`rate_per_second`. The Redis limiter keeps each bucket in one hash updated by one Lua script, so every
gateway instance sharing the Redis sees the same buckets; it reads the clock with Redis `TIME` so
instances with skewed clocks agree. When Redis is unreachable it fails open: a rate limiter must never
turn a Redis outage into a gateway outage.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .errors import RateLimited

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.commands.core import AsyncScript

    from .config import GatewayConfig

log = logging.getLogger("gateway.ratelimit")


class RateLimiter(Protocol):
    """What the execution middleware needs of a rate limiter."""

    async def acquire(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens from `key`'s bucket: 0.0 when allowed, else the seconds to wait."""
        ...

    @property
    def healthy(self) -> bool:
        """False while the limiter cannot enforce limits (it then allows everything)."""
        ...

    async def close(self) -> None:
        """Release connections; the limiter is not used afterwards."""
        ...


def _check_params(rate_per_second: float, burst: float) -> None:
    if not (rate_per_second > 0 and math.isfinite(rate_per_second)):
        raise ValueError("rate_per_second must be a positive finite number")
    if not (burst >= 1 and math.isfinite(burst)):
        raise ValueError("burst must be a finite number >= 1")


def _check_cost(cost: float, burst: float) -> None:
    if not (0 <= cost <= burst):
        # A cost above the burst could never be paid; refusing it forever would be a silent bug.
        raise ValueError(f"cost must be between 0 and the burst ({burst}), got {cost}")


async def enforce(limiter: RateLimiter | None, key: str, cost: float = 1.0) -> None:
    """Raise `RateLimited` (with `retry_after`) when `key` is over its limit; no-op without a limiter."""
    if limiter is None:
        return
    wait = await limiter.acquire(key, cost)
    if wait > 0:
        raise RateLimited("rate limit exceeded", retry_after=wait)


class MemoryRateLimiter:
    """Token buckets in this process; right for a single instance.

    At most `max_keys` buckets are tracked. Past that, buckets that have refilled completely are dropped
    first (a missing bucket is a full one, so nothing is lost); if that is not enough, the least recently
    used buckets go, which can only make the limiter more lenient, never stricter.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_params(rate_per_second, burst)
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self.rate = float(rate_per_second)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        # key -> (tokens, monotonic time of that count); ordered least recently used first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def healthy(self) -> bool:
        """Always True: there is nothing that can fail."""
        return True

    def __len__(self) -> int:
        return len(self._buckets)

    async def acquire(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens from `key`'s bucket: 0.0 when allowed, else the seconds to wait."""
        _check_cost(cost, self.burst)
        now = self._clock()
        state = self._buckets.get(key)
        if state is None:
            tokens = self.burst
        else:
            tokens = min(self.burst, state[0] + (now - state[1]) * self.rate)
            self._buckets.move_to_end(key)
        if tokens >= cost:
            self._buckets[key] = (tokens - cost, now)
            if state is None and len(self._buckets) > self.max_keys:
                self._evict(now)
            return 0.0
        if state is not None:
            self._buckets[key] = (tokens, now)
        return (cost - tokens) / self.rate

    def _evict(self, now: float) -> None:
        for key, (tokens, at) in list(self._buckets.items()):
            if tokens + (now - at) * self.rate >= self.burst:
                del self._buckets[key]
        # Leave some headroom so that a flood of new keys does not sweep on every call.
        target = self.max_keys - max(1, self.max_keys // 10)
        while len(self._buckets) > max(target, 1):
            self._buckets.popitem(last=False)

    async def close(self) -> None:
        """Forget every bucket."""
        self._buckets.clear()


# KEYS[1] bucket; ARGV: rate per second, burst, cost. Returns the wait in seconds as a string (a Lua
# number would be truncated to an integer reply). Numbers are stored with %.17g so nothing is rounded.
_TOKEN_BUCKET_LUA = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate)
if tokens < cost then
  return string.format('%.17g', (cost - tokens) / rate)
end
tokens = tokens - cost
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', now))
-- Once the bucket would be full again it is the same as no bucket: let Redis drop it then.
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return '0'
"""


class RedisRateLimiter:
    """Token buckets shared by every instance on one Redis, updated atomically by a Lua script.

    When Redis fails the limiter allows the request, logs one warning, reports `healthy` False and then
    only tries Redis again every `retry_interval` seconds, so an outage adds no latency per request.
    """

    def __init__(
        self,
        url: str,
        rate_per_second: float,
        burst: float,
        prefix: str = "gateway:rl",
        *,
        socket_timeout: float = 0.5,
        retry_interval: float = 1.0,
        max_connections: int = 32,
    ) -> None:
        _check_params(rate_per_second, burst)
        # Imported here so a gateway without Redis never loads the client.
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        self.url = url
        self.rate = float(rate_per_second)
        self.burst = float(burst)
        self.prefix = prefix
        self.retry_interval = retry_interval
        # A bounded pool: a burst of requests waits briefly for a connection instead of opening hundreds.
        # One immediate retry covers a pooled connection that died with a Redis restart; anything more
        # (backoff, retrying timeouts) would hold requests up during an outage.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=socket_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._redis: aioredis.Redis = aioredis.Redis.from_pool(pool)
        self._script: AsyncScript = self._redis.register_script(_TOKEN_BUCKET_LUA)
        self._healthy = True
        self._retry_at = 0.0
        self.last_error: str | None = None
        self.failures = 0

    @property
    def healthy(self) -> bool:
        """False after Redis failed, until a later call gets through again."""
        return self._healthy

    def status(self) -> dict[str, Any]:
        """A readiness summary (never includes the URL, which may hold a password)."""
        return {"kind": "redis", "healthy": self._healthy, "last_error": self.last_error}

    async def acquire(self, key: str, cost: float = 1.0) -> float:
        """Take `cost` tokens from `key`'s shared bucket: 0.0 when allowed (or Redis is down), else the wait."""
        _check_cost(cost, self.burst)
        if not self._healthy and time.monotonic() < self._retry_at:
            return 0.0
        from redis.exceptions import RedisError

        try:
            reply = await self._script(
                keys=[f"{self.prefix}:{key}"], args=[repr(self.rate), repr(self.burst), repr(float(cost))]
            )
            wait = float(reply)
        except (RedisError, OSError, ValueError) as exc:
            self._mark_down(exc)
            return 0.0
        if not self._healthy:
            log.info("redis rate limiter reachable again; limits enforced")
            self._healthy = True
            self.last_error = None
        return max(0.0, wait)

    def _mark_down(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = str(exc) or type(exc).__name__
        self._retry_at = time.monotonic() + self.retry_interval
        if self._healthy:
            self._healthy = False
            log.warning("redis rate limiter unavailable, allowing all requests: %s", self.last_error)

    async def close(self) -> None:
        """Close the Redis connection pool."""
        await self._redis.aclose()


def build_rate_limiter(config: GatewayConfig) -> RateLimiter | None:
    """The limiter the config asks for: None when disabled, Redis-backed when `redis_url` is set."""
    settings = config.rate_limit
    if not settings.enabled:
        return None
    if config.redis_url:
        return RedisRateLimiter(config.redis_url, settings.rate_per_second, settings.burst)
    return MemoryRateLimiter(settings.rate_per_second, settings.burst)
