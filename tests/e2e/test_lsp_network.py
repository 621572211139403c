"""LSP over TCP (many editors at once) and WebSocket against a real `gateway serve`, plus bad input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
import pytest
from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient
from support.server import ServerProcess, start_gateway

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "pyproject"


@pytest.fixture(scope="module")
def lsp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("lspws")
    shutil.copytree(FIXTURE, root, dirs_exist_ok=True)
    server = start_gateway(root)
    yield server
    assert server.stop() == 0


def tcp_address(server: ServerProcess) -> tuple[str, int]:
    assert server.lsp_url is not None
    parsed = urlparse(server.lsp_url)
    assert parsed.hostname is not None and parsed.port is not None
    return parsed.hostname, parsed.port


async def connect(server: ServerProcess) -> LanguageClient:
    client = LanguageClient("test-editor", "1.0")
    host, port = tcp_address(server)
    await client.start_tcp(host, port)
    await client.initialize_async(
        lsp.InitializeParams(capabilities=lsp.ClientCapabilities(), root_uri=server.workspace.as_uri())
    )
    client.initialized(lsp.InitializedParams())
    return client


async def hover_text(client: LanguageClient, server: ServerProcess) -> str:
    uri = (server.workspace / "shop" / "pricing.py").as_uri()
    hover = await asyncio.wait_for(
        client.text_document_hover_async(
            lsp.HoverParams(
                text_document=lsp.TextDocumentIdentifier(uri=uri), position=lsp.Position(line=5, character=6)
            )
        ),
        30,
    )
    assert hover is not None
    return str(hover.contents)


async def test_three_editors_at_once_and_a_crash_touches_no_one_else(lsp_server: ServerProcess) -> None:
    clients = [await connect(lsp_server) for _ in range(3)]
    texts = await asyncio.gather(*(hover_text(c, lsp_server) for c in clients))
    assert all("round_price" in t for t in texts)

    # editor 0 opens a document and edits it without saving; editor 1 sees the unsaved text
    uri = (lsp_server.workspace / "main.py").as_uri()
    text = (lsp_server.workspace / "main.py").read_text()
    clients[0].text_document_did_open(
        lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        )
    )
    clients[0].text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[lsp.TextDocumentContentChangeWholeDocument(text="unsaved = True\n")],
        )
    )
    seen = await clients[0].workspace_execute_command_async(
        lsp.ExecuteCommandParams(command="gateway.read_document", arguments=[{"path": "main.py"}])
    )
    assert seen["text"] == "unsaved = True\n"
    other = await clients[1].workspace_execute_command_async(
        lsp.ExecuteCommandParams(command="gateway.read_file", arguments=[{"path": "main.py"}])
    )
    assert other["text"] == "unsaved = True\n" and other["source"] == "document"

    # editor 2 crashes: its socket just goes away
    writer = clients[2].protocol.writer
    assert isinstance(writer, asyncio.StreamWriter)
    writer.transport.abort()
    assert "round_price" in await hover_text(clients[1], lsp_server)

    # and reconnects
    again = await connect(lsp_server)
    assert "round_price" in await hover_text(again, lsp_server)

    for client in (clients[0], clients[1], again):
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    with contextlib.suppress(Exception):
        await clients[2].stop()
    # the documents editor 0 had open were released when it left
    async with (
        aiohttp.ClientSession(lsp_server.url) as http,
        http.post("/v1/capabilities/read_document", json={"path": "main.py"}) as resp,
    ):
        assert resp.status == 404


class RawLsp:
    """A bare TCP LSP peer for sending malformed frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: ServerProcess) -> RawLsp:
        reader, writer = await asyncio.open_connection(*tcp_address(server))
        return cls(reader, writer)

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        self.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def receive(self) -> dict[str, Any]:
        async with asyncio.timeout(15):
            length = 0
            while True:
                line = await self.reader.readline()
                assert line, "connection closed"
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
                if line == b"\r\n":
                    break
            message: dict[str, Any] = json.loads(await self.reader.readexactly(length))
            return message

    async def response(self, msg_id: Any) -> dict[str, Any]:
        while True:
            message = await self.receive()
            if "method" not in message and message.get("id") == msg_id:
                return message


async def test_bad_frames_get_json_rpc_errors_and_the_session_lives_on(lsp_server: ServerProcess) -> None:
    peer = await RawLsp.open(lsp_server)
    peer.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}, "processId": None}})
    assert "capabilities" in (await peer.response(1))["result"]
    peer.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})

    body = b'{"jsonrpc": "2.0", "id": 2, "method": '
    peer.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    error = (await peer.response(None))["error"]
    assert error["code"] == -32700 and "traceback" not in json.dumps(error).lower()

    peer.send_raw(b"Content-Type: application/json\r\n\r\n")
    assert (await peer.response(None))["error"]["code"] == -32700

    peer.send({"jsonrpc": "2.0", "id": 3, "method": "textDocument/unknownThing", "params": {}})
    assert (await peer.response(3))["error"]["code"] == -32601

    peer.send({"jsonrpc": "2.0", "id": 4, "method": "textDocument/hover", "params": {"position": "nowhere"}})
    error = (await peer.response(4))["error"]
    assert error["code"] == -32602 and "traceback" not in json.dumps(error).lower()

    peer.send({"jsonrpc": "1.0", "id": 5, "method": "shutdown"})
    assert (await peer.response(5))["error"]["code"] == -32600

    uri = (lsp_server.workspace / "nope.py").as_uri()
    peer.send(
        {
            "jsonrpc": "2.0",
            "id": 6,
            "method": "textDocument/hover",
            "params": {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}},
        }
    )
    error = (await peer.response(6))["error"]
    assert error["code"] == -32602 and "nope.py" in error["message"]

    uri = (lsp_server.workspace / "shop" / "pricing.py").as_uri()
    peer.send(
        {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "textDocument/hover",
            "params": {"textDocument": {"uri": uri}, "position": {"line": 5, "character": 6}},
        }
    )
    assert "round_price" in json.dumps((await peer.response(7))["result"])
    peer.writer.close()


async def test_cancel_request_cancels_the_execution(lsp_server: ServerProcess) -> None:
    for i in range(300):
        (lsp_server.workspace / "bulk").mkdir(exist_ok=True)
        (lsp_server.workspace / "bulk" / f"f{i}.txt").write_text("some text to scan\n" * 2000)
    peer = await RawLsp.open(lsp_server)
    capabilities = {"window": {"workDoneProgress": True}}
    peer.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": capabilities}})
    await peer.response(1)
    peer.send(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "workspace/executeCommand",
            "params": {"command": "gateway.search", "arguments": [{"query": r"(scan)+\s+zzz", "regex": True}]},
        }
    )
    # answer the server's progress-token request, then wait until the search reports progress
    while True:
        message = await peer.receive()
        if message.get("method") == "window/workDoneProgress/create":
            peer.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
        if message.get("method") == "$/progress" and message["params"]["value"]["kind"] == "report":
            break
    peer.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 2}})
    assert (await peer.response(2))["error"]["code"] == -32800
    async with aiohttp.ClientSession(lsp_server.url) as http:
        async with asyncio.timeout(10):
            while True:
                async with http.get("/metrics") as resp:
                    metrics_text = await resp.text()
                    if 'capability="search",door="lsp",status="cancelled"} 1.0' in metrics_text:
                        break
                await asyncio.sleep(0.05)  # bounded poll of the metrics endpoint
    shutil.rmtree(lsp_server.workspace / "bulk")
    peer.writer.close()


@pytest.fixture
async def http(lsp_server: ServerProcess) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(lsp_server.url) as session:
        yield session


async def test_lsp_over_websocket(http: aiohttp.ClientSession, lsp_server: ServerProcess) -> None:
    async with http.ws_connect("/lsp") as ws:
        await ws.send_str(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}})
        )
        reply = json.loads((await ws.receive(timeout=15)).data)
        assert reply["id"] == 1 and reply["result"]["capabilities"]["hoverProvider"] is True
        await ws.send_str("{broken")
        assert json.loads((await ws.receive(timeout=15)).data)["error"]["code"] == -32700
        uri = (lsp_server.workspace / "shop" / "pricing.py").as_uri()
        await ws.send_str(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "textDocument/hover",
                    "params": {"textDocument": {"uri": uri}, "position": {"line": 5, "character": 6}},
                }
            )
        )
        while True:
            message = json.loads((await ws.receive(timeout=30)).data)
            if message.get("id") == 2:
                break
        assert "round_price" in json.dumps(message["result"])
