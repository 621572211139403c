"""Where the MCP door's resources and prompts come from: providers, asked in the order they were added.

The door has two built-in providers (`WorkspaceResources`: open documents, any workspace file through a
template, diagnostics per document; `ConfigPrompts`: the prompts of `[mcp] prompts`). Other code adds
its own with `McpDoor.add_resource_provider` / `add_prompt_provider` (federated upstream servers do).

A provider may answer with mcp_types models or with the same objects in wire form (camelCase dicts);
the door validates either. `read_resource`, `get_prompt` and `complete` return None for what is not
theirs, so the next provider is asked.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp.shared.uri_template import UriTemplate

from gateway.config import McpConfig, PromptConfig
from gateway.errors import GatewayError, PathOutsideRoot
from gateway.execution import CallContext, Core
from gateway.workspace import Document
from translators.errors import MCP_INVALID_PARAMS

from .translate import complete_values, config_prompt, protocol_error, render_prompt

Wire = Mapping[str, Any]
DIAGNOSTICS_PREFIX = "gateway://diagnostics/"
DIAGNOSTICS_TEMPLATE = DIAGNOSTICS_PREFIX + "{+path}"
COMPLETION_FILES = 1000
"""How many workspace paths file-path completion looks at."""


class ResourceProvider:
    """A source of resources; subclass and override what you offer (every default offers nothing)."""

    async def list_resources(self, call: CallContext) -> Sequence[types.Resource | Wire]:
        """The resources to list now (`resources/list`)."""
        return []

    async def list_resource_templates(self, call: CallContext) -> Sequence[types.ResourceTemplate | Wire]:
        """The resource templates to list (`resources/templates/list`)."""
        return []

    async def read_resource(self, call: CallContext, uri: str) -> types.ReadResourceResult | Wire | None:
        """The contents of `uri`, or None when the URI is not this provider's."""
        return None

    async def complete(
        self,
        call: CallContext,
        ref: types.ResourceTemplateReference,
        argument: types.CompletionArgument,
        context: Mapping[str, str],
    ) -> types.Completion | Wire | None:
        """Values for a template argument, or None when the template is not this provider's."""
        return None

    async def subscribe(self, uri: str, subscribe: bool) -> None:
        """Told when the first client subscribes to `uri` (True) and when the last one leaves (False)."""
        return None


class PromptProvider:
    """A source of prompts; subclass and override what you offer."""

    async def list_prompts(self, call: CallContext) -> Sequence[types.Prompt | Wire]:
        """The prompts to list now (`prompts/list`)."""
        return []

    async def get_prompt(
        self, call: CallContext, name: str, arguments: Mapping[str, str] | None
    ) -> types.GetPromptResult | Wire | None:
        """The prompt `name` filled in with `arguments`, or None when the name is not this provider's."""
        return None

    async def complete(
        self,
        call: CallContext,
        ref: types.PromptReference,
        argument: types.CompletionArgument,
        context: Mapping[str, str],
    ) -> types.Completion | Wire | None:
        """Values for a prompt argument, or None when the prompt is not this provider's."""
        return None


# -- built-in: prompts from the config ----------------------------------------------------------------
class ConfigPrompts(PromptProvider):
    """The prompts of `[mcp] prompts`, with completion from each argument's `completions` list."""

    def __init__(self, config: McpConfig) -> None:
        self._prompts: dict[str, PromptConfig] = {p.name: p for p in config.prompts}

    async def list_prompts(self, call: CallContext) -> Sequence[types.Prompt | Wire]:
        return [config_prompt(p) for p in self._prompts.values()]

    async def get_prompt(
        self, call: CallContext, name: str, arguments: Mapping[str, str] | None
    ) -> types.GetPromptResult | Wire | None:
        prompt = self._prompts.get(name)
        return None if prompt is None else render_prompt(prompt, arguments)

    async def complete(
        self,
        call: CallContext,
        ref: types.PromptReference,
        argument: types.CompletionArgument,
        context: Mapping[str, str],
    ) -> types.Completion | Wire | None:
        prompt = self._prompts.get(ref.name)
        if prompt is None:
            return None
        for arg in prompt.arguments:
            if arg.name == argument.name:
                return complete_values(arg.completions, argument.value)
        return types.Completion(values=[], total=0, has_more=False)


# -- built-in: the workspace --------------------------------------------------------------------------
def _mime(path: str) -> str:
    guessed = mimetypes.guess_type(path, strict=False)[0]
    if guessed is None or not (guessed.startswith("text/") or guessed.endswith(("json", "xml", "javascript"))):
        return "text/plain"
    return guessed


class WorkspaceResources(ResourceProvider):
    """Open documents (their current text, unsaved edits included), any file under the root through the
    `file://<root>/{+path}` template (read with the `read_file` capability), and each open document's
    diagnostics as JSON at `gateway://diagnostics/<path>` (from the `diagnostics` capability)."""

    def __init__(self, core: Core, max_bytes: int) -> None:
        self.core = core
        self.max_bytes = max_bytes
        self.root = core.workspace.root
        self.root_uri = self.root.as_uri()
        self.file_template = self.root_uri.rstrip("/") + "/{+path}"
        self._diagnostics = UriTemplate.parse(DIAGNOSTICS_TEMPLATE)

    # -- URIs ----------------------------------------------------------------------------------------
    def file_uri(self, path: str) -> str:
        """The `file://` URI of a root-relative path."""
        return (self.root / path).as_uri()

    @staticmethod
    def diagnostics_uri(path: str) -> str:
        """The diagnostics resource URI of a root-relative path."""
        return DIAGNOSTICS_PREFIX + quote(path, safe="/")

    def path_of(self, uri: str) -> str | None:
        """The root-relative path a `file://` URI names; None for other schemes; refuses paths outside."""
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            return None
        absolute = os.path.normpath(unquote(parts.path))
        root = str(self.root)
        if absolute == root:
            raise protocol_error(PathOutsideRoot("the workspace root is a folder, not a file", data={"uri": uri}))
        if not absolute.startswith(root.rstrip(os.sep) + os.sep):
            raise protocol_error(PathOutsideRoot(f"{uri} is outside the workspace root", data={"uri": uri}))
        return Path(os.path.relpath(absolute, root)).as_posix()

    # -- provider -------------------------------------------------------------------------------------
    def _document_resources(self, doc: Document) -> list[types.Resource]:
        size = len(doc.text.encode("utf-8"))
        return [
            types.Resource(
                uri=self.file_uri(doc.path),
                name=doc.path,
                title=doc.path,
                description=f"Open document, version {doc.version} ({doc.language_id}); unsaved edits included",
                mime_type=_mime(doc.path),
                size=size,
            ),
            types.Resource(
                uri=self.diagnostics_uri(doc.path),
                name=f"diagnostics:{doc.path}",
                title=f"Diagnostics of {doc.path}",
                description="Problems in the open document, as JSON",
                mime_type="application/json",
            ),
        ]

    async def list_resources(self, call: CallContext) -> Sequence[types.Resource | Wire]:
        documents = sorted(self.core.workspace.documents.values(), key=lambda d: d.path)
        return [resource for doc in documents for resource in self._document_resources(doc)]

    async def list_resource_templates(self, call: CallContext) -> Sequence[types.ResourceTemplate | Wire]:
        return [
            types.ResourceTemplate(
                uri_template=self.file_template,
                name="workspace-file",
                title="Workspace file",
                description="Any file under the workspace root (root-relative path); open documents' unsaved "
                "text wins over the disk",
            ),
            types.ResourceTemplate(
                uri_template=DIAGNOSTICS_TEMPLATE,
                name="diagnostics",
                title="Diagnostics",
                description="Problems in a workspace file (root-relative path), as JSON",
                mime_type="application/json",
            ),
        ]

    async def read_resource(self, call: CallContext, uri: str) -> types.ReadResourceResult | Wire | None:
        path = self.path_of(uri)
        if path is not None:
            return await self._read_file(call, uri, path)
        if uri.startswith(DIAGNOSTICS_PREFIX):
            matched = self._diagnostics.match(uri)
            diag_path = matched.get("path") if matched else None
            if not isinstance(diag_path, str) or not diag_path:
                return None
            return await self._read_diagnostics(call, uri, diag_path)
        return None

    async def _read_file(self, call: CallContext, uri: str, path: str) -> types.ReadResourceResult:
        try:
            result = await self.core.execute(call, "read_file", {"path": path, "max_bytes": self.max_bytes})
        except GatewayError as exc:
            if exc.code == "not_found":
                raise MCPError(code=MCP_INVALID_PARAMS, message="Resource not found", data={"uri": uri}) from None
            raise protocol_error(exc) from None
        data = result.model_dump()
        meta = {
            "gateway/source": data["source"],
            "gateway/version": data["version"],
            "gateway/truncated": data["truncated"],
        }
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type=_mime(path), text=data["text"], _meta=meta)]
        )

    async def _read_diagnostics(self, call: CallContext, uri: str, path: str) -> types.ReadResourceResult:
        try:
            result = await self.core.execute(call, "diagnostics", {"path": path, "limit": 1000})
        except GatewayError as exc:
            if exc.code == "not_found":
                raise MCPError(code=MCP_INVALID_PARAMS, message="Resource not found", data={"uri": uri}) from None
            raise protocol_error(exc) from None
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type="application/json", text=result.model_dump_json())]
        )

    async def complete(
        self,
        call: CallContext,
        ref: types.ResourceTemplateReference,
        argument: types.CompletionArgument,
        context: Mapping[str, str],
    ) -> types.Completion | Wire | None:
        if ref.uri not in (self.file_template, DIAGNOSTICS_TEMPLATE):
            return None
        if argument.name != "path":
            return types.Completion(values=[], total=0, has_more=False)
        return await self.complete_path(call, argument.value)

    async def complete_path(self, call: CallContext, prefix: str) -> types.Completion:
        """Workspace paths (through `list_files`, so .gitignore counts) that start with `prefix`."""
        params: dict[str, Any] = {"limit": COMPLETION_FILES}
        if prefix and not any(c in prefix for c in "*?[]!#\\ "):
            params["glob"] = "/" + prefix.lstrip("/") + "*" if "/" in prefix else prefix + "*"
        try:
            listing = await self.core.execute(call, "list_files", params)
        except GatewayError:
            return types.Completion(values=[], total=0, has_more=False)
        data = listing.model_dump()
        paths = [item["path"] for item in data["items"]]
        return complete_values(paths, prefix, has_more=data.get("next_cursor") is not None)


def as_model(model: type[Any], value: Any) -> Any:
    """`value` as `model`: models pass through, wire dicts are validated (camelCase names)."""
    if isinstance(value, model):
        return value
    return model.model_validate(value, by_name=False)
