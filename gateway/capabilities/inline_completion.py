"""AI inline completion (`complete_inline`): the model writes the text at the cursor.

The prompt is the text before and after the cursor plus the symbols around it from the code
intelligence engine. A model with `fim = true` gets the fill-in-the-middle form (a text completion
with `prompt` and `suffix`); any other model gets a chat prompt with a cursor marker. Requests are
debounced per document: the latest request for a document cancels the one before it (which ends as
Cancelled), and waits `debounce_ms` before calling the model. Answers are kept in an LRU cache keyed by
(model, prefix tail, suffix head), so asking again at the same place costs nothing. Registered only
when `[inline_completion] model` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from typing import Any

from pydantic import BaseModel, Field

from ..analysis.models import DocumentSymbol
from ..config import InlineCompletionConfig, ModelConfig
from ..errors import GatewayError, NotFound
from ..execution import CallContext, ExecutionContext
from ..identity import Role
from ..llm.service import LLMService
from ..registry import Registry
from ..workspace import Document, Position, Range, guess_language

PREFIX_CHARS = 3000
SUFFIX_CHARS = 1000
SYMBOLS_MAX = 40
CURSOR = "<|cursor|>"
CHAT_SYSTEM_PROMPT = (
    "You are a code completion engine. The user shows a file with the marker " + CURSOR + " at the cursor. "
    "Reply with only the text to insert at the marker: no explanation, no markdown fences, and do not repeat "
    "the code before or after the marker. Reply with nothing when nothing useful fits."
)


class InlineCompletionParams(BaseModel):
    path: str = Field(description="Path relative to the workspace root")
    line: int = Field(ge=0, description="0-based line")
    character: int = Field(ge=0, description="0-based character, in code points")
    max_tokens: int | None = Field(None, ge=1, le=4096, description="Cap on the completion's length")


class InlineCompletionItem(BaseModel):
    insert_text: str = Field(description="The text to insert")
    range: Range = Field(description="The range it replaces (empty: an insertion at the cursor)")


class InlineCompletionResult(BaseModel):
    items: list[InlineCompletionItem] = Field(default_factory=list)
    cached: bool = Field(False, description="The answer came from the cache, not the model")
    model: str = Field(description="The configured model's name")


CacheKey = tuple[str, str, str]


class InlineCompleter:
    """The state behind `complete_inline`: the latest request per document and the answer cache."""

    def __init__(self, llm: LLMService, config: InlineCompletionConfig) -> None:
        if config.model is None:
            raise ValueError("inline completion needs [inline_completion] model")
        self.llm = llm
        self.config = config
        self.model_name = config.model
        self._latest: dict[str, str] = {}
        self._cache: OrderedDict[CacheKey, str] = OrderedDict()

    # -- cache ---------------------------------------------------------------------------------------
    def cached(self, key: CacheKey) -> str | None:
        text = self._cache.get(key)
        if text is not None:
            self._cache.move_to_end(key)
        return text

    def remember(self, key: CacheKey, text: str) -> None:
        if self.config.cache_size <= 0:
            return
        self._cache[key] = text
        self._cache.move_to_end(key)
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)

    # -- the capability ----------------------------------------------------------------------------------
    async def complete(self, ctx: ExecutionContext, params: InlineCompletionParams) -> InlineCompletionResult:
        """Supersede the document's previous request, then answer from the cache or the model."""
        cfg = self.llm.model(self.model_name)
        rel, _ = ctx.workspace.locate(params.path)
        previous = self._latest.get(rel)
        self._latest[rel] = ctx.id
        if previous is not None and previous != ctx.id:
            with contextlib.suppress(NotFound):
                ctx.core.get_execution(previous).cancel()
        try:
            return await self._complete(ctx, params, cfg, rel)
        finally:
            if self._latest.get(rel) == ctx.id:
                del self._latest[rel]

    async def _complete(
        self, ctx: ExecutionContext, params: InlineCompletionParams, cfg: ModelConfig, rel: str
    ) -> InlineCompletionResult:
        doc = await _document(ctx, rel)
        offset = doc.offset_at(Position(line=params.line, character=params.character))
        cursor = doc.position_at(offset)
        prefix = doc.text[max(0, offset - PREFIX_CHARS) : offset]
        suffix = doc.text[offset : offset + SUFFIX_CHARS]
        key: CacheKey = (cfg.name, prefix, suffix)
        hit = self.cached(key)
        if hit is not None:
            return self._result(hit, cursor, cached=True)
        if self.config.debounce_ms > 0:
            # The debounce window: a newer request for this document cancels this one while it waits.
            await asyncio.sleep(self.config.debounce_ms / 1000)
        max_tokens = params.max_tokens or self.config.max_tokens
        remaining = max(0.001, ctx.deadline - time.monotonic())
        if cfg.fim:
            answer = await self.llm.complete_text(
                cfg.name, prefix, suffix=suffix, params={"max_tokens": max_tokens}, timeout=remaining
            )
            text = answer.text
        else:
            symbols = await _nearby_symbols(ctx, rel, cursor)
            chat = await self.llm.chat(
                cfg.name,
                _chat_messages(rel, doc.language_id, prefix, suffix, symbols),
                params={"max_tokens": max_tokens},
                timeout=remaining,
            )
            text = _strip_fences(chat.text)
        self.remember(key, text)
        return self._result(text, cursor, cached=False)

    def _result(self, text: str, cursor: Position, *, cached: bool) -> InlineCompletionResult:
        items = (
            [] if not text.strip() else [InlineCompletionItem(insert_text=text, range=Range(start=cursor, end=cursor))]
        )
        return InlineCompletionResult(items=items, cached=cached, model=self.model_name)


async def _document(ctx: ExecutionContext, rel: str) -> Document:
    """The open document, or the file on disk read in a worker thread."""
    open_doc = ctx.workspace.documents.get(rel)
    if open_doc is not None:
        return open_doc
    text, _ = await asyncio.to_thread(ctx.workspace.text_of, rel)
    return Document(rel, text, 0, guess_language(rel))


def _contains(rng: Range, pos: Position) -> bool:
    start, end = (rng.start.line, rng.start.character), (rng.end.line, rng.end.character)
    return start <= (pos.line, pos.character) <= end


async def _nearby_symbols(ctx: ExecutionContext, rel: str, cursor: Position) -> list[str]:
    """Lines like `function outer > method inner` for the symbols enclosing the cursor, then the file's others."""
    if "document_symbols" not in ctx.core.registry:
        return []
    call = CallContext(
        identity=ctx.identity,
        door=ctx.call.door,
        timeout=max(0.001, min(5.0, ctx.deadline - time.monotonic())),
        request_id=ctx.call.request_id,
        meta={**ctx.call.meta, "parent_execution": ctx.id},
    )
    try:
        answer = await ctx.core.execute(call, "document_symbols", {"path": rel})
    except GatewayError:
        ctx.check_cancelled()
        return []
    symbols: list[DocumentSymbol] = list(getattr(answer, "items", []))
    lines: list[str] = []
    chain: list[str] = []
    level = symbols
    while True:
        inside = next((s for s in level if _contains(s.range, cursor)), None)
        if inside is None:
            break
        chain.append(f"{inside.kind} {inside.name}")
        level = inside.children
    if chain:
        lines.append("cursor is inside: " + " > ".join(chain))
    for symbol in symbols[:SYMBOLS_MAX]:
        detail = f" {symbol.detail}" if symbol.detail else ""
        lines.append(f"{symbol.kind} {symbol.name}{detail} (line {symbol.range.start.line + 1})")
    return lines


def _chat_messages(rel: str, language: str, prefix: str, suffix: str, symbols: list[str]) -> list[dict[str, Any]]:
    parts = [f"File: {rel} ({language})"]
    if symbols:
        parts.append("Symbols in this file:\n" + "\n".join(f"- {line}" for line in symbols))
    parts.append(f"```{language}\n{prefix}{CURSOR}{suffix}\n```")
    return [{"role": "system", "content": CHAT_SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]


def _strip_fences(text: str) -> str:
    """Drop a markdown code fence a chat model wrapped its answer in, and any echoed cursor marker."""
    stripped = text.strip()
    if len(stripped) >= 6 and stripped.startswith("```") and stripped.endswith("```"):
        first, newline, rest = stripped[3:-3].partition("\n")
        text = (rest if newline else first).strip("\n")
    return text.replace(CURSOR, "")


def register(registry: Registry, llm: LLMService, config: InlineCompletionConfig) -> InlineCompleter | None:
    """Register `complete_inline` when `[inline_completion] model` is set; returns its state, or None."""
    if config.model is None:
        return None
    completer = InlineCompleter(llm, config)

    @registry.register(
        "complete_inline",
        InlineCompletionParams,
        InlineCompletionResult,
        lsp_method="textDocument/inlineCompletion",
        required_role=Role.VIEWER,
        read_only=True,
        idempotent=True,
        tags=("completion", "ai"),
    )
    async def complete_inline(ctx: ExecutionContext, params: InlineCompletionParams) -> InlineCompletionResult:
        """Suggest the code to insert at a position, written by the configured model.

        Uses the text around the cursor and the file's symbols. A newer request for the same document
        cancels an older one; repeated requests at the same place are answered from a cache.
        """
        return await completer.complete(ctx, params)

    return completer
