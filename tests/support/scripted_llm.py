"""A scripted OpenAI-compatible HTTP server for tests: canned replies in order, every request recorded.

Point litellm at it with model `openai/<anything>` and `api_base=server.base_url`, so the real litellm
request and parsing path runs against a server on 127.0.0.1 whose answers the test decides:

    async with ScriptedLLM(tool_call("read_file", {"path": "a.py"}), text("done")) as llm:
        ...  # llm.base_url, llm.requests, await llm.wait_for_requests(2)

`POST /v1/chat/completions` answers plainly or, with `stream: true`, as Server-Sent Events chunks (text
deltas and tool-call deltas, a usage chunk when `stream_options.include_usage` asks for one);
`POST /v1/completions` answers the legacy text-completion form (used for fill-in-the-middle prompts).
A reply can also be an HTTP error (429, 500, ...) or a hang that lasts until the client gives up.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "Recorded",
    "Reply",
    "ScriptedCall",
    "ScriptedLLM",
    "error",
    "hang",
    "text",
    "tool_call",
    "tool_calls",
]


@dataclass
class ScriptedCall:
    """One tool call the scripted model makes."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass
class Reply:
    """One canned answer: text, tool calls, an HTTP error or a hang."""

    text: str = ""
    calls: list[ScriptedCall] = field(default_factory=list)
    status: int = 200
    message: str = ""
    hang: bool = False
    prompt_tokens: int = 10
    completion_tokens: int = 5
    pieces: int = 3


def text(content: str, *, prompt_tokens: int = 10, completion_tokens: int = 5, pieces: int = 3) -> Reply:
    """A final text answer; streamed in `pieces` deltas when the client streams."""
    return Reply(text=content, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, pieces=pieces)


def tool_call(
    name: str,
    arguments: dict[str, Any] | str | None = None,
    *,
    id: str | None = None,
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
) -> Reply:
    """A reply that asks for one tool call."""
    call = ScriptedCall(name, arguments if arguments is not None else {}, id)
    return Reply(calls=[call], prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def tool_calls(*calls: ScriptedCall, prompt_tokens: int = 10, completion_tokens: int = 5) -> Reply:
    """A reply that asks for several tool calls at once."""
    return Reply(calls=list(calls), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def error(status: int, message: str = "scripted failure") -> Reply:
    """An HTTP error answer in OpenAI's error body shape."""
    return Reply(status=status, message=message)


def hang() -> Reply:
    """Accept the request and never answer; ends when the client disconnects or the server closes."""
    return Reply(hang=True)


@dataclass
class Recorded:
    """A request the server received."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]


class ScriptedLLM:
    """The server: replies are consumed in order, one per request, whatever the endpoint."""

    def __init__(self, *replies: Reply, model: str = "scripted") -> None:
        self.script: deque[Reply] = deque(replies)
        self.model = model
        self.requests: list[Recorded] = []
        self.hanging = asyncio.Event()
        self.hang_ended = asyncio.Event()
        self._changed = asyncio.Condition()
        self._closing = asyncio.Event()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The `api_base` to give litellm."""
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> ScriptedLLM:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        # handler_cancellation: a hanging handler ends when the client goes away, as a real server's would.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        for address in self._runner.addresses:
            if isinstance(address, tuple):
                self.port = int(address[1])
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ScriptedLLM:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- script and observation ----------------------------------------------------------------------
    def push(self, *replies: Reply) -> None:
        """Queue more replies."""
        self.script.extend(replies)

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Recorded]:
        """Wait until at least `count` requests have arrived; returns the recorded requests."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    def bodies(self, path_suffix: str = "") -> list[dict[str, Any]]:
        """The JSON bodies received, optionally only those for paths ending in `path_suffix`."""
        return [r.body for r in self.requests if r.path.endswith(path_suffix)]

    async def _record(self, request: web.Request) -> tuple[dict[str, Any], Reply | None]:
        body = await request.json()
        async with self._changed:
            self.requests.append(Recorded(request.path, body, dict(request.headers)))
            self._changed.notify_all()
        reply = self.script.popleft() if self.script else None
        return body, reply

    # -- handlers ------------------------------------------------------------------------------------
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, reply = await self._record(request)
        early = await self._early_answer(reply)
        if early is not None or reply is None:
            return early or _exhausted()
        if body.get("stream"):
            return await self._stream_chat(request, body, reply)
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.calls:
            message["tool_calls"] = [
                {
                    "id": call.id or self._call_id(),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json()},
                }
                for call in reply.calls
            ]
        payload = {
            **self._envelope("chat.completion"),
            "choices": [{"index": 0, "message": message, "finish_reason": _finish(reply)}],
            "usage": _usage(reply),
        }
        return web.json_response(payload)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body, reply = await self._record(request)
        early = await self._early_answer(reply)
        if early is not None or reply is None:
            return early or _exhausted()
        if body.get("stream"):
            chunks = [
                {**self._envelope("text_completion"), "choices": [{"index": 0, "text": piece, "finish_reason": None}]}
                for piece in _split(reply.text, reply.pieces)
            ]
            last = {**self._envelope("text_completion"), "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}
            return await _sse(request, [*chunks, last])
        payload = {
            **self._envelope("text_completion"),
            "choices": [{"index": 0, "text": reply.text, "finish_reason": "stop", "logprobs": None}],
            "usage": _usage(reply),
        }
        return web.json_response(payload)

    async def _early_answer(self, reply: Reply | None) -> web.StreamResponse | None:
        """Errors and hangs, the same for every endpoint; None when the reply is a normal answer."""
        if reply is None:
            return None
        if reply.hang:
            self.hanging.set()
            try:
                await self._closing.wait()
            finally:
                self.hang_ended.set()
            return web.json_response({"error": {"message": "server closing"}}, status=503)
        if reply.status >= 400:
            return web.json_response(
                {"error": {"message": reply.message, "type": "scripted_error", "code": str(reply.status)}},
                status=reply.status,
            )
        return None

    async def _stream_chat(self, request: web.Request, body: dict[str, Any], reply: Reply) -> web.StreamResponse:
        chunks: list[dict[str, Any]] = [self._chunk({"role": "assistant", "content": ""})]
        chunks.extend(self._chunk({"content": piece}) for piece in _split(reply.text, reply.pieces))
        for index, call in enumerate(reply.calls):
            head = {"index": index, "id": call.id or self._call_id(), "type": "function"}
            chunks.append(self._chunk({"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]}))
            for piece in _split(call.arguments_json(), 2):
                chunks.append(self._chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
        chunks.append(self._chunk({}, finish_reason=_finish(reply)))
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            chunks.append({**self._envelope("chat.completion.chunk"), "choices": [], "usage": _usage(reply)})
        return await _sse(request, chunks)

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            **self._envelope("chat.completion.chunk"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {"id": f"scripted-{next(self._ids)}", "object": kind, "created": int(time.time()), "model": self.model}

    def _call_id(self) -> str:
        return f"call_{next(self._ids)}"


def _finish(reply: Reply) -> str:
    return "tool_calls" if reply.calls else "stop"


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _split(value: str, pieces: int) -> list[str]:
    if not value:
        return []
    size = max(1, -(-len(value) // max(1, pieces)))
    return [value[i : i + size] for i in range(0, len(value), size)]


def _exhausted() -> web.Response:
    # 400 is not retried, so a test with too short a script fails at once and says why.
    return web.json_response(
        {"error": {"message": "scripted server: no reply left in the script", "type": "invalid_request_error"}},
        status=400,
    )


async def _sse(request: web.Request, chunks: Iterable[dict[str, Any]]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for chunk in chunks:
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
