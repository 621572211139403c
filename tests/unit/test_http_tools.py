"""HTTP tools: URL templates, headers from the environment, capped bodies, and the SSRF guard.

Real HTTP to aiohttp servers on 127.0.0.1 started here. The SSRF guard refuses loopback by default, so
positive tests set `allow_private`; refusal tests check that the refused target never saw a request.
An autouse guard on `socket.connect` refuses (and records) any connection to anything but 127.0.0.1,
so no traffic can leave this machine even if the code under test were wrong.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web

import gateway.tools.http as http_tools
from gateway import tools
from gateway.config import HttpToolConfig, ToolsConfig
from gateway.errors import Forbidden, InvalidParams
from gateway.errors import Timeout as TimeoutFailure
from gateway.events import InMemoryBus
from gateway.execution import CallContext, Core
from gateway.identity import Role
from gateway.registry import Registry
from gateway.tools.http import http_capability, is_public_address
from gateway.workspace import Workspace


# -- fixtures ----------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every address a socket tried to connect to; anything but 127.0.0.1 is refused outright."""
    attempts: list[Any] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def allowed(address: Any) -> bool:
        attempts.append(address)
        return isinstance(address, tuple) and address[0] == "127.0.0.1"

    def connect(self: socket.socket, address: Any) -> None:
        if not allowed(address):
            raise ConnectionRefusedError(f"test guard: no connections to {address!r}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(address):
            raise ConnectionRefusedError(f"test guard: no connections to {address!r}")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield attempts
    strays = [a for a in attempts if not (isinstance(a, tuple) and a[0] == "127.0.0.1")]
    assert strays == [], f"connections attempted beyond 127.0.0.1: {strays}"


class Upstream:
    """A small API on 127.0.0.1 that records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.release = asyncio.Event()  # ends the slow handler at close

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/echo/{tail:.*}", self.echo)
        app.router.add_get("/text", self.text)
        app.router.add_get("/big", self.big)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/status/{code}", self.status)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def close(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()

    def record(self, request: web.Request, body: str = "") -> None:
        self.requests.append(
            {"method": request.method, "path": request.raw_path, "headers": dict(request.headers), "body": body}
        )

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.record(request, body)
        return web.json_response(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "host": request.headers.get("Host"),
                "authorization": request.headers.get("Authorization"),
                "body": json.loads(body) if body else None,
            },
            headers={"ETag": '"v1"', "X-Internal": "hidden"},
        )

    async def text(self, request: web.Request) -> web.Response:
        self.record(request)
        return web.Response(text="héllo", content_type="text/plain", charset="utf-8")

    async def big(self, request: web.Request) -> web.StreamResponse:
        self.record(request)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            for _ in range(200):  # 12.8 MB unless the client stops reading
                await response.write(b'"' + b"x" * 65_534 + b'"')
        except (ConnectionResetError, ConnectionError):
            pass
        return response

    async def redirect(self, request: web.Request) -> web.Response:
        self.record(request)
        status = int(request.query.get("status", "302"))
        return web.Response(status=status, headers={"Location": request.query["to"]})

    async def slow(self, request: web.Request) -> web.Response:
        self.record(request)
        await asyncio.wait_for(self.release.wait(), 30)
        return web.Response(text="late")

    async def status(self, request: web.Request) -> web.Response:
        self.record(request)
        return web.json_response({"error": "nope"}, status=int(request.match_info["code"]))


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def other() -> AsyncIterator[Upstream]:
    """A second server: the target of redirects that must (or must not) be followed."""
    server = Upstream()
    await server.start()
    yield server
    await server.close()


def http_tool(name: str, url: str, properties: dict[str, Any] | None = None, **extra: Any) -> HttpToolConfig:
    return HttpToolConfig(name=name, url=url, parameters={"type": "object", "properties": properties or {}}, **extra)


def build(tmp_path: Any, *configs: HttpToolConfig) -> Core:
    registry = Registry()
    tools.register(registry, ToolsConfig(http=list(configs)))
    return Core(registry, Workspace(tmp_path), InMemoryBus())


async def run(core: Core, name: str, **params: Any) -> dict[str, Any]:
    result = await core.execute(CallContext(), name, params)
    return result.model_dump()


@pytest.fixture
def public_upstream(monkeypatch: pytest.MonkeyPatch, upstream: Upstream) -> Upstream:
    """Let `upstream` (and only it, by host and port) pass the SSRF guard as if it were a public server.

    Everything else, `other` on another port of 127.0.0.1 included, is judged by the real guard.
    """
    real = http_tools.vet_host

    async def vet(host: str, port: int, allow_private: bool) -> list[http_tools.IPAddress]:
        if (host, port) == ("127.0.0.1", upstream.port):
            return [ipaddress.IPv4Address("127.0.0.1")]
        return await real(host, port, allow_private)

    monkeypatch.setattr(http_tools, "vet_host", vet)
    return upstream


# -- requests ---------------------------------------------------------------------------------------------
async def test_url_placeholders_are_encoded_and_json_is_parsed(tmp_path: Any, upstream: Upstream) -> None:
    core = build(
        tmp_path,
        http_tool(
            "lookup",
            upstream.base + "/echo/{item}?q={q}",
            {"item": {"type": "string"}, "q": {"type": "string"}},
            allow_private=True,
        ),
    )
    result = await run(core, "lookup", item="a/b?c#d e", q="x&y=z")
    assert result["status"] == 200
    assert result["body"]["raw_path"] == "/echo/a%2Fb%3Fc%23d%20e?q=x%26y%3Dz"
    assert result["body"]["host"] == f"127.0.0.1:{upstream.port}"
    assert result["headers"]["etag"] == '"v1"' and "x-internal" not in result["headers"]
    assert result["truncated"] is False


async def test_json_body_and_headers_from_the_environment(tmp_path: Any, upstream: Upstream) -> None:
    config = http_tool(
        "create",
        upstream.base + "/echo/items",
        {"title": {"type": "string"}, "tags": {"type": "array"}},
        method="POST",
        body="json",
        headers={"Authorization": "Bearer ${GW_TEST_TOKEN}"},
        allow_private=True,
        read_only=False,
    )
    registry = Registry()
    registry.add(http_capability(config, environ={"GW_TEST_TOKEN": "t0ken"}))
    core = Core(registry, Workspace(tmp_path), InMemoryBus())
    result = await run(core, "create", title="x", tags=[1, "two"])
    assert result["body"]["method"] == "POST"
    assert result["body"]["body"] == {"title": "x", "tags": [1, "two"]}
    assert result["body"]["authorization"] == "Bearer t0ken"
    cap = registry.get("create")
    assert cap.required_role is Role.MEMBER and cap.destructive and not cap.idempotent


def test_a_header_naming_an_unset_variable_stops_the_start() -> None:
    config = http_tool("x", "https://api.example/", headers={"Authorization": "Bearer ${GW_TEST_UNSET_VARIABLE}"})
    with pytest.raises(ValueError, match="GW_TEST_UNSET_VARIABLE"):
        http_capability(config, environ={})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("https://{host}/x", "host must be literal"),
        ("https://api.example:{port}/x", "host must be literal"),
        ("https://api.example/{nope}", "names no parameter"),
    ],
)
def test_unusable_url_templates_stop_the_start(url: str, message: str) -> None:
    config = http_tool("x", url, {"host": {"type": "string"}, "port": {"type": "integer"}})
    with pytest.raises(ValueError, match=message):
        http_capability(config, environ={})


async def test_text_bodies_and_error_statuses_are_results(tmp_path: Any, upstream: Upstream) -> None:
    core = build(
        tmp_path,
        http_tool("text", upstream.base + "/text", allow_private=True),
        http_tool("missing", upstream.base + "/status/404", allow_private=True),
    )
    assert (await run(core, "text"))["body"] == "héllo"
    result = await run(core, "missing")
    assert result["status"] == 404 and result["body"] == {"error": "nope"}


async def test_the_body_is_capped_while_streaming(tmp_path: Any, upstream: Upstream) -> None:
    core = build(tmp_path, http_tool("big", upstream.base + "/big", allow_private=True, response_max_bytes=1000))
    result = await run(core, "big")
    assert result["truncated"] is True
    assert isinstance(result["body"], str) and len(result["body"]) == 1000


async def test_a_slow_api_times_out(tmp_path: Any, upstream: Upstream) -> None:
    core = build(tmp_path, http_tool("slow", upstream.base + "/slow", allow_private=True, timeout_seconds=0.5))
    with pytest.raises(TimeoutFailure):
        await run(core, "slow")


async def test_schema_violations_are_invalid_params(tmp_path: Any, upstream: Upstream) -> None:
    core = build(
        tmp_path,
        http_tool("lookup", upstream.base + "/echo/{id}", {"id": {"type": "integer"}}, allow_private=True),
    )
    with pytest.raises(InvalidParams):
        await run(core, "lookup", id="../admin")
    with pytest.raises(InvalidParams, match="needed to build the URL"):
        await run(core, "lookup")
    assert upstream.requests == []


# -- the SSRF guard ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("1.1.1.1", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("127.255.0.7", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.251", False),
        ("255.255.255.255", False),
        ("240.0.0.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("2002:7f00:1::", False),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 wrapping 169.254.169.254
    ],
)
def test_only_public_addresses_pass(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/echo/x",
        "http://localhost:{port}/echo/x",
        "http://[::ffff:127.0.0.1]:{port}/echo/x",
        "http://10.0.0.1/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/echo/x",
        "http://0.0.0.0:{port}/echo/x",
    ],
)
async def test_internal_targets_are_refused_before_connecting(
    tmp_path: Any, upstream: Upstream, connections: list[Any], url: str
) -> None:
    core = build(tmp_path, http_tool("fetch", url.replace("{port}", str(upstream.port))))
    with pytest.raises(Forbidden, match="not a public address"):
        await run(core, "fetch")
    assert upstream.requests == []
    assert connections == []


async def test_a_redirect_to_an_internal_target_is_refused(
    tmp_path: Any, public_upstream: Upstream, other: Upstream, connections: list[Any]
) -> None:
    targets = [
        f"http://127.0.0.1:{other.port}/echo/x",
        f"http://localhost:{other.port}/echo/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
    ]
    core = build(tmp_path, http_tool("go", public_upstream.base + "/redirect?to={to}", {"to": {"type": "string"}}))
    for target in targets:
        with pytest.raises(Forbidden, match="not a public address"):
            await run(core, "go", to=target)
    assert len(public_upstream.requests) == len(targets)  # the first hop went through every time
    assert other.requests == []
    assert all(address[0] == "127.0.0.1" and address[1] == public_upstream.port for address in connections)


async def test_a_redirect_to_another_scheme_is_refused(tmp_path: Any, public_upstream: Upstream) -> None:
    core = build(tmp_path, http_tool("go", public_upstream.base + "/redirect?to={to}", {"to": {"type": "string"}}))
    with pytest.raises(Forbidden, match="only http and https"):
        await run(core, "go", to="file:///etc/passwd")


async def test_redirects_are_followed_within_the_limit(tmp_path: Any, upstream: Upstream, other: Upstream) -> None:
    hop = upstream.base + "/redirect?to="
    core = build(
        tmp_path,
        http_tool(
            "go",
            upstream.base + "/redirect?status=307&to={to}",
            {"to": {"type": "string"}},
            allow_private=True,
            headers={"Authorization": "Bearer secret"},
            max_redirects=2,
        ),
    )
    result = await run(core, "go", to=upstream.base + "/echo/same-origin")
    assert result["body"]["raw_path"] == "/echo/same-origin"
    assert result["body"]["authorization"] == "Bearer secret"
    result = await run(core, "go", to=other.base + "/echo/elsewhere")
    assert result["url"] == other.base + "/echo/elsewhere"
    assert result["body"]["authorization"] is None  # configured headers never go to another origin
    from urllib.parse import quote

    three_hops = hop + quote(hop + quote(upstream.base + "/echo/far", safe=""), safe="")
    with pytest.raises(Exception, match="more than 2 redirects"):
        await run(core, "go", to=three_hops)


async def test_dns_answers_are_pinned_to_the_vetted_addresses(
    tmp_path: Any, upstream: Upstream, monkeypatch: pytest.MonkeyPatch, connections: list[Any]
) -> None:
    """DNS rebinding: the name resolves to an allowed address once, then to the metadata service."""
    loop = asyncio.get_running_loop()
    answers = ["127.0.0.1", "169.254.169.254"]
    lookups: list[str] = []

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        assert host == "rebind.test"
        address = answers[min(len(lookups), 1)]
        lookups.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    real = http_tools.is_public_address
    monkeypatch.setattr(http_tools, "is_public_address", lambda ip: str(ip) == "127.0.0.1" or real(ip))
    core = build(tmp_path, http_tool("rebind", f"http://rebind.test:{upstream.port}/echo/x"))
    result = await run(core, "rebind")
    assert result["status"] == 200
    assert result["body"]["host"] == f"rebind.test:{upstream.port}"  # the Host header keeps the name
    assert lookups == ["127.0.0.1"]  # one lookup, by the guard; the connection used its answer
    assert connections == [("127.0.0.1", upstream.port)]
