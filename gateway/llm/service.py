"""Model access through litellm: configured models, streaming, retries, timeouts, usage and cost.

One `LLMService` per gateway holds the `[[models]]` entries by name. A call picks a model by name,
merges the model's default parameters under the caller's, and runs `litellm.acompletion` (chat, streamed
or not) or `litellm.atext_completion` (fill-in-the-middle with `prompt` and `suffix`). Failures map onto
the core's errors: 429, 5xx and connection errors are retried with exponential backoff up to the model's
`max_retries`; a server that does not answer within `timeout_seconds` is a `Timeout`; anything else is an
`UpstreamFailure`. Every HTTP attempt is counted in `gateway_llm_requests_total{model,status}` and every
answer's tokens and cost in `gateway_llm_tokens_total{model,kind}` and `gateway_llm_cost_usd_total{model}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from ..config import ModelConfig
from ..errors import NotFound, Timeout, Unsupported, UpstreamFailure
from ..metrics import Metrics
from . import runtime
from .models import ChatResult, TextResult, TokenUsage, ToolCallRequest

log = logging.getLogger("gateway.llm")

NO_MODEL_MESSAGE = "no model configured: add [[models]] to the config"

T = TypeVar("T")
Outcome = Literal["ok", "rate_limited", "server_error", "connection_error", "timeout", "error", "cancelled"]
RETRYABLE: frozenset[str] = frozenset({"rate_limited", "server_error", "connection_error"})
RETRY_AFTER_CAP = 30.0


class _AttemptFailed(Exception):
    """A failed HTTP attempt, classified; `retryable` is False once part of a stream went out."""

    def __init__(self, outcome: Outcome, cause: BaseException, retryable: bool) -> None:
        super().__init__(str(cause))
        self.outcome = outcome
        self.cause = cause
        self.retryable = retryable


class LLMService:
    """The configured models and the one way the gateway calls them."""

    def __init__(
        self,
        models: Sequence[ModelConfig],
        metrics: Metrics | None = None,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.models: dict[str, ModelConfig] = {m.name: m for m in models}
        self.metrics = metrics
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._environ = environ
        self._unpriced: set[str] = set()
        self._warming: asyncio.Task[None] | None = None

    # -- configuration ------------------------------------------------------------------------------
    @property
    def configured(self) -> bool:
        """True when at least one model is configured."""
        return bool(self.models)

    def model(self, name: str | None = None) -> ModelConfig:
        """The model called `name` (the first configured one when None); Unsupported when there is none."""
        if not self.models:
            raise Unsupported(NO_MODEL_MESSAGE)
        if name is None:
            return next(iter(self.models.values()))
        try:
            return self.models[name]
        except KeyError:
            raise NotFound(f"no model named {name!r}", data={"model": name, "known": sorted(self.models)}) from None

    async def warm(self) -> None:
        """Import litellm in a worker thread when a model is configured, so first calls are fast."""
        if self.configured:
            await runtime.warm()

    def start_warming(self) -> None:
        """Start `warm()` in the background (once); a no-op with no model configured."""
        if self.configured and self._warming is None and not runtime.loaded():
            self._warming = asyncio.create_task(self.warm(), name="llm-warm")

    async def close(self) -> None:
        """Stop waiting for a background import; the import thread itself finishes on its own."""
        task, self._warming = self._warming, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _api_key(self, cfg: ModelConfig) -> str | None:
        if cfg.api_key_env is None:
            return None
        environ = os.environ if self._environ is None else self._environ
        key = environ.get(cfg.api_key_env)
        if not key:
            raise Unsupported(
                f"model {cfg.name!r}: the environment variable {cfg.api_key_env} holding its API key is not set",
                data={"model": cfg.name, "api_key_env": cfg.api_key_env},
            )
        return key

    def _request(self, cfg: ModelConfig, params: Mapping[str, Any] | None, timeout: float) -> dict[str, Any]:
        """The keyword arguments shared by every litellm call for `cfg`."""
        request: dict[str, Any] = {**cfg.params}
        request.update({k: v for k, v in (params or {}).items() if v is not None})
        request.update(model=cfg.model, timeout=timeout, max_retries=0, num_retries=0)
        if cfg.api_base is not None:
            request["api_base"] = cfg.api_base
        key = self._api_key(cfg)
        if key is not None:
            request["api_key"] = key
        return request

    @staticmethod
    def _timeout(cfg: ModelConfig, cap: float | None) -> float:
        if cap is None:
            return cfg.timeout_seconds
        return max(0.001, min(cfg.timeout_seconds, cap))

    # -- calls ---------------------------------------------------------------------------------------
    async def chat(
        self,
        model: str | None,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        params: Mapping[str, Any] | None = None,
        stream: bool = False,
        on_text: Callable[[str], None] | None = None,
        timeout: float | None = None,
    ) -> ChatResult:
        """One chat completion; with `stream`, `on_text` hears each text delta as it arrives.

        `timeout` caps the model's own `timeout_seconds` (e.g. at the caller's deadline); when
        streaming it bounds the wait for the first answer and then for each next chunk.
        """
        cfg = self.model(model)
        limit = self._timeout(cfg, timeout)
        request = self._request(cfg, params, limit)
        request["messages"] = [dict(m) for m in messages]
        if tools:
            request["tools"] = [dict(t) for t in tools]
        litellm = await _litellm()

        if stream:

            async def attempt() -> ChatResult:
                return await self._stream_chat(litellm, cfg, request, limit, on_text)

        else:

            async def attempt() -> ChatResult:
                try:
                    async with asyncio.timeout(limit):
                        response = await litellm.acompletion(**request)
                except Exception as exc:
                    raise _classify(litellm, exc, retryable=True) from exc
                result = _chat_from_response(cfg.name, response)
                if on_text is not None and result.text:
                    on_text(result.text)
                return result

        result = await self._with_retries(cfg, attempt, limit)
        result.usage = self._finish_usage(cfg, result.usage, request["messages"], result.text)
        return result

    async def complete_text(
        self,
        model: str | None,
        prompt: str,
        *,
        suffix: str | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> TextResult:
        """One text completion: the fill-in-the-middle form when `suffix` is given."""
        cfg = self.model(model)
        limit = self._timeout(cfg, timeout)
        request = self._request(cfg, params, limit)
        request["prompt"] = prompt
        if suffix is not None:
            request["suffix"] = suffix
        litellm = await _litellm()

        async def attempt() -> TextResult:
            try:
                async with asyncio.timeout(limit):
                    response = await litellm.atext_completion(**request)
            except Exception as exc:
                raise _classify(litellm, exc, retryable=True) from exc
            choices = _get(response, "choices") or []
            text = (_get(choices[0], "text") or "") if choices else ""
            return TextResult(model=cfg.name, text=str(text), usage=_usage_of(_get(response, "usage")))

        result = await self._with_retries(cfg, attempt, limit)
        result.usage = self._finish_usage(cfg, result.usage, [{"content": prompt + (suffix or "")}], result.text)
        return result

    async def _stream_chat(
        self,
        litellm: Any,
        cfg: ModelConfig,
        request: dict[str, Any],
        limit: float,
        on_text: Callable[[str], None] | None,
    ) -> ChatResult:
        """One streamed attempt: text deltas out as they come, tool-call deltas assembled by index."""
        request = {**request, "stream": True, "stream_options": {"include_usage": True}}
        try:
            async with asyncio.timeout(limit):
                response = await litellm.acompletion(**request)
        except Exception as exc:
            raise _classify(litellm, exc, retryable=True) from exc
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage = TokenUsage()
        finish: str | None = None
        started = False
        iterator = response.__aiter__()
        try:
            while True:
                try:
                    async with asyncio.timeout(limit):
                        chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    raise _classify(litellm, exc, retryable=not started) from exc
                chunk_usage = _get(chunk, "usage")
                if chunk_usage is not None:
                    usage = _usage_of(chunk_usage)
                for choice in _get(chunk, "choices") or []:
                    finish = _get(choice, "finish_reason") or finish
                    delta = _get(choice, "delta")
                    if delta is None:
                        continue
                    piece = _get(delta, "content")
                    if piece:
                        started = True
                        text.append(piece)
                        if on_text is not None:
                            on_text(piece)
                    for call in _get(delta, "tool_calls") or []:
                        started = True
                        _merge_call(calls, call)
        finally:
            closer = getattr(response, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()
        return ChatResult(
            model=cfg.name,
            text="".join(text),
            tool_calls=[_finished_call(calls[i]) for i in sorted(calls)],
            usage=usage,
            finish_reason=finish,
        )

    # -- retries, metrics, usage -----------------------------------------------------------------------
    async def _with_retries(self, cfg: ModelConfig, attempt: Callable[[], Awaitable[T]], limit: float) -> T:
        """Run `attempt`, retrying 429/5xx/connection failures with exponential backoff and jitter."""
        tries = 0
        while True:
            try:
                result = await attempt()
            except asyncio.CancelledError:
                self._count(cfg, "cancelled")
                raise
            except _AttemptFailed as failure:
                self._count(cfg, failure.outcome)
                if failure.outcome == "timeout":
                    raise Timeout(
                        f"model {cfg.name!r} did not answer within {limit:g} seconds",
                        data={"model": cfg.name, "timeout_seconds": limit},
                    ) from None
                if failure.retryable and failure.outcome in RETRYABLE and tries < cfg.max_retries:
                    delay = self._backoff(tries, failure.cause)
                    log.warning(
                        "model %s: %s (%s); retry %d/%d in %.2fs",
                        cfg.name,
                        failure.outcome,
                        _short(failure.cause),
                        tries + 1,
                        cfg.max_retries,
                        delay,
                    )
                    tries += 1
                    await asyncio.sleep(delay)
                    continue
                raise _upstream_error(cfg, failure, tries) from None
            self._count(cfg, "ok")
            return result

    def _backoff(self, tries: int, cause: BaseException) -> float:
        delay: float = min(self.backoff_max, self.backoff_initial * 2.0**tries)
        delay *= 0.5 + random.random() / 2  # jitter: spread retries of concurrent callers
        retry_after = _retry_after(cause)
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
        return delay

    def _count(self, cfg: ModelConfig, outcome: Outcome) -> None:
        if self.metrics is not None:
            self.metrics.llm_requests.labels(cfg.name, outcome).inc()

    def _finish_usage(
        self, cfg: ModelConfig, usage: TokenUsage, messages: Sequence[Mapping[str, Any]], answer: str
    ) -> TokenUsage:
        """Fill in totals (estimating when the server sent no usage), price it, and count it."""
        if usage.prompt_tokens == 0 and usage.completion_tokens == 0:
            # The server sent no usage (some OpenAI-compatible servers ignore stream_options): estimate
            # about four characters per token so budgets still bite.
            prompt_chars = sum(len(str(m.get("content") or "")) for m in messages)
            usage = TokenUsage(prompt_tokens=(prompt_chars + 3) // 4, completion_tokens=(len(answer) + 3) // 4)
        total = usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
        cost = self._cost(cfg, usage.prompt_tokens, usage.completion_tokens)
        usage = TokenUsage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=total,
            cost_usd=cost,
        )
        if self.metrics is not None:
            self.metrics.llm_tokens.labels(cfg.name, "prompt").inc(usage.prompt_tokens)
            self.metrics.llm_tokens.labels(cfg.name, "completion").inc(usage.completion_tokens)
            self.metrics.llm_cost.labels(cfg.name).inc(cost)
        return usage

    def _cost(self, cfg: ModelConfig, prompt_tokens: int, completion_tokens: int) -> float:
        """litellm's price from its bundled (offline) price map; 0 for models it does not know."""
        litellm = runtime.module_if_loaded()
        if cfg.model in self._unpriced or litellm is None:
            return 0.0
        try:
            prompt_cost, completion_cost = litellm.cost_per_token(
                model=cfg.model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
            return max(0.0, float(prompt_cost) + float(completion_cost))
        except Exception:
            self._unpriced.add(cfg.model)
            return 0.0


# -- helpers ---------------------------------------------------------------------------------------------
async def _litellm() -> Any:
    """The configured litellm module; Unsupported when it is not installed."""
    try:
        return await runtime.litellm_module()
    except ImportError as exc:
        raise Unsupported(f"model access needs litellm, which failed to import: {exc}") from None


def _get(obj: Any, name: str) -> Any:
    """An attribute of a litellm object, or a key of a dict (litellm returns either)."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _usage_of(raw: Any) -> TokenUsage:
    if raw is None:
        return TokenUsage()
    prompt = int(_get(raw, "prompt_tokens") or 0)
    completion = int(_get(raw, "completion_tokens") or 0)
    total = int(_get(raw, "total_tokens") or prompt + completion)
    return TokenUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def _merge_call(calls: dict[int, dict[str, str]], delta: Any) -> None:
    """Fold one tool-call delta into the call at its index."""
    index = _get(delta, "index")
    index = int(index) if index is not None else len(calls)
    entry = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
    if _get(delta, "id"):
        entry["id"] = str(_get(delta, "id"))
    function = _get(delta, "function")
    if function is not None:
        if _get(function, "name") and not entry["name"]:
            entry["name"] = str(_get(function, "name"))
        if _get(function, "arguments"):
            entry["arguments"] += str(_get(function, "arguments"))


def _finished_call(entry: dict[str, str]) -> ToolCallRequest:
    return ToolCallRequest(
        id=entry["id"] or f"call_{uuid.uuid4().hex[:12]}",
        name=entry["name"],
        arguments=entry["arguments"] or "{}",
    )


def _chat_from_response(model: str, response: Any) -> ChatResult:
    choices = _get(response, "choices") or []
    message = _get(choices[0], "message") if choices else None
    calls = [
        ToolCallRequest(
            id=str(_get(call, "id") or f"call_{uuid.uuid4().hex[:12]}"),
            name=str(_get(_get(call, "function"), "name") or ""),
            arguments=str(_get(_get(call, "function"), "arguments") or "{}"),
        )
        for call in (_get(message, "tool_calls") or [])
    ]
    return ChatResult(
        model=model,
        text=str(_get(message, "content") or ""),
        tool_calls=calls,
        usage=_usage_of(_get(response, "usage")),
        finish_reason=_get(choices[0], "finish_reason") if choices else None,
    )


def _classify(litellm: Any, exc: BaseException, *, retryable: bool) -> _AttemptFailed:
    """Sort a failed attempt into an outcome for metrics and the retry decision."""
    if isinstance(exc, _AttemptFailed):
        return exc
    outcome: Outcome
    status = getattr(exc, "status_code", None)
    timeout_types = tuple(t for t in (getattr(litellm, "Timeout", None),) if isinstance(t, type))
    connection_types = tuple(t for t in (getattr(litellm, "APIConnectionError", None),) if isinstance(t, type))
    openai = getattr(getattr(litellm, "exceptions", None), "openai", None)
    if openai is not None:
        timeout_types += tuple(t for t in (getattr(openai, "APITimeoutError", None),) if isinstance(t, type))
        connection_types += tuple(t for t in (getattr(openai, "APIConnectionError", None),) if isinstance(t, type))
    if isinstance(exc, TimeoutError) or (timeout_types and isinstance(exc, timeout_types)):
        outcome = "timeout"
    elif status == 429:
        outcome = "rate_limited"
    elif isinstance(status, int) and status >= 500:
        outcome = "server_error"
    elif (connection_types and isinstance(exc, connection_types)) or isinstance(exc, ConnectionError):
        outcome = "connection_error"
    else:
        outcome = "error"
    return _AttemptFailed(outcome, exc, retryable)


def _retry_after(cause: BaseException) -> float | None:
    response = getattr(cause, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(getattr(exc, "message", None) or exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _upstream_error(cfg: ModelConfig, failure: _AttemptFailed, retries: int) -> UpstreamFailure:
    status = getattr(failure.cause, "status_code", None)
    data: dict[str, Any] = {"model": cfg.name, "reason": failure.outcome, "retries": retries}
    if isinstance(status, int):
        data["status"] = status
    return UpstreamFailure(f"model {cfg.name!r} failed: {_short(failure.cause)}", data=data)
