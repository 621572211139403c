"""`gateway serve` driving jedi-language-server: answers on every door, no orphans after exit."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.server import ServerProcess, start_gateway

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "pyproject"
JLS = str(Path(sys.executable).parent / "jedi-language-server")


def children(pid: int) -> set[int]:
    """All descendants of `pid`, read from /proc."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for kid in map(int, kids):
                if kid not in found:
                    found.add(kid)
                    frontier.append(kid)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def wait_gone(pids: set[int], timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while any(alive(p) for p in pids):
            await asyncio.sleep(0.05)  # bounded poll of /proc


def start_with_jls(tmp_path: Path) -> ServerProcess:
    root = tmp_path / "ws"
    shutil.copytree(FIXTURE, root)
    config = tmp_path / "gateway.toml"
    config.write_text(f'[[analysis.servers]]\nname = "jedi-language-server"\ncommand = ["{JLS}"]\n')
    return start_gateway(root, "--config", str(config))


async def hover(http: aiohttp.ClientSession) -> dict[str, Any]:
    params = {"path": "shop/pricing.py", "line": 5, "character": 6}
    async with http.post("/v1/capabilities/hover", json=params) as resp:
        body: dict[str, Any] = await resp.json()
        assert resp.status == 200, body
        return body


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
async def test_managed_server_answers_and_leaves_no_orphans(tmp_path: Path, how: signal.Signals) -> None:
    server = start_with_jls(tmp_path)
    try:
        async with aiohttp.ClientSession(server.url) as http:
            result = await hover(http)
            assert result["engine"] == "jedi-language-server"
            assert "round_price" in result["hover"]["contents"]
        kids = children(server.proc.pid)
        assert kids, "the language server runs as the gateway's child"
    finally:
        code = server.stop(how)
    assert code == (0 if how == signal.SIGINT else -signal.SIGKILL)
    await wait_gone(kids)


async def test_a_killed_server_restarts_and_the_next_request_succeeds(tmp_path: Path) -> None:
    server = start_with_jls(tmp_path)
    try:
        async with aiohttp.ClientSession(server.url) as http:
            text = (server.workspace / "main.py").read_text() + "\nunsaved_name_only_here = 1\n"
            async with http.post("/v1/capabilities/open_document", json={"path": "main.py", "text": text}) as resp:
                assert resp.status == 200
            assert (await hover(http))["engine"] == "jedi-language-server"
            first = children(server.proc.pid)
            for pid in first:
                os.kill(pid, signal.SIGKILL)
            await wait_gone(first)
            async with asyncio.timeout(30):
                while True:
                    result = await hover(http)
                    if result["engine"] == "jedi-language-server":
                        break
                    await asyncio.sleep(0.1)  # bounded wait for the restart; jedi answers meanwhile
            assert children(server.proc.pid) - first
            line = len(text.splitlines()) - 1
            params = {"path": "main.py", "line": line, "character": 3}
            async with http.post("/v1/capabilities/hover", json=params) as resp:
                body = await resp.json()
            assert body["engine"] == "jedi-language-server"  # the reopened document has the unsaved text
            assert "unsaved_name_only_here" in body["hover"]["contents"]
    finally:
        assert server.stop() == 0
