"""`gateway serve` configured with Redis: readiness follows Redis, rate limits are shared by instances."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from support.server import make_workspace, start_gateway


async def wait_status(http: aiohttp.ClientSession, path: str, status: int, timeout: float = 15) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with http.get(path) as resp:
            body: dict[str, Any] = await resp.json()
            if resp.status == status:
                return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{path} stayed {resp.status}: {body}")
        await asyncio.sleep(0.05)


async def test_readiness_reports_redis_and_recovers(tmp_path: Path, redis_server: Any, redis_url: str) -> None:
    server = start_gateway(make_workspace(tmp_path / "ws"), env={"GATEWAY_REDIS_URL": redis_url})
    try:
        async with aiohttp.ClientSession(server.url) as http:
            body = await wait_status(http, "/readyz", 200)
            assert body["bus"]["kind"] == "redis" and body["bus"]["healthy"] is True
            redis_server.stop()
            body = await wait_status(http, "/readyz", 503)
            assert body["status"] == "degraded"
            async with http.post("/v1/capabilities/list_files", json={}) as resp:
                assert resp.status == 200  # still serving its own clients
            redis_server.start()
            await wait_status(http, "/readyz", 200)
    finally:
        assert server.stop() == 0


async def test_rate_limit_is_shared_across_instances(tmp_path: Path, redis_url: str) -> None:
    env = {
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_RATE_LIMIT__ENABLED": "true",
        "GATEWAY_RATE_LIMIT__RATE_PER_SECOND": "0.1",
        "GATEWAY_RATE_LIMIT__BURST": "4",
    }
    ws = make_workspace(tmp_path / "ws")
    first, second = start_gateway(ws, env=env), start_gateway(ws, env=env)
    try:
        statuses = []
        async with aiohttp.ClientSession() as http:
            for i in range(6):
                url = (first if i % 2 == 0 else second).url
                async with http.post(f"{url}/v1/capabilities/list_files", json={}) as resp:
                    statuses.append(resp.status)
        assert statuses[:4] == [200] * 4
        assert statuses[4:] == [429, 429]
    finally:
        assert first.stop() == 0
        assert second.stop() == 0
