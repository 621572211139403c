"""AI inline completion: debounce per document, the LRU cache, fill-in-the-middle vs chat form."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.scripted_llm import ScriptedLLM, text

from gateway.analysis.models import DocumentSymbol
from gateway.capabilities import inline_completion
from gateway.capabilities.analysis import DocumentSymbolsResult, PagedDocumentParams
from gateway.capabilities.inline_completion import CURSOR, InlineCompletionResult
from gateway.config import InlineCompletionConfig, ModelConfig
from gateway.errors import Cancelled
from gateway.events import InMemoryBus
from gateway.execution import CallContext, Core, ExecutionContext, ExecutionStatus
from gateway.llm import LLMService
from gateway.registry import Registry
from gateway.workspace import Position, Range, Workspace

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

KEY_ENV = "SCRIPTED_LLM_KEY"
SOURCE = "class Greeter:\n    def greet(self, name):\n        return \n"


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-scripted")


@pytest.fixture
async def server() -> AsyncIterator[ScriptedLLM]:
    async with ScriptedLLM() as llm:
        yield llm


def _range(start: int, end: int) -> Range:
    return Range(start=Position(line=start, character=0), end=Position(line=end, character=0))


def build(
    root: Path, server: ScriptedLLM, *, fim: bool = False, debounce_ms: int = 0, cache_size: int = 16
) -> tuple[Core, list[str]]:
    """A core with `complete_inline` and a stand-in `document_symbols`; returns the core and the paths asked."""
    registry = Registry()
    asked: list[str] = []

    @registry.register("document_symbols", PagedDocumentParams, DocumentSymbolsResult)
    async def document_symbols(ctx: ExecutionContext, params: PagedDocumentParams) -> DocumentSymbolsResult:
        """Stand-in for the code intelligence engine."""
        asked.append(params.path)
        method = DocumentSymbol(name="greet", kind="method", range=_range(1, 3), selection_range=_range(1, 1))
        cls = DocumentSymbol(
            name="Greeter", kind="class", range=_range(0, 3), selection_range=_range(0, 0), children=[method]
        )
        return DocumentSymbolsResult(items=[cls])

    model = ModelConfig(name="coder", model="openai/scripted", api_base=server.base_url, api_key_env=KEY_ENV, fim=fim)
    llm = LLMService([model], backoff_initial=0.001)
    config = InlineCompletionConfig(model="coder", debounce_ms=debounce_ms, cache_size=cache_size, max_tokens=32)
    assert inline_completion.register(registry, llm, config) is not None
    core = Core(registry, Workspace(root), InMemoryBus())
    core.workspace.open("src/greet.py", SOURCE, version=1)
    return core, asked


async def complete(core: Core, **params: Any) -> InlineCompletionResult:
    result = await asyncio.wait_for(core.execute(CallContext(), "complete_inline", params), 20)
    assert isinstance(result, InlineCompletionResult)
    return result


async def test_chat_form_sends_prefix_suffix_and_symbols(tmp_path: Path, server: ScriptedLLM) -> None:
    core, asked = build(tmp_path, server)
    server.push(text("```python\nf'Hello, {name}!'\n```"))
    result = await complete(core, path="src/greet.py", line=2, character=15)
    assert result.model == "coder" and result.cached is False
    [item] = result.items
    assert item.insert_text == "f'Hello, {name}!'"
    cursor = Position(line=2, character=15)
    assert item.range == Range(start=cursor, end=cursor)
    assert asked == ["src/greet.py"]
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["max_tokens"] == 32
    prompt = request.body["messages"][1]["content"]
    assert f"        return {CURSOR}\n" in prompt
    assert "cursor is inside: class Greeter > method greet" in prompt


async def test_fim_form_uses_prompt_and_suffix(tmp_path: Path, server: ScriptedLLM) -> None:
    core, asked = build(tmp_path, server, fim=True)
    server.push(text("name.upper()"))
    result = await complete(core, path="src/greet.py", line=2, character=15, max_tokens=8)
    assert [i.insert_text for i in result.items] == ["name.upper()"]
    [request] = server.requests
    assert request.path == "/v1/completions"
    assert request.body["prompt"] == "class Greeter:\n    def greet(self, name):\n        return "
    assert request.body["suffix"] == "\n"
    assert request.body["max_tokens"] == 8
    assert asked == []  # the FIM prompt is the code itself


async def test_positions_count_code_points(tmp_path: Path, server: ScriptedLLM) -> None:
    core, _ = build(tmp_path, server, fim=True)
    core.workspace.open("emoji.py", "s = '😀' + \nrest\n", version=1)
    server.push(text("'x'"))
    await complete(core, path="emoji.py", line=0, character=10)
    assert server.requests[0].body["prompt"] == "s = '😀' + "
    assert server.requests[0].body["suffix"] == "\nrest\n"


async def test_same_place_again_is_answered_from_the_cache(tmp_path: Path, server: ScriptedLLM) -> None:
    core, _ = build(tmp_path, server, fim=True)
    server.push(text("name"))
    first = await complete(core, path="src/greet.py", line=2, character=15)
    second = await complete(core, path="src/greet.py", line=2, character=15)
    assert first.cached is False and second.cached is True
    assert second.items == first.items
    assert len(server.requests) == 1


async def test_cache_evicts_least_recently_used(tmp_path: Path, server: ScriptedLLM) -> None:
    core, _ = build(tmp_path, server, fim=True, cache_size=1)
    server.push(text("a"), text("b"), text("c"))
    await complete(core, path="src/greet.py", line=2, character=15)
    await complete(core, path="src/greet.py", line=1, character=4)  # evicts the first
    again = await complete(core, path="src/greet.py", line=2, character=15)
    assert again.cached is False and [i.insert_text for i in again.items] == ["c"]
    assert len(server.requests) == 3


async def test_a_newer_request_for_the_document_cancels_the_older(tmp_path: Path, server: ScriptedLLM) -> None:
    core, _ = build(tmp_path, server, fim=True, debounce_ms=200)
    server.push(text("second"))
    first = core.start(CallContext(), "complete_inline", {"path": "src/greet.py", "line": 2, "character": 15})
    second = core.start(CallContext(), "complete_inline", {"path": "src/greet.py", "line": 1, "character": 8})
    with pytest.raises(Cancelled):
        await asyncio.wait_for(first.wait(), 5)
    assert first.record.status is ExecutionStatus.CANCELLED
    result = await asyncio.wait_for(second.wait(), 10)
    assert isinstance(result, InlineCompletionResult)
    assert [i.insert_text for i in result.items] == ["second"]
    assert len(server.requests) == 1
    assert server.requests[0].body["prompt"] == "class Greeter:\n    def "


async def test_other_documents_are_not_debounced_together(tmp_path: Path, server: ScriptedLLM) -> None:
    core, _ = build(tmp_path, server, fim=True, debounce_ms=50)
    core.workspace.open("other.py", "x = ", version=1)
    server.push(text("1"), text("2"))
    one = core.start(CallContext(), "complete_inline", {"path": "src/greet.py", "line": 2, "character": 15})
    two = core.start(CallContext(), "complete_inline", {"path": "other.py", "line": 0, "character": 4})
    results = await asyncio.wait_for(asyncio.gather(one.wait(), two.wait()), 10)
    assert all(isinstance(r, InlineCompletionResult) and r.items for r in results)
    assert len(server.requests) == 2


async def test_blank_answers_give_no_items(tmp_path: Path, server: ScriptedLLM) -> None:
    core, _ = build(tmp_path, server)
    server.push(text("  \n"))
    result = await complete(core, path="src/greet.py", line=2, character=15)
    assert result.items == []


def test_not_registered_without_a_model() -> None:
    registry = Registry()
    assert inline_completion.register(registry, LLMService([]), InlineCompletionConfig()) is None
    assert "complete_inline" not in registry
