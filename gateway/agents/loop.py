"""The agent loop: model call, tool calls through the core, results back, until an answer or a limit.

Every step streams out through `ctx.progress`, so each door shows the run live. The data of every
report carries `kind` and `agent` and `step`:

- `step`: a model call starts (`max_steps` too); message "step 2/8"
- `text`: a text delta (`delta`); the message is the tail of the text written so far in this step
- `tool_call`: a tool is about to run (`id`, `name` = capability, `arguments`)
- `tool_progress`: a running tool reported progress (`id`, `name`, `progress` = its report)
- `tool_result`: a tool finished (`id`, `name`, `ok`, `result_preview`)
- `final`: the run ended (`stop_reason`, `steps`, `usage`); percentage 100

Tool calls run as nested executions with the caller's identity and door, so auth, limits, metrics and
the event stream apply to them; their errors go back to the model as the tool's result. Cancelling the
run cancels the model request and the running tool calls with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from ..config import AgentConfig
from ..errors import GatewayError
from ..execution import CallContext, ExecutionContext, ProgressReport
from ..llm.models import TokenUsage, ToolCallRequest
from ..llm.service import LLMService
from .models import AgentResult, AgentToolCall, StopReason
from .tools import AgentTool, build_tools

log = logging.getLogger("gateway.agents")

TOOL_RESULT_MAX_CHARS = 20_000
PREVIEW_CHARS = 200
MESSAGE_TAIL_CHARS = 80
CONTEXT_MAX_CHARS = 50_000


def agent_messages(agent: AgentConfig, input: str, context: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
    """The opening messages of a run: the agent's system prompt, then the task with its context.

    The MCP door can use these to render an agent as a prompt.
    """
    messages: list[dict[str, str]] = []
    if agent.system_prompt:
        messages.append({"role": "system", "content": agent.system_prompt})
    content = input
    if context:
        rendered = json.dumps(context, indent=2, ensure_ascii=False, default=str)
        if len(rendered) > CONTEXT_MAX_CHARS:
            rendered = rendered[:CONTEXT_MAX_CHARS] + "\n… (context truncated)"
        content = f"{input}\n\nContext:\n```json\n{rendered}\n```"
    messages.append({"role": "user", "content": content})
    return messages


def model_params(agent: AgentConfig) -> dict[str, Any]:
    """The agent's sampling parameters that are set."""
    values = {
        "temperature": agent.temperature,
        "max_tokens": agent.max_tokens,
        "top_p": agent.top_p,
        "frequency_penalty": agent.frequency_penalty,
        "presence_penalty": agent.presence_penalty,
    }
    return {k: v for k, v in values.items() if v is not None}


def _preview(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _tail(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MESSAGE_TAIL_CHARS else "…" + flat[-(MESSAGE_TAIL_CHARS - 1) :]


class AgentRun:
    """One run of one agent inside one execution."""

    def __init__(self, ctx: ExecutionContext, llm: LLMService, agent: AgentConfig) -> None:
        self.ctx = ctx
        self.llm = llm
        self.agent = agent
        tools, missing = build_tools(ctx.core.registry, agent.tools)
        if missing:
            log.warning("agent %s: tools not available now, running without them: %s", agent.name, missing)
        self.tools = tools
        self.by_openai_name: dict[str, AgentTool] = {t.openai_name: t for t in tools}
        self.step = 0
        self.usage = TokenUsage()
        self.calls: list[AgentToolCall] = []

    # -- progress ----------------------------------------------------------------------------------------
    @property
    def _percentage(self) -> float:
        return round(100.0 * max(0, self.step - 1) / self.agent.max_steps, 1)

    def _progress(self, message: str, kind: str, **data: Any) -> None:
        self.ctx.progress(message, self._percentage, kind=kind, agent=self.agent.name, step=self.step, **data)

    # -- the loop ------------------------------------------------------------------------------------------
    async def run(self, input: str, context: Mapping[str, Any] | None) -> AgentResult:
        """Run to a final answer, the step limit or the token budget."""
        self.llm.model(self.agent.model)  # Unsupported / NotFound before anything else happens
        messages: list[dict[str, Any]] = list(agent_messages(self.agent, input, context))
        definitions = [t.definition for t in self.tools]
        params = model_params(self.agent)
        output = ""
        stop: StopReason = "max_steps"
        while self.step < self.agent.max_steps:
            if self.usage.total_tokens >= self.agent.token_budget:
                stop = "token_budget"
                break
            self.step += 1
            self._progress(f"step {self.step}/{self.agent.max_steps}", "step", max_steps=self.agent.max_steps)
            written: list[str] = []

            def on_text(delta: str, written: list[str] = written) -> None:
                written.append(delta)
                self._progress(_tail("".join(written)), "text", delta=delta)

            answer = await self.llm.chat(
                self.agent.model,
                messages,
                tools=definitions or None,
                params=params,
                stream=True,
                on_text=on_text,
                timeout=self._remaining(),
            )
            self.usage = self.usage.plus(answer.usage)
            output = answer.text
            if not answer.tool_calls:
                stop = "final"
                break
            messages.append(_assistant_message(answer.text, answer.tool_calls))
            if self.usage.total_tokens >= self.agent.token_budget:
                stop = "token_budget"
                break
            if self.step >= self.agent.max_steps:
                break
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._call_tool(call)) for call in answer.tool_calls]
            for call, task in zip(answer.tool_calls, tasks, strict=True):
                record, text = task.result()
                self.calls.append(record)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": text})
            self.ctx.check_cancelled()
        self.ctx.progress(
            f"{self.agent.name}: {stop}",
            100.0,
            kind="final",
            agent=self.agent.name,
            step=self.step,
            stop_reason=stop,
            steps=self.step,
            usage=self.usage.model_dump(),
        )
        return AgentResult(
            agent=self.agent.name,
            model=self.agent.model,
            output=output,
            steps=self.step,
            tool_calls=self.calls,
            usage=self.usage,
            stop_reason=stop,
        )

    def _remaining(self) -> float:
        return max(0.001, self.ctx.deadline - time.monotonic())

    async def _call_tool(self, call: ToolCallRequest) -> tuple[AgentToolCall, str]:
        """Run one tool call as a nested execution; returns its record and what the model is told."""
        step = self.step
        tool = self.by_openai_name.get(call.name)
        name = tool.capability if tool is not None else call.name
        arguments: dict[str, Any] = {}
        try:
            parsed = json.loads(call.arguments or "{}")
        except ValueError as exc:
            return self._record(call, name, arguments, step, _error_text("invalid_arguments", f"not JSON: {exc}"))
        if not isinstance(parsed, dict):
            return self._record(call, name, arguments, step, _error_text("invalid_arguments", "not a JSON object"))
        arguments = parsed
        if tool is None:
            known = ", ".join(sorted(self.by_openai_name)) or "none"
            text = _error_text("unknown_tool", f"no tool named {call.name!r}; tools: {known}")
            return self._record(call, name, arguments, step, text)
        self._progress(f"calling {name}", "tool_call", id=call.id, name=name, arguments=arguments)

        def on_progress(report: ProgressReport) -> None:
            self._progress(
                report.message or f"{name} working",
                "tool_progress",
                id=call.id,
                name=name,
                progress=report.model_dump(exclude_none=True),
            )

        nested = CallContext(
            identity=self.ctx.identity,
            door=self.ctx.call.door,
            timeout=self._remaining(),
            on_progress=on_progress,
            request_id=self.ctx.call.request_id,
            meta={**self.ctx.call.meta, "parent_execution": self.ctx.id, "agent": self.agent.name},
            peer=self.ctx.peer,
        )
        try:
            result = await self.ctx.core.execute(nested, name, arguments)
        except GatewayError as exc:
            self.ctx.check_cancelled()
            return self._record(call, name, arguments, step, _error_text(exc.code, exc.message, exc.data), ok=False)
        text = json.dumps(result.model_dump(mode="json", exclude_none=True), ensure_ascii=False)
        return self._record(call, name, arguments, step, text, ok=True)

    def _record(
        self, call: ToolCallRequest, name: str, arguments: dict[str, Any], step: int, text: str, ok: bool = False
    ) -> tuple[AgentToolCall, str]:
        if len(text) > TOOL_RESULT_MAX_CHARS:
            text = text[:TOOL_RESULT_MAX_CHARS] + f"\n… (truncated; {len(text)} characters in all)"
        preview = _preview(text)
        self._progress(
            f"{name} {'ok' if ok else 'failed'}", "tool_result", id=call.id, name=name, ok=ok, result_preview=preview
        )
        return AgentToolCall(name=name, arguments=arguments, ok=ok, result_preview=preview, step=step), text


def _assistant_message(text: str, calls: list[ToolCallRequest]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments or "{}"}}
            for c in calls
        ],
    }


def _error_text(code: str, message: str, data: Mapping[str, Any] | None = None) -> str:
    error: dict[str, Any] = {"code": code, "message": message}
    if data:
        error["data"] = dict(data)
    return json.dumps({"error": error}, ensure_ascii=False, default=str)
