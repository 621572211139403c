"""Shared workspaces against a real `gateway serve`: an LSP editor, a node Yjs client and a pycrdt client
edit one document at once and end byte-identical; persistence, save, roles and backpressure."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp
import pytest
import websockets
from support.collab_clients import EditorClient, NodeYjsClient, PyYjsClient, Signal, ensure_node_modules
from support.server import ServerProcess, start_gateway

TEXT = "hello world\nsecond line 😀 中文\n"


@pytest.fixture(scope="module", autouse=True)
def node_modules() -> None:
    ensure_node_modules()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    (tmp_path / "doc.txt").write_text(TEXT)
    (tmp_path / "main.py").write_text("import os\n\nvalue = 1\n")
    proc = start_gateway(tmp_path)
    yield proc
    proc.stop()


def ws_url(server: ServerProcess, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def lsp_address(server: ServerProcess) -> tuple[str, int]:
    assert server.lsp_url is not None
    parsed = urlparse(server.lsp_url)
    assert parsed.hostname and parsed.port
    return parsed.hostname, parsed.port


async def read_document(server: ServerProcess, path: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/v1/capabilities/read_document", json={"path": path}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        text: str = (await resp.json())["text"]
        return text


@pytest.fixture
async def editor(server: ServerProcess) -> AsyncIterator[EditorClient]:
    client = EditorClient()
    host, port = lsp_address(server)
    await client.connect(host, port, server.workspace)
    yield client
    await client.close()


async def test_an_lsp_editor_a_node_yjs_client_and_a_pycrdt_client_converge(
    server: ServerProcess, editor: EditorClient
) -> None:
    uri = (server.workspace / "doc.txt").as_uri()
    editor.open(uri, TEXT)
    node = NodeYjsClient()
    await node.start(ws_url(server, "/yjs"), "doc.txt")
    py = PyYjsClient()
    await py.connect(ws_url(server, "/yjs/doc.txt"))
    try:
        await node.signal.wait_for(lambda: node.synced and node.text == TEXT, 15, "node synced")
        assert py.text == TEXT

        # Interleaved inserts and deletes at the same positions, sent without waiting for each other.
        rng = random.Random(7)
        for round_ in range(12):
            editor.edit(uri, 0, 0, f"E{round_}")
            node.insert(0, f"N{round_}")
            py.insert(0, f"P{round_}")
            editor.edit(uri, 5, 6, "")
            node.delete(3, 1)
            py.delete(3, 1)
            where = rng.randrange(0, 10)
            editor.edit(uri, where, where, "é")
            node.insert(where, "😀")
            py.insert(where, "中")
            await asyncio.sleep(0)

        def converged() -> bool:
            text = py.text
            return node.text == text and editor.texts[uri] == text

        signal = Signal()  # one signal that any of the three copies fires when it changes
        node.signal = py.signal = editor.signal = signal
        try:
            await signal.wait_for(converged, 30, "all three copies equal")
        except AssertionError:
            raise AssertionError(f"py={py.text!r}\nnode={node.text!r}\nlsp={editor.texts[uri]!r}") from None
        final = py.text
        assert final.encode() == node.text.encode() == editor.texts[uri].encode()
        assert await read_document(server, "doc.txt") == final
        assert "second line" in final
    finally:
        await node.close()
        await py.disconnect()


async def test_edits_from_rest_reach_yjs_and_lsp_and_echoes_are_not_applied_twice(
    server: ServerProcess, editor: EditorClient
) -> None:
    uri = (server.workspace / "doc.txt").as_uri()
    editor.open(uri, TEXT)
    py = PyYjsClient()
    await py.connect(ws_url(server, "/yjs/doc.txt"))
    try:
        change = {"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 5}}, "text": "HELLO"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{server.url}/v1/capabilities/change_document", json={"path": "doc.txt", "changes": [change]}
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()
        expected = "HELLO" + TEXT[5:]
        await py.signal.wait_for(lambda: py.text == expected, 10, "pycrdt sees the REST edit")
        await editor.signal.wait_for(lambda: editor.texts[uri] == expected, 10, "editor sees the REST edit")
        # the editor's echo (its didChange after applying) is not merged a second time
        py.insert(0, ">")
        await editor.signal.wait_for(lambda: editor.texts[uri] == ">" + expected, 10, "editor sees the Yjs edit")
        assert await read_document(server, "doc.txt") == ">" + expected
        assert py.text == ">" + expected
        assert all(len(p.edit.document_changes or []) == 1 for p in editor.applied)
    finally:
        await py.disconnect()


async def test_a_second_editor_opening_stale_text_is_brought_to_the_shared_text(
    server: ServerProcess, editor: EditorClient
) -> None:
    uri = (server.workspace / "doc.txt").as_uri()
    editor.open(uri, TEXT)
    editor.edit(uri, 0, 0, "unsaved ")
    second = EditorClient("second")
    host, port = lsp_address(server)
    await second.connect(host, port, server.workspace)
    try:
        second.open(uri, TEXT)  # what it read from disk
        await second.signal.wait_for(lambda: second.texts.get(uri) == "unsaved " + TEXT, 10, "second in step")
        second.edit(uri, 0, 0, "2:")
        await editor.signal.wait_for(lambda: editor.texts[uri] == "2:unsaved " + TEXT, 10, "first sees second")
    finally:
        await second.close()


async def test_a_reconnecting_client_resumes_from_its_state_vector(server: ServerProcess) -> None:
    a, b = PyYjsClient(), PyYjsClient()
    await a.connect(ws_url(server, "/yjs/doc.txt"))
    await b.connect(ws_url(server, "/yjs/doc.txt"))
    await a.disconnect()
    a.insert(0, "offline ")  # edited while apart
    b.insert(len(b.text), "tail\n")
    await b.signal.wait_for(lambda: b.text.endswith("tail\n"), 10)
    await a.connect(ws_url(server, "/yjs/doc.txt"))
    expected = "offline " + TEXT + "tail\n"
    await a.signal.wait_for(lambda: a.text == expected, 10, "a catches up")
    await b.signal.wait_for(lambda: b.text == expected, 10, "b gets a's offline edit")
    assert await read_document(server, "doc.txt") == expected
    await a.disconnect()
    await b.disconnect()


async def test_unsaved_shared_state_survives_a_restart_and_save_writes_it(tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_text(TEXT)
    first = start_gateway(tmp_path)
    try:
        py = PyYjsClient()
        await py.connect(ws_url(first, "/yjs/doc.txt"))
        py.insert(0, "kept ")
        await py.signal.wait_for(lambda: py.text == "kept " + TEXT, 5)

        async def stored() -> bool:
            return await read_document(first, "doc.txt") == "kept " + TEXT

        for _ in range(100):
            if await stored():
                break
            await asyncio.sleep(0.02)
        await py.disconnect()
    finally:
        assert first.stop() == 0
    assert (tmp_path / "doc.txt").read_text() == TEXT  # nothing written to disk without a save
    second = start_gateway(tmp_path)
    try:
        assert await read_document(second, "doc.txt") == "kept " + TEXT
        py = PyYjsClient()
        await py.connect(ws_url(second, "/yjs/doc.txt"))
        assert py.text == "kept " + TEXT  # the same history: no text twice
        await py.disconnect()
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{second.url}/v1/capabilities/save_document", json={"path": "doc.txt"}) as resp,
        ):
            assert resp.status == 200, await resp.text()
        assert (tmp_path / "doc.txt").read_text() == "kept " + TEXT
    finally:
        second.stop()


async def test_json_hub_join_open_edit_presence_and_calls(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        a = await http.ws_connect(f"{server.url}/ws")
        b = await http.ws_connect(f"{server.url}/ws")

        inbox: dict[int, list[dict[str, Any]]] = {id(a): [], id(b): []}

        async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str, **match: Any) -> dict[str, Any]:
            """The first message of `kind` matching `match`, received now or kept from before."""

            def fits(message: dict[str, Any]) -> bool:
                return message["type"] == kind and all(message.get(k) == v for k, v in match.items())

            kept = inbox[id(ws)]
            for message in kept:
                if fits(message):
                    kept.remove(message)
                    return message
            while True:
                message = json.loads(await asyncio.wait_for(ws.receive_str(), 10))
                if fits(message):
                    return message
                kept.append(message)

        await a.send_json({"type": "open", "path": "doc.txt"})
        err = await next_of(a, "error")
        assert err["error"]["code"] == "invalid_params"  # join first
        for ws in (a, b):
            await ws.send_json({"type": "join", "watch": ["documents", "presence", "executions", "diagnostics"]})
            welcome = await next_of(ws, "welcome")
            assert welcome["you"]["role"] == "owner"
            await ws.send_json({"type": "open", "path": "main.py"})
            snap = await next_of(ws, "snapshot", path="main.py")
            assert snap["text"] == "import os\n\nvalue = 1\n"
        await a.send_json(
            {
                "type": "edit",
                "id": 1,
                "path": "main.py",
                "changes": [
                    {
                        "range": {"start": {"line": 2, "character": 8}, "end": {"line": 2, "character": 9}},
                        "text": "undefined_name",
                    }
                ],
            }
        )
        result = await next_of(a, "result", id=1)
        assert result["result"]["path"] == "main.py"
        changed = await next_of(b, "changed", path="main.py")
        assert changed["changes"][0]["text"] == "undefined_name"
        diagnostics = await next_of(b, "diagnostics", path="main.py")
        assert any("undefined_name" in d["message"] for d in diagnostics["items"])
        event = await next_of(b, "event", topic="executions")
        assert event["data"]["subject"] == "local"

        await a.send_json({"type": "presence", "path": "main.py", "cursor": {"line": 2, "character": 3}})
        presence = await next_of(b, "presence", event="presence.updated")
        assert presence["data"]["cursor"] == {"line": 2, "character": 3} and presence["data"]["path"] == "main.py"

        await b.send_json({"type": "call", "id": "h", "capability": "read_document", "params": {"path": "main.py"}})
        read = await next_of(b, "result", id="h")
        assert "undefined_name" in read["result"]["text"]
        await b.send_json({"type": "call", "id": "x", "capability": "no_such_thing", "params": {}})
        assert (await next_of(b, "error", id="x"))["error"]["code"] == "not_found"

        # bad input: errors, and the connection keeps working
        await b.send_str("{not json")
        assert (await next_of(b, "error"))["error"]["code"] == "parse_error"
        await b.send_json({"type": "teleport"})
        assert (await next_of(b, "error"))["error"]["code"] == "invalid_params"
        await b.send_bytes(b"\x00\x01")
        assert (await next_of(b, "error"))["error"]["code"] == "invalid_request"
        await b.send_json({"type": "ping", "id": 9})
        assert (await next_of(b, "pong"))["id"] == 9
        await a.close()
        await b.close()


async def test_oversized_hub_frames_close_with_1009_and_others_carry_on(tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_text(TEXT)
    config = tmp_path / "gateway.toml"
    config.write_text("[hub]\nmax_message_bytes = 2048\n")
    proc = start_gateway(tmp_path, "--config", str(config))
    try:
        async with aiohttp.ClientSession() as http:
            big = await http.ws_connect(f"{proc.url}/ws")
            other = await http.ws_connect(f"{proc.url}/ws")
            await big.send_str(json.dumps({"type": "ping", "pad": "x" * 5000}))
            msg = await asyncio.wait_for(big.receive(), 10)
            assert msg.type == aiohttp.WSMsgType.CLOSE and big.close_code == 1009
            await other.send_json({"type": "ping", "id": 1})
            assert json.loads(await asyncio.wait_for(other.receive_str(), 10))["type"] == "pong"
            await other.close()
    finally:
        proc.stop()


async def test_a_slow_yjs_consumer_does_not_delay_the_others(tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_text("x\n")
    config = tmp_path / "gateway.toml"
    config.write_text("[hub]\nsend_buffer_bytes = 65536\nlag_seconds = 1.0\n")
    proc = start_gateway(tmp_path, "--config", str(config))
    url = ws_url(proc, "/yjs/doc.txt")
    loop = asyncio.get_running_loop()
    try:
        writer = PyYjsClient()
        await writer.connect(url)
        fast = [PyYjsClient() for _ in range(3)]
        for client in fast:
            await client.connect(url)

        async def round_trips(count: int, tag: str) -> list[float]:
            """The writer replaces an 8 KB block `count` times; how long each takes to reach a fast reader."""
            out = []
            for i in range(count):
                marker = f"{tag}{i:05d}"
                sent = loop.time()
                with writer.doc.transaction():
                    writer.delete(0, len(writer.text) - 2)
                    writer.insert(0, marker + "z" * 8192)
                await fast[0].signal.wait_for(lambda m=marker: fast[0].text.startswith(m), 10, f"update {marker}")
                out.append((loop.time() - sent) * 1000)
            return sorted(out)

        baseline = await round_trips(100, "a")
        # The slow one: a tiny receive buffer, and it never reads after joining.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        host, port = urlparse(proc.url).hostname, urlparse(proc.url).port
        sock.connect((host, port))
        slow = await websockets.connect(url, sock=sock, max_queue=1, max_size=None)
        await asyncio.wait_for(slow.recv(), 5)
        stalled = await round_trips(600, "b")

        def p(values: list[float], q: float) -> float:
            return values[min(len(values) - 1, int(q * len(values)))]

        print(
            f"fast reader latency, alone: p50 {p(baseline, 0.5):.1f} ms p99 {p(baseline, 0.99):.1f} ms; "
            f"beside a stalled reader: p50 {p(stalled, 0.5):.1f} ms p99 {p(stalled, 0.99):.1f} ms"
        )
        assert p(stalled, 0.5) < 5 * p(baseline, 0.5) + 20  # not waiting on the stalled one
        final = writer.text
        for client in fast:
            await client.signal.wait_for(lambda c=client: c.text == final, 20, "fast client complete")
        # the stalled reader was cut off once it had been behind for lag_seconds
        deadline = loop.time() + 15
        while not any("fell behind" in line for line in proc.lines):
            assert loop.time() < deadline, "the stalled consumer was never dropped"
            await asyncio.sleep(0.05)
        for client in (writer, *fast):
            await client.disconnect()
    finally:
        proc.stop()
