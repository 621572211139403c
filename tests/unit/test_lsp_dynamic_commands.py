"""Capabilities that join the registry after an editor connected become its commands too."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from lsprotocol import types as lsp
from pydantic import BaseModel
from pygls.lsp.client import LanguageClient

from gateway.app import build_gateway
from gateway.config import load_config
from gateway.execution import ExecutionContext
from gateway.registry import Capability
from protocols.lsp import LspDoor


class Echo(BaseModel):
    text: str = ""


async def echo(ctx: ExecutionContext, params: Echo) -> Echo:
    return Echo(text=params.text.upper())


async def test_late_capabilities_become_commands_and_withdrawn_ones_go(tmp_path: Path) -> None:
    config = load_config(
        None, environ={}, overrides={"server": {"workspace": str(tmp_path)}, "analysis": {"watch": False}}
    )
    gw = build_gateway(config)
    await gw.start()
    door = LspDoor(gw)
    port = await door.start_tcp("127.0.0.1", 0)
    client = LanguageClient("t", "1")
    try:
        await client.start_tcp("127.0.0.1", port)
        caps = lsp.ClientCapabilities(
            workspace=lsp.WorkspaceClientCapabilities(
                execute_command=lsp.ExecuteCommandClientCapabilities(dynamic_registration=True)
            )
        )
        registrations: list[lsp.RegistrationParams] = []

        @client.feature(lsp.CLIENT_REGISTER_CAPABILITY)
        def on_register(params: lsp.RegistrationParams) -> None:
            registrations.append(params)

        await client.initialize_async(lsp.InitializeParams(capabilities=caps, root_uri=tmp_path.as_uri()))
        gw.registry.add(Capability(name="late_echo", params_model=Echo, result_model=Echo, handler=echo, summary="x"))
        result = await client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="gateway.late_echo", arguments=[{"text": "hi"}])
        )
        assert result == {"text": "HI"}
        registered = [r.register_options for params in registrations for r in params.registrations]
        assert any("gateway.late_echo" in dict(options or {}).get("commands", []) for options in registered)
        gw.registry.remove("late_echo")
        try:
            await client.workspace_execute_command_async(
                lsp.ExecuteCommandParams(command="gateway.late_echo", arguments=[{"text": "hi"}])
            )
        except Exception as exc:
            assert "late_echo" in str(exc)
        else:
            raise AssertionError("a withdrawn command still ran")
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown_async(None), 5)
            client.exit(None)
        await asyncio.wait_for(client.stop(), 5)
        await door.stop_tcp()
        await gw.close()
