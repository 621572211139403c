"""Auth matrix and rate limits over REST against a real `gateway serve` subprocess."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import jwt
import pytest
from support.server import ServerProcess, make_workspace, start_gateway

from gateway.auth import hash_api_key

SECRET = "test-secret-0123456789-0123456789-abcdef"
MEMBER_KEY = "gw_member_key_for_tests"
VIEWER_KEY = "gw_viewer_key_for_tests"


def token(**overrides: object) -> str:
    now = int(time.time())
    claims = {"sub": "alice", "iss": "https://issuer.test", "aud": "gateway", "iat": now, "exp": now + 300}
    claims.update(overrides)
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("authws")
    workspace = make_workspace(root / "ws")
    config = root / "gateway.toml"
    config.write_text(
        f"""
[[auth.api_keys]]
name = "ci"
hash = "{hash_api_key(MEMBER_KEY)}"
roles = ["member"]

[[auth.api_keys]]
name = "watcher"
hash = "{hash_api_key(VIEWER_KEY)}"
roles = ["viewer"]

[auth.jwt]
algorithms = ["HS256"]
secret_env = "TEST_JWT_SECRET"
issuer = "https://issuer.test"
audience = "gateway"

[rate_limit]
enabled = true
rate_per_second = 0.5
burst = 5
"""
    )
    server = start_gateway(workspace, "--config", str(config), env={"TEST_JWT_SECRET": SECRET})
    yield server
    assert server.stop() == 0


@pytest.fixture
async def http(auth_server: ServerProcess) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auth_server.url) as session:
        yield session


CASES = [
    ("none", None, 401, "unauthorized"),
    ("not bearer", "Basic dXNlcjpwYXNz", 401, "unauthorized"),
    ("bad key", "Bearer gw_wrong", 401, "unauthorized"),
    ("expired jwt", f"Bearer {token(exp=int(time.time()) - 60, iat=int(time.time()) - 120)}", 401, "unauthorized"),
    ("wrong audience", f"Bearer {token(aud='someone-else')}", 401, "unauthorized"),
    ("wrong issuer", f"Bearer {token(iss='https://evil.test')}", 401, "unauthorized"),
    (
        "bad signature",
        "Bearer " + jwt.encode({"sub": "x", "aud": "gateway"}, "other-secret-0123456789-0123456789"),
        401,
        "unauthorized",
    ),
    ("good key", f"Bearer {MEMBER_KEY}", 200, None),
    ("good jwt", f"Bearer {token()}", 200, None),
]


@pytest.mark.parametrize(("case", "header", "status", "code"), CASES, ids=[c[0] for c in CASES])
async def test_auth_matrix(
    http: aiohttp.ClientSession, case: str, header: str | None, status: int, code: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    async with http.post("/v1/capabilities/read_file", json={"path": "notes.md"}, headers=headers) as resp:
        assert resp.status == status, await resp.text()
        if code:
            body = await resp.json(content_type=None)
            assert body["code"] == code
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert SECRET not in str(body)


async def test_public_endpoints_need_no_token(http: aiohttp.ClientSession) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json", "/metrics"):
        async with http.get(path) as resp:
            assert resp.status == 200, path
    async with http.get("/openapi.json") as resp:
        assert "bearer" in (await resp.json())["components"]["securitySchemes"]


async def test_viewer_role_cannot_edit(http: aiohttp.ClientSession) -> None:
    viewer = {"Authorization": f"Bearer {VIEWER_KEY}"}
    async with http.post("/v1/capabilities/open_document", json={"path": "notes.md"}, headers=viewer) as resp:
        assert resp.status == 200
    change = {"path": "notes.md", "changes": [{"text": "defaced"}]}
    async with http.post("/v1/capabilities/change_document", json=change, headers=viewer) as resp:
        assert resp.status == 403 and (await resp.json(content_type=None))["code"] == "forbidden"


async def test_executions_are_private_to_their_caller(http: aiohttp.ClientSession) -> None:
    member = {"Authorization": f"Bearer {MEMBER_KEY}"}
    viewer = {"Authorization": f"Bearer {VIEWER_KEY}"}
    async with http.post("/v1/capabilities/list_files", json={}, headers=member) as resp:
        execution_id = resp.headers["X-Execution-Id"]
    async with http.get(f"/v1/executions/{execution_id}", headers=member) as resp:
        assert resp.status == 200
    async with http.get(f"/v1/executions/{execution_id}", headers=viewer) as resp:
        assert resp.status == 404


async def test_rate_limit_per_identity_with_retry_after(http: aiohttp.ClientSession) -> None:
    alice = {"Authorization": f"Bearer {token(sub='rate-alice')}"}
    bob = {"Authorization": f"Bearer {token(sub='rate-bob')}"}
    statuses = []
    retry_after = None
    for _ in range(8):
        async with http.post("/v1/capabilities/list_files", json={}, headers=alice) as resp:
            statuses.append(resp.status)
            if resp.status == 429:
                retry_after = resp.headers["Retry-After"]
                assert (await resp.json(content_type=None))["code"] == "rate_limited"
    assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
    assert retry_after is not None and int(retry_after) >= 1
    async with http.post("/v1/capabilities/list_files", json={}, headers=bob) as resp:
        assert resp.status == 200  # another identity has its own bucket


def test_refuses_nothing_on_any_address_with_auth(tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text(f'[[auth.api_keys]]\nname = "a"\nhash = "{hash_api_key("k")}"\n')
    server = start_gateway(make_workspace(tmp_path / "ws"), "--host", "0.0.0.0", "--config", str(config))
    try:
        assert server.url.startswith("http://0.0.0.0:")
    finally:
        assert server.stop() == 0


async def lsp_initialize(server: ServerProcess, options: dict[str, object] | None) -> dict[str, object]:
    assert server.lsp_url is not None
    host, port = server.lsp_url.removeprefix("tcp://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    params: dict[str, object] = {"capabilities": {}, "initializationOptions": options}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}).encode()
    writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    async with asyncio.timeout(15):
        length = 0
        while (line := await reader.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length"):
                length = int(line.split(b":")[1])
        reply: dict[str, object] = json.loads(await reader.readexactly(length))
    writer.close()
    return reply


async def test_lsp_over_tcp_needs_a_token_when_auth_is_on(auth_server: ServerProcess) -> None:
    refused = await lsp_initialize(auth_server, None)
    assert refused["error"]["code"] == -32001 and "unauthorized" in refused["error"]["message"]  # type: ignore[index]
    wrong = await lsp_initialize(auth_server, {"token": "gw_nope"})
    assert "error" in wrong
    accepted = await lsp_initialize(auth_server, {"token": MEMBER_KEY})
    assert "capabilities" in accepted["result"]  # type: ignore[operator]


async def test_lsp_websocket_token_in_query(http: aiohttp.ClientSession) -> None:
    async with http.get("/lsp") as resp:
        assert resp.status == 401
    async with http.ws_connect(f"/lsp?token={MEMBER_KEY}") as ws:
        await ws.send_str(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}})
        )
        reply = json.loads((await ws.receive(timeout=15)).data)
        assert "capabilities" in reply["result"]
