"""Security of `/mcp`: bearer auth (API keys, JWT with RFC 9728 metadata), sessions bound to their caller,
and Host/Origin validation against DNS rebinding."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from support.server import ServerProcess, make_workspace, start_gateway

from gateway.auth import hash_api_key

KEY_A = "gw_test_key_for_alice_0123456789abcdef"
KEY_B = "gw_test_key_for_bob_0123456789abcdefgh"
KEY_VIEWER = "gw_test_key_for_carol_0123456789abcdef"
JWT_SECRET = "a-test-secret-that-is-long-enough-for-hs256!"
ERAS = {"2025-11-25": "legacy", "2026-07-28": "auto"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _serve(tmp: pytest.TempPathFactory, name: str, config: str, env: dict[str, str] | None = None) -> ServerProcess:
    root = make_workspace(tmp.mktemp(name))
    path = tmp.mktemp(f"{name}-config") / "gateway.toml"
    path.write_text(config)
    return start_gateway(root, "--config", str(path), env=env)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = f"""
[[auth.api_keys]]
name = "alice"
hash = "{hash_api_key(KEY_A)}"
roles = ["member"]
[[auth.api_keys]]
name = "bob"
hash = "{hash_api_key(KEY_B)}"
roles = ["member"]
[[auth.api_keys]]
name = "carol"
hash = "{hash_api_key(KEY_VIEWER)}"
roles = ["viewer"]
"""
    server = _serve(tmp_path_factory, "mcp-keyed", config)
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def jwt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = """
[auth.jwt]
algorithms = ["HS256"]
secret_env = "TEST_MCP_JWT_SECRET"
issuer = "https://issuer.example"
audience = "gateway"
authorization_servers = ["https://auth.example"]
"""
    server = _serve(tmp_path_factory, "mcp-jwt", config, env={"TEST_MCP_JWT_SECRET": JWT_SECRET})
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = """
[mcp]
allowed_hosts = ["gateway.test"]
allowed_origins = ["https://editor.example"]
"""
    server = _serve(tmp_path_factory, "mcp-open", config)
    yield server
    assert server.stop() == 0


def transport(server: ServerProcess, http: httpx2.AsyncClient) -> Any:
    """The SDK's streamable HTTP transport to `/mcp`, sending through `http` (which carries the token)."""
    return streamable_http_client(server.url + "/mcp", http_client=http)


def bearer_client(token: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)


async def post(
    url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json=body, headers={**MCP_HEADERS, **(headers or {})}) as r,
    ):
        return r.status, dict(r.headers), await r.text()


# -- API keys ---------------------------------------------------------------------------------------------------
async def test_no_token_is_401_with_a_bearer_challenge(keyed: ServerProcess) -> None:
    status, headers, body = await post(keyed.url + "/mcp", INITIALIZE)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer realm="gateway"'
    assert '"code": "unauthorized"' in body
    status, _, _ = await post(keyed.url + "/mcp", INITIALIZE, {"Authorization": "Bearer wrong"})
    assert status == 401


@pytest.mark.parametrize("era", list(ERAS))
async def test_a_good_api_key_works_and_calls_run_as_its_identity(keyed: ServerProcess, era: str) -> None:
    async with bearer_client(KEY_A) as http, Client(transport(keyed, http), mode=ERAS[era]) as client:
        assert client.protocol_version == era
        result = await client.call_tool("read_file", {"path": "src/util.py"})
        assert result.structured_content is not None and result.structured_content["text"] == "HELLO = 1\n"
    async with aiohttp.ClientSession() as http, http.get(f"{keyed.url}/metrics") as resp:
        assert 'capability="read_file",door="mcp",status="finished"' in await resp.text()


@pytest.mark.parametrize("era", list(ERAS))
async def test_calls_run_with_the_role_of_the_key(keyed: ServerProcess, era: str) -> None:
    async with bearer_client(KEY_VIEWER) as http, Client(transport(keyed, http), mode=ERAS[era]) as client:
        read = await client.call_tool("read_file", {"path": "src/util.py"})
        assert read.is_error is False
        opened = await client.call_tool("open_document", {"path": "src/util.py"})
        assert opened.is_error is False
        change = {"path": "src/util.py", "changes": [{"text": "HELLO = 2\n"}]}
        refused = await client.call_tool("change_document", change)
        assert refused.is_error is True
        assert refused.content[0].text.startswith("forbidden: change_document needs the member role")  # type: ignore[union-attr]
        await client.call_tool("close_document", {"path": "src/util.py"})


async def test_a_session_is_bound_to_the_key_that_opened_it(keyed: ServerProcess) -> None:
    status, headers, _ = await post(keyed.url + "/mcp", INITIALIZE, {"Authorization": f"Bearer {KEY_A}"})
    assert status == 200
    session = {"Mcp-Session-Id": headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    status, _, _ = await post(keyed.url + "/mcp", listing, {"Authorization": f"Bearer {KEY_B}", **session})
    assert status == 404
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    status, _, _ = await post(keyed.url + "/mcp", initialized, {"Authorization": f"Bearer {KEY_A}", **session})
    assert status == 202
    status, _, body = await post(keyed.url + "/mcp", listing, {"Authorization": f"Bearer {KEY_A}", **session})
    assert status == 200 and "read_file" in body


# -- JWT and RFC 9728 ------------------------------------------------------------------------------------------
async def test_jwt_auth_serves_protected_resource_metadata(jwt_server: ServerProcess) -> None:
    resource = jwt_server.url + "/mcp"
    metadata_url = jwt_server.url + "/.well-known/oauth-protected-resource/mcp"
    status, headers, _ = await post(resource, INITIALIZE)
    assert status == 401
    assert headers["WWW-Authenticate"] == f'Bearer realm="gateway", resource_metadata="{metadata_url}"'
    async with aiohttp.ClientSession() as http:
        for url in (metadata_url, jwt_server.url + "/.well-known/oauth-protected-resource"):
            async with http.get(url) as resp:
                assert resp.status == 200
                document = await resp.json()
            assert document["resource"] == resource
            assert document["authorization_servers"] == ["https://auth.example"]
            assert document["bearer_methods_supported"] == ["header"]


async def test_a_valid_jwt_opens_an_mcp_session(jwt_server: ServerProcess) -> None:
    claims = {"sub": "ada", "iss": "https://issuer.example", "aud": "gateway", "exp": int(time.time()) + 300}
    token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    async with bearer_client(token) as http, Client(transport(jwt_server, http), mode="legacy") as client:
        assert "read_file" in {t.name for t in (await client.list_tools()).tools}


async def test_without_jwt_auth_there_is_no_metadata(open_server: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(open_server.url + "/.well-known/oauth-protected-resource") as r,
    ):
        assert r.status == 404


# -- Host and Origin -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 200),
        ({"Host": "localhost:9"}, 200),
        ({"Host": "gateway.test"}, 200),
        ({"Host": "gateway.test:8080", "Origin": "https://editor.example"}, 200),
        ({"Origin": "http://127.0.0.1:3000"}, 200),
        ({"Host": "evil.example.com"}, 421),
        ({"Host": "evil.example.com:80"}, 421),
        ({"Origin": "http://evil.example.com"}, 403),
        ({"Origin": "null"}, 403),
    ],
)
async def test_host_and_origin_are_checked(open_server: ServerProcess, headers: dict[str, str], status: int) -> None:
    got, _, _ = await post(open_server.url + "/mcp", INITIALIZE, headers)
    assert got == status


async def test_modern_requests_are_checked_too(open_server: ServerProcess) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/list",
        "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        },
    }
    modern = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"}
    status, _, text = await post(open_server.url + "/mcp", body, modern)
    assert status == 200 and "read_file" in text
    status, _, _ = await post(open_server.url + "/mcp", body, {**modern, "Origin": "http://evil.example.com"})
    assert status == 403
