"""Federation of upstream MCP servers (the official SDK's client).

Each `[[mcp.upstreams]]` entry is connected (stdio command or streamable HTTP URL) and supervised; its
tools become registry capabilities named `<prefix><tool>` (tags `("federated", <upstream>)`), so REST,
LSP, MCP and the hub can all call them; its resources, templates and prompts are offered to the MCP
door by `Federation` (see `federation.py`; `Gateway.federation` once `Gateway.start()` ran, None when no
upstream is configured): `list_resources()`, `list_resource_templates()`, `read_resource(uri, call)`,
`subscribe(uri, on)`, `list_prompts()`, `get_prompt(name, arguments, call)`, `complete(ref, argument,
context)` and `on_change(listener)` for list_changed. They return wire dicts (camelCase) and None when no
upstream owns the URI or name; `call` is the door's `CallContext` (peer and meta as below).

Contract with the MCP door, for federated tools:

- `cap.params_model.model_json_schema()` is the upstream's exact `inputSchema`;
  `cap.result_model.mcp_output_schema` is its `outputSchema` (or None).
- `cap.result_model.mcp_passthrough` is True: answer `tools/call` with `result.wire()`, the upstream's
  own `CallToolResult` (content blocks, `structuredContent`, `isError`), or a 2026-07-28
  `InputRequiredResult` (`resultType: "input_required"`, `inputRequests`, `requestState`).
- `CallContext.meta` keys the door may set: `"mcp.input_required": True` when its client speaks
  2026-07-28 and should receive an upstream's `InputRequiredResult` as is (otherwise the gateway answers
  the input requests itself through `CallContext.peer` and retries); `"mcp.input_responses"` and
  `"mcp.request_state"` carry a client's retry (`inputResponses`, `requestState`) to the upstream;
  `"mcp.client_capabilities"` (the client's declared ClientCapabilities, a dict) is what a 2026-07-28
  upstream is told the caller can do (default: derived from `CallContext.peer`).
- An upstream's JSON-RPC error arrives as a core error whose `data["mcp_error"]` is the original
  `{"code", "message", "data"}` (e.g. -32021 MissingRequiredClientCapability): the door may answer
  with it verbatim.
- Progress reaches `CallContext.on_progress` as `ProgressReport(message, percentage, data={"progress",
  "total"})` with the upstream's own numbers; logging, elicitation and sampling go to `CallContext.peer`.
"""

from __future__ import annotations

from .federation import Federation
from .schema import UpstreamParams, UpstreamToolResult
from .upstream import (
    META_CLIENT_CAPABILITIES,
    META_INPUT_REQUIRED,
    META_INPUT_RESPONSES,
    META_REQUEST_STATE,
    Upstream,
)

__all__ = [
    "META_CLIENT_CAPABILITIES",
    "META_INPUT_REQUIRED",
    "META_INPUT_RESPONSES",
    "META_REQUEST_STATE",
    "Federation",
    "Upstream",
    "UpstreamParams",
    "UpstreamToolResult",
]
