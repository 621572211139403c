"""A small pygls language server whose answers expose what it was sent, for the LSP client tests.

Run as `python fake_language_server.py [--full]`. Each feature reports or provokes one thing:
- hover: `v<version>|<text>`: the document exactly as the server holds it after our sync;
- definition: the first occurrence of the word at the position, converted by pygls' own position codec;
- completion: the answers to a `workspace/configuration` request and a `workspace/workspaceFolders` request;
- rename: asks the client to apply two edits (one to the document, one to a file the client has not open)
  and answers with a text edit whose new text says what the client replied;
- signatureHelp: fails with an error; documentSymbol: never answers; implementation: hangs (to be killed);
- workspace/symbol: for the query `hostile`, first sends the client `exit` and `shutdown` (a client must not
  obey them) and answers nothing; otherwise a reply with an unknown symbol kind (the client cannot parse it);
- textDocument/diagnostic: pulled diagnostics naming the version and length of the document.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

SYNC = lsp.TextDocumentSyncKind.Full if "--full" in sys.argv else lsp.TextDocumentSyncKind.Incremental
server = LanguageServer("fake-language-server", "1", text_document_sync_kind=SYNC)
ORIGIN = lsp.Range(start=lsp.Position(line=0, character=0), end=lsp.Position(line=0, character=0))


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
def hover(ls: LanguageServer, params: lsp.HoverParams) -> lsp.Hover:
    doc = ls.workspace.get_text_document(params.text_document.uri)
    return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=f"v{doc.version}|{doc.source}"))


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
def definition(ls: LanguageServer, params: lsp.DefinitionParams) -> list[lsp.Location]:
    doc = ls.workspace.get_text_document(params.text_document.uri)
    codec, lines = doc.position_codec, doc.lines
    here = codec.position_from_client_units(lines, params.position)
    line = lines[here.line]
    words = [m for m in re.finditer(r"\w+", line) if m.start() <= here.character <= m.end()]
    if not words:
        return []
    word = words[0].group(0)
    for number, text in enumerate(lines):
        found = re.search(rf"\b{word}\b", text)
        if found:
            start = codec.position_to_client_units(lines, lsp.Position(line=number, character=found.start()))
            end = codec.position_to_client_units(lines, lsp.Position(line=number, character=found.end()))
            return [lsp.Location(uri=doc.uri, range=lsp.Range(start=start, end=end))]
    return []


@server.feature(lsp.TEXT_DOCUMENT_COMPLETION)
async def completion(ls: LanguageServer, params: lsp.CompletionParams) -> list[lsp.CompletionItem]:
    items = [
        lsp.ConfigurationItem(section="fake.alpha"),
        lsp.ConfigurationItem(section="fake"),
        lsp.ConfigurationItem(section="missing.key"),
        lsp.ConfigurationItem(),
    ]
    answers = await ls.workspace_configuration_async(lsp.ConfigurationParams(items=items))
    folders = await ls.workspace_workspace_folders_async(None)
    labels = [json.dumps(answer, sort_keys=True) for answer in answers]
    labels.append("folders:" + ",".join(folder.name for folder in folders or ()))
    return [lsp.CompletionItem(label=label) for label in labels]


@server.feature(lsp.TEXT_DOCUMENT_RENAME)
async def rename(ls: LanguageServer, params: lsp.RenameParams) -> lsp.WorkspaceEdit:
    uri = params.text_document.uri
    doc = ls.workspace.get_text_document(uri)
    first = await ls.workspace_apply_edit_async(
        lsp.ApplyWorkspaceEditParams(
            edit=lsp.WorkspaceEdit(
                document_changes=[
                    lsp.TextDocumentEdit(
                        text_document=lsp.OptionalVersionedTextDocumentIdentifier(uri=uri, version=doc.version),
                        edits=[lsp.TextEdit(range=ORIGIN, new_text=f"# {params.new_name}\n")],
                    )
                ]
            )
        )
    )
    other_uri = uri.rsplit("/", 1)[0] + "/other.py"
    second = await ls.workspace_apply_edit_async(
        lsp.ApplyWorkspaceEditParams(
            edit=lsp.WorkspaceEdit(changes={other_uri: [lsp.TextEdit(range=ORIGIN, new_text="# no\n")]})
        )
    )
    summary = f"{first.applied}|{second.applied}|{second.failure_reason}"
    return lsp.WorkspaceEdit(changes={uri: [lsp.TextEdit(range=ORIGIN, new_text=summary)]})


@server.feature(lsp.TEXT_DOCUMENT_SIGNATURE_HELP)
def signature_help(ls: LanguageServer, params: lsp.SignatureHelpParams) -> lsp.SignatureHelp:
    raise ValueError("boom from the fake server")


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
async def document_symbol(ls: LanguageServer, params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
    await asyncio.sleep(3600)
    return []


@server.feature(lsp.TEXT_DOCUMENT_IMPLEMENTATION)
async def implementation(ls: LanguageServer, params: lsp.ImplementationParams) -> list[lsp.Location]:
    await asyncio.sleep(3600)
    return []


@server.feature(lsp.WORKSPACE_SYMBOL)
async def workspace_symbol(ls: LanguageServer, params: lsp.WorkspaceSymbolParams) -> Any:
    if params.query == "hostile":
        ls.protocol.notify("exit", None)
        try:
            await ls.protocol.send_request_async("shutdown", None)
        except Exception as exc:  # the client answers "method not found"
            ls.window_log_message(lsp.LogMessageParams(type=lsp.MessageType.Log, message=f"shutdown refused: {exc}"))
        return []
    location = {
        "uri": "file:///nowhere.py",
        "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
    }
    return [{"name": "odd", "kind": 99, "location": location}]


@server.feature(
    lsp.TEXT_DOCUMENT_DIAGNOSTIC,
    lsp.DiagnosticOptions(identifier="fake", inter_file_dependencies=False, workspace_diagnostics=False),
)
def diagnostic(ls: LanguageServer, params: lsp.DocumentDiagnosticParams) -> lsp.RelatedFullDocumentDiagnosticReport:
    doc = ls.workspace.get_text_document(params.text_document.uri)
    item = lsp.Diagnostic(
        range=ORIGIN,
        message=f"version {doc.version}, {len(doc.source)} characters",
        severity=lsp.DiagnosticSeverity.Warning,
        code=7,
    )
    return lsp.RelatedFullDocumentDiagnosticReport(items=[item], result_id=str(doc.version))


if __name__ == "__main__":
    server.start_io()
