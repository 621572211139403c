"""Two and three `gateway serve` instances on one real Redis share one workspace: edits and presence cross
over, an instance killed mid-session loses nothing, and a Redis outage heals once Redis is back."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
from pycrdt import create_awareness_message
from support.collab_clients import NodeYjsClient, PyYjsClient, ensure_node_modules
from support.server import ServerProcess, start_gateway
from test_redis_mode import wait_status

from protocols.hub.yjs import encode_awareness

TEXT = "shared across instances\n"


def yjs_url(server: ServerProcess, path: str = "doc.txt") -> str:
    return server.url.replace("http://", "ws://") + "/yjs/" + path


async def hub_messages(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 10) -> dict[str, Any]:
    while True:
        message = json.loads(await ws.receive_str(timeout=timeout))
        if message["type"] == kind:
            return message


async def test_edits_and_presence_cross_instances_and_survive_a_killed_instance(
    tmp_path: Path, redis_server: Any, redis_url: str
) -> None:
    redis_server.flush()
    ensure_node_modules()
    (tmp_path / "doc.txt").write_text(TEXT)
    env = {"GATEWAY_REDIS_URL": redis_url}
    first, second = start_gateway(tmp_path, env=env), start_gateway(tmp_path, env=env)
    third: ServerProcess | None = None
    a, b = PyYjsClient(), PyYjsClient()
    node = NodeYjsClient()
    try:
        await a.connect(yjs_url(first))
        await b.connect(yjs_url(second))
        assert a.text == b.text == TEXT  # both seeded from the same file: no text twice
        a.insert(0, "from A; ")
        await b.signal.wait_for(lambda: b.text == "from A; " + TEXT, 10, "A's edit on instance 2")
        b.insert(len(b.text), "from B\n")
        await a.signal.wait_for(lambda: a.text.endswith("from B\n"), 10, "B's edit on instance 1")

        # presence: Yjs awareness and hub presence both cross
        await node.start(second.url.replace("http://", "ws://") + "/yjs", "doc.txt")
        await node.signal.wait_for(lambda: node.synced, 15, "node synced on instance 2")
        state = json.dumps({"user": {"name": "alice"}, "cursor": 3})
        await a.ws.send(create_awareness_message(encode_awareness([(4242, 1, state)])))
        await node.signal.wait_for(
            lambda: any(
                e.get("event") == "awareness" and {"user": {"name": "alice"}, "cursor": 3} in e["states"]
                for e in node.events
            ),
            10,
            "alice's awareness on instance 2",
        )
        async with aiohttp.ClientSession() as http:
            h1 = await http.ws_connect(f"{first.url}/ws")
            h2 = await http.ws_connect(f"{second.url}/ws")
            for h in (h1, h2):
                await h.send_json({"type": "join", "watch": ["presence"]})
                await hub_messages(h, "welcome")
            await h1.send_json({"type": "presence", "path": "doc.txt", "cursor": {"line": 0, "character": 4}})
            while True:
                message = await hub_messages(h2, "presence")
                if message["data"].get("cursor") == {"line": 0, "character": 4}:
                    break
            await h1.close()
            await h2.close()

        # kill instance 1 mid-session: the survivors and a newcomer have everything
        a.insert(0, "last words; ")
        await b.signal.wait_for(lambda: b.text.startswith("last words; "), 10, "A's last edit")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        expected = b.text
        third = start_gateway(tmp_path, env=env)
        c = PyYjsClient()
        await c.connect(yjs_url(third))
        assert c.text == expected
        b.insert(0, "after; ")
        await c.signal.wait_for(lambda: c.text == "after; " + expected, 10, "instance 2 to 3")
        await node.signal.wait_for(lambda: node.text == "after; " + expected, 10, "node on instance 2")

        # Redis goes away (and comes back empty): each instance serves its own clients, then they heal
        redis_server.stop()
        async with aiohttp.ClientSession(second.url) as http:
            await wait_status(http, "/readyz", 503)
        b.insert(0, "outage-2; ")
        await node.signal.wait_for(lambda: node.text.startswith("outage-2; "), 10, "local clients still served")
        c.insert(len(c.text), "outage-3\n")
        redis_server.start()
        for server in (second, third):
            async with aiohttp.ClientSession(server.url) as http:
                await wait_status(http, "/readyz", 200)
        final = "outage-2; after; " + expected + "outage-3\n"
        await b.signal.wait_for(lambda: b.text == final, 20, "instance 2 healed")
        await c.signal.wait_for(lambda: c.text == final, 20, "instance 3 healed")
        # and Redis holds it again, for the next newcomer
        fourth = start_gateway(tmp_path, env=env)
        try:
            d = PyYjsClient()
            await d.connect(yjs_url(fourth))
            await d.signal.wait_for(lambda: d.text == final, 10, "newcomer after the outage")
            await d.disconnect()
        finally:
            fourth.stop()
        await c.disconnect()
    finally:
        await node.close()
        for client in (a, b):
            await client.disconnect()
        for server in (first, second, third):
            if server is not None:
                server.stop()
