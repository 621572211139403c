"""Workspace roles on the collaborative doors: a viewer watches but its edits are refused on the JSON hub,
the y-websocket endpoint and LSP (REST and MCP are covered in test_rest_auth and test_mcp_security); an
unauthenticated hub or Yjs connection is refused before the upgrade."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import aiohttp
import pytest
from support.collab_clients import EditorClient, PyYjsClient
from support.server import ServerProcess, start_gateway

from gateway.auth import hash_api_key

MEMBER = "gw_member_key_0123456789abcdefghijkl"
VIEWER = "gw_viewer_key_0123456789abcdefghijkl"
OWNER = "gw_owner_key_0123456789abcdefghijklm"
TEXT = "shared text\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("roles")
    (root / "doc.txt").write_text(TEXT)
    config = root / "gateway.toml"
    config.write_text(
        f'[[auth.api_keys]]\nname = "member"\nhash = "{hash_api_key(MEMBER)}"\nroles = ["member"]\n\n'
        f'[[auth.api_keys]]\nname = "viewer"\nhash = "{hash_api_key(VIEWER)}"\nroles = ["viewer"]\n\n'
        f'[[auth.api_keys]]\nname = "owner"\nhash = "{hash_api_key(OWNER)}"\nroles = ["owner"]\n'
    )
    proc = start_gateway(root, "--config", str(config))
    yield proc
    proc.stop()


def ws(server: ServerProcess, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


async def receive(sock: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        message = json.loads(await sock.receive_str(timeout=10))
        if message["type"] == kind:
            return message


@pytest.mark.parametrize("path", ["/ws", "/yjs/doc.txt"])
@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_unauthenticated_hub_connections_are_refused(server: ServerProcess, path: str, token: str | None) -> None:
    url = server.url + path + (f"?token={token}" if token else "")
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
        assert refused.value.status == 401


async def test_a_viewer_watches_but_cannot_edit_on_the_hub(server: ServerProcess) -> None:
    change = [{"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}, "text": "X"}]
    async with aiohttp.ClientSession() as http:
        viewer = await http.ws_connect(server.url + f"/ws?token={VIEWER}")
        member = await http.ws_connect(server.url + "/ws", headers={"Authorization": f"Bearer {MEMBER}"})
        for sock in (viewer, member):
            await sock.send_json({"type": "join"})
            await receive(sock, "welcome")
            await sock.send_json({"type": "open", "path": "doc.txt"})
            assert (await receive(sock, "snapshot"))["text"] == TEXT
        await viewer.send_json({"type": "edit", "id": 1, "path": "doc.txt", "changes": change})
        refused = await receive(viewer, "error")
        assert refused["id"] == 1 and refused["error"]["code"] == "forbidden"
        await member.send_json({"type": "edit", "id": 2, "path": "doc.txt", "changes": change})
        assert (await receive(member, "result"))["id"] == 2
        seen = await receive(viewer, "changed")  # the viewer watches the member's edit
        assert seen["changes"][0]["text"] == "X"
        # undo, so the other tests start from TEXT
        undo = [{"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 1}}, "text": ""}]
        await member.send_json({"type": "edit", "id": 3, "path": "doc.txt", "changes": undo})
        assert (await receive(member, "result"))["id"] == 3
        await viewer.close()
        await member.close()


async def test_a_viewers_yjs_update_is_refused_with_permission_denied(server: ServerProcess) -> None:
    member, viewer = PyYjsClient(), PyYjsClient()
    await member.connect(ws(server, "/yjs/doc.txt"), {"Authorization": f"Bearer {MEMBER}"})
    await viewer.connect(ws(server, f"/yjs/doc.txt?token={VIEWER}"))
    assert viewer.text == member.text == TEXT
    viewer.insert(0, "viewer was here ")
    await viewer.signal.wait_for(lambda: bool(viewer.denied), 10, "permission denied")
    assert b"member role" in viewer.denied[0]
    member.insert(len(member.text), "member\n")  # the connection still reads
    await viewer.signal.wait_for(lambda: viewer.text.endswith("member\n"), 10, "member's edit reaches the viewer")
    assert "viewer was here" not in member.text
    await member.disconnect()
    await viewer.disconnect()


async def test_a_viewers_lsp_edit_is_refused_and_rolled_back(server: ServerProcess) -> None:
    assert server.lsp_url is not None
    parsed = urlparse(server.lsp_url)
    assert parsed.hostname and parsed.port
    editor = EditorClient("viewer-editor")
    await editor.connect(parsed.hostname, parsed.port, server.workspace, token=VIEWER)
    try:
        uri = (server.workspace / "doc.txt").as_uri()
        shared = PyYjsClient()
        await shared.connect(ws(server, "/yjs/doc.txt"), {"Authorization": f"Bearer {MEMBER}"})
        editor.open(uri, shared.text)
        before = shared.text
        editor.edit(uri, 0, 0, "nope ")
        await editor.signal.wait_for(lambda: any("member role" in m for m in editor.messages), 10, "log message")
        await editor.signal.wait_for(lambda: editor.texts[uri] == before, 10, "editor rolled back")
        assert shared.text == before
        await shared.disconnect()
    finally:
        await editor.close()


async def call(server: ServerProcess, key: str, name: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http,
        http.post(f"{server.url}/v1/capabilities/{name}", json=params) as resp,
    ):
        body: dict[str, Any] = await resp.json(content_type=None)
        return resp.status, body


async def test_owners_manage_members_and_admins_manage_tools(server: ServerProcess) -> None:
    change = {"path": "doc.txt", "changes": [{"text": TEXT}]}
    assert (await call(server, VIEWER, "change_document", change))[0] == 403
    status, body = await call(server, MEMBER, "set_member_role", {"subject": "key:viewer", "role": "member"})
    assert status == 403 and body["code"] == "forbidden"
    status, body = await call(server, OWNER, "set_member_role", {"subject": "key:viewer", "role": "member"})
    assert status == 200 and {"subject": "key:viewer", "role": "member"} in body["members"]
    assert (await call(server, VIEWER, "open_document", {"path": "doc.txt"}))[0] == 200
    assert (await call(server, VIEWER, "change_document", change))[0] == 200  # promoted: may edit now
    status, body = await call(server, VIEWER, "list_members", {})
    assert status == 200 and body["members"] == [{"subject": "key:viewer", "role": "member"}]
    assert (await call(server, OWNER, "set_member_role", {"subject": "key:viewer", "role": None}))[0] == 200
    assert (await call(server, VIEWER, "change_document", change))[0] == 403

    assert (await call(server, MEMBER, "set_tool_enabled", {"name": "search", "enabled": False}))[0] == 403
    assert (await call(server, OWNER, "set_tool_enabled", {"name": "search", "enabled": False}))[0] == 200
    assert (await call(server, MEMBER, "search", {"query": "shared"}))[0] == 404  # gone from every door
    assert (await call(server, OWNER, "set_tool_enabled", {"name": "search", "enabled": True}))[0] == 200
    assert (await call(server, MEMBER, "search", {"query": "shared"}))[0] == 200
    assert (await call(server, OWNER, "set_tool_enabled", {"name": "set_member_role", "enabled": False}))[0] == 422
    status, body = await call(server, OWNER, "restart_upstream", {"name": "none"})
    assert status == 404  # no upstreams configured: not offered at all
