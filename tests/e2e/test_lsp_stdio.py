"""`gateway lsp` over stdio, driven by the pytest-lsp client as an editor would."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient, client_capabilities, make_test_lsp_client

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "pyproject"
UNICODE = 'helper_value = 1\nlabel = "😀 中文"; total = len(label) + helper_value\n'


def make_project(root: Path) -> Path:
    shutil.copytree(FIXTURE, root, dirs_exist_ok=True)
    (root / "uni.py").write_text(UNICODE, encoding="utf-8")
    return root


async def start_client(root: Path, capabilities: lsp.ClientCapabilities) -> tuple[LanguageClient, lsp.InitializeResult]:
    client = make_test_lsp_client()
    await client.start_io(sys.executable, "-m", "gateway.cli", "lsp", "--workspace", str(root))
    result = await client.initialize_session(
        lsp.InitializeParams(capabilities=capabilities, root_uri=root.as_uri(), workspace_folders=None)
    )
    return client, result


def utf8_caps(base: lsp.ClientCapabilities) -> lsp.ClientCapabilities:
    base.general = lsp.GeneralClientCapabilities(position_encodings=[lsp.PositionEncodingKind.Utf8])
    return base


@pytest.fixture
async def vscode(tmp_path: Path) -> AsyncIterator[tuple[LanguageClient, Path, lsp.InitializeResult]]:
    root = make_project(tmp_path / "proj")
    client, result = await start_client(root, client_capabilities("visual-studio-code"))
    yield client, root, result
    await client.shutdown_session()
    await client.stop()


def open_doc(client: LanguageClient, root: Path, rel: str, version: int = 1) -> str:
    uri = (root / rel).as_uri()
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(
                uri=uri, language_id="python", version=version, text=(root / rel).read_text(encoding="utf-8")
            )
        )
    )
    return uri


def pos_of(
    root: Path, rel: str, needle: str, line_hint: int | None = None, *, encoding: str = "utf-16"
) -> lsp.Position:
    lines = (root / rel).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if (line_hint is None or number == line_hint) and needle in line:
            prefix = line[: line.index(needle)]
            units = len(prefix.encode("utf-16-le")) // 2 if encoding == "utf-16" else len(prefix.encode())
            return lsp.Position(line=number, character=units)
    raise AssertionError(f"{needle!r} not in {rel}")


async def test_capabilities_come_from_the_registry(vscode: tuple[LanguageClient, Path, lsp.InitializeResult]) -> None:
    _, _, result = vscode
    caps = result.capabilities
    assert caps.position_encoding == lsp.PositionEncodingKind.Utf16
    assert caps.completion_provider is not None and caps.completion_provider.resolve_provider
    assert caps.hover_provider and caps.definition_provider and caps.references_provider
    assert caps.document_symbol_provider and caps.workspace_symbol_provider
    assert caps.rename_provider and caps.call_hierarchy_provider
    assert caps.diagnostic_provider is None  # this client cannot pull and refresh, so diagnostics are pushed
    assert caps.execute_command_provider is not None
    commands = set(caps.execute_command_provider.commands)
    assert {"gateway.search", "gateway.read_file", "gateway.find_symbol"} <= commands


async def test_editor_features_over_stdio(vscode: tuple[LanguageClient, Path, lsp.InitializeResult]) -> None:
    client, root, _ = vscode
    uri = open_doc(client, root, "shop/pricing.py")
    main_uri = open_doc(client, root, "main.py")

    hover = await client.text_document_hover_async(
        lsp.HoverParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            position=pos_of(root, "shop/pricing.py", "round_price", 5),
        )
    )
    assert hover is not None and "round_price" in str(hover.contents) and "Round a price" in str(hover.contents)

    definition = await client.text_document_definition_async(
        lsp.DefinitionParams(
            text_document=lsp.TextDocumentIdentifier(uri=main_uri), position=pos_of(root, "main.py", "summarize", 3)
        )
    )
    assert isinstance(definition, list) and definition
    assert any(loc.uri.endswith("shop/report.py") for loc in definition)

    refs = await client.text_document_references_async(
        lsp.ReferenceParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            position=pos_of(root, "shop/pricing.py", "round_price", 5),
            context=lsp.ReferenceContext(include_declaration=True),
        )
    )
    assert refs is not None and len({r.uri for r in refs}) >= 2

    symbols = await client.text_document_document_symbol_async(
        lsp.DocumentSymbolParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
    )
    assert symbols is not None
    assert {"round_price", "with_tax", "TAX_RATE"} <= {s.name for s in symbols}

    found = await client.workspace_symbol_async(lsp.WorkspaceSymbolParams(query="round_pr"))
    assert found and any(s.name == "round_price" for s in found)

    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=main_uri, version=2),
            content_changes=[
                lsp.TextDocumentContentChangePartial(
                    range=lsp.Range(start=lsp.Position(line=16, character=0), end=lsp.Position(line=16, character=0)),
                    text="\nstock = build()\nstock.\n",
                )
            ],
        )
    )
    completion = await client.text_document_completion_async(
        lsp.CompletionParams(
            text_document=lsp.TextDocumentIdentifier(uri=main_uri), position=lsp.Position(line=18, character=6)
        )
    )
    assert completion is not None
    labels = {item.label for item in (completion.items if isinstance(completion, lsp.CompletionList) else completion)}
    assert "add" in labels  # a method of Stock, seen in the unsaved text

    signature = await client.text_document_signature_help_async(
        lsp.SignatureHelpParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            position=pos_of(root, "shop/pricing.py", "value * (1 + rate))", 13),
        )
    )
    assert signature is not None and "round_price" in signature.signatures[0].label


async def test_pull_diagnostics_for_clients_that_pull_and_refresh(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    (root / "broken.py").write_text("import os\n\ndef f(:\n    return undefined_name\n")
    caps = client_capabilities("visual-studio-code")
    assert caps.text_document is not None and caps.workspace is not None
    caps.text_document.diagnostic = lsp.DiagnosticClientCapabilities()
    caps.workspace.diagnostics = lsp.DiagnosticWorkspaceClientCapabilities(refresh_support=True)
    client, result = await start_client(root, caps)
    try:
        assert result.capabilities.diagnostic_provider is not None
        uri = open_doc(client, root, "broken.py")
        report = await client.text_document_diagnostic_async(
            lsp.DocumentDiagnosticParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
        )
        assert isinstance(report, lsp.RelatedFullDocumentDiagnosticReport)
        assert any(d.severity == lsp.DiagnosticSeverity.Error for d in report.items)
        assert uri not in client.diagnostics  # nothing pushed to a pulling client
    finally:
        await client.shutdown_session()
        await client.stop()


async def test_rename_and_prepare_rename(vscode: tuple[LanguageClient, Path, lsp.InitializeResult]) -> None:
    client, root, _ = vscode
    uri = open_doc(client, root, "shop/pricing.py")
    position = pos_of(root, "shop/pricing.py", "round_price", 5)
    prepared = await client.text_document_prepare_rename_async(
        lsp.PrepareRenameParams(text_document=lsp.TextDocumentIdentifier(uri=uri), position=position)
    )
    assert isinstance(prepared, lsp.Range) and prepared.end.character - prepared.start.character == len("round_price")
    edit = await client.text_document_rename_async(
        lsp.RenameParams(text_document=lsp.TextDocumentIdentifier(uri=uri), position=position, new_name="round_amount")
    )
    assert edit is not None and edit.document_changes
    touched = {c.text_document.uri for c in edit.document_changes if isinstance(c, lsp.TextDocumentEdit)}
    assert uri in touched and len(touched) >= 2
    versions = {
        c.text_document.uri: c.text_document.version
        for c in edit.document_changes
        if isinstance(c, lsp.TextDocumentEdit)
    }
    assert versions[uri] == 1  # pinned to the open document's version


async def test_unicode_positions_in_utf16_and_utf8(tmp_path: Path) -> None:
    for name, caps, encoding in (
        ("u16", client_capabilities("visual-studio-code"), "utf-16"),
        ("u8", utf8_caps(client_capabilities("neovim")), "utf-8"),
    ):
        root = make_project(tmp_path / name)
        client, result = await start_client(root, caps)
        try:
            assert result.capabilities.position_encoding == encoding
            uri = open_doc(client, root, "uni.py")
            position = pos_of(root, "uni.py", "helper_value", 1, encoding=encoding)
            hover_at = lsp.Position(line=1, character=position.character + 2)
            edit = await client.text_document_rename_async(
                lsp.RenameParams(text_document=lsp.TextDocumentIdentifier(uri=uri), position=hover_at, new_name="hv")
            )
            assert edit is not None and edit.document_changes
            edits = [e for c in edit.document_changes if isinstance(c, lsp.TextDocumentEdit) for e in c.edits]
            first_line = [e for e in edits if e.range.start.line == 1]
            assert [(e.range.start.character, e.range.end.character) for e in first_line] == [
                (position.character, position.character + len("helper_value"))
            ]
            # complete `helper_v` typed at the end of line 0
            client.text_document_did_change(
                lsp.DidChangeTextDocumentParams(
                    text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
                    content_changes=[
                        lsp.TextDocumentContentChangePartial(
                            range=lsp.Range(
                                start=position,
                                end=lsp.Position(line=1, character=position.character + len("helper_value")),
                            ),
                            text="helper_v",
                        )
                    ],
                )
            )
            end = lsp.Position(line=1, character=position.character + len("helper_v"))
            completion = await client.text_document_completion_async(
                lsp.CompletionParams(text_document=lsp.TextDocumentIdentifier(uri=uri), position=end)
            )
            assert completion is not None
            items = completion.items if isinstance(completion, lsp.CompletionList) else completion
            item = next(i for i in items if i.label == "helper_value")
            assert isinstance(item.text_edit, lsp.TextEdit)
            assert item.text_edit.range.start == position and item.text_edit.range.end == end
        finally:
            await client.shutdown_session()
            await client.stop()


async def test_push_diagnostics_for_clients_without_pull(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    (root / "broken.py").write_text("import os\n\ndef f(:\n    return undefined_name\n")
    caps = client_capabilities("neovim")
    caps.text_document.diagnostic = None  # type: ignore[union-attr]
    client, _ = await start_client(root, caps)
    try:
        uri = open_doc(client, root, "broken.py")
        for _ in range(100):
            if client.diagnostics.get(uri):
                break
            await asyncio.wait_for(client.wait_for_notification(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS), 10)
        assert any(d.severity == lsp.DiagnosticSeverity.Error for d in client.diagnostics[uri])
    finally:
        await client.shutdown_session()
        await client.stop()


async def test_execute_command_with_progress_and_errors(
    vscode: tuple[LanguageClient, Path, lsp.InitializeResult],
) -> None:
    client, _, _ = vscode
    result = await client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command="gateway.search", arguments=[{"query": "round_price"}])
    )
    assert result["total"] >= 3
    assert client.progress_reports, "work done progress was reported"
    reports = next(iter(client.progress_reports.values()))
    assert isinstance(reports[0], lsp.WorkDoneProgressBegin) and isinstance(reports[-1], lsp.WorkDoneProgressEnd)
    with pytest.raises(Exception, match=r"outside|leaves the workspace"):
        await client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="gateway.read_file", arguments=[{"path": "../../etc/passwd"}])
        )
    with pytest.raises(Exception, match="invalid params"):
        await client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="gateway.read_file", arguments=[{"path": 5}])
        )
    # the session is still fine
    again = await client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command="gateway.read_file", arguments=[{"path": "main.py", "end_line": 1}])
    )
    assert again["text"].startswith('"""Build a small stock')


async def test_exit_ends_the_process_cleanly(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    client, _ = await start_client(root, client_capabilities("neovim"))
    await client.shutdown_session()
    assert client._server is not None and client._server.returncode == 0
    await client.stop()


async def test_stdio_is_the_users_own_process_even_with_auth_configured(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj")
    config = tmp_path / "g.toml"
    config.write_text('[[auth.api_keys]]\nname = "ci"\nhash = "sha256:' + "0" * 64 + '"\n')
    client = make_test_lsp_client()
    await client.start_io(sys.executable, "-m", "gateway.cli", "lsp", "--workspace", str(root), "--config", str(config))
    try:
        await client.initialize_session(
            lsp.InitializeParams(capabilities=client_capabilities("neovim"), root_uri=root.as_uri())
        )
        result = await client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="gateway.read_file", arguments=[{"path": "main.py", "end_line": 1}])
        )
        assert result["text"].startswith('"""Build a small stock')
    finally:
        await client.shutdown_session()
        await client.stop()
