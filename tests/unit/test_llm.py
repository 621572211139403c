"""Model access through the real litellm request path, against a scripted OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest
from support.scripted_llm import ScriptedCall, ScriptedLLM, error, hang, text, tool_calls

from gateway.config import ModelConfig
from gateway.errors import NotFound, Timeout, Unsupported, UpstreamFailure
from gateway.llm import NO_MODEL_MESSAGE, LLMService
from gateway.llm import runtime as llm_runtime
from gateway.metrics import Metrics

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

KEY_ENV = "SCRIPTED_LLM_KEY"


@pytest.fixture
async def server() -> AsyncIterator[ScriptedLLM]:
    async with ScriptedLLM() as llm:
        yield llm


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-scripted")


def model(server: ScriptedLLM, **overrides: object) -> ModelConfig:
    fields: dict[str, object] = {
        "name": "m",
        "model": "openai/scripted-model",
        "api_base": server.base_url,
        "api_key_env": KEY_ENV,
        "timeout_seconds": 5.0,
        "max_retries": 2,
        **overrides,
    }
    return ModelConfig.model_validate(fields)


def service(server: ScriptedLLM, metrics: Metrics | None = None, **overrides: object) -> LLMService:
    return LLMService([model(server, **overrides)], metrics, backoff_initial=0.001, backoff_max=0.01)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_plain_answer_goes_through_litellm(server: ScriptedLLM) -> None:
    server.push(text("hello there", prompt_tokens=7, completion_tokens=3))
    result = await service(server, params={"temperature": 0.2}).chat("m", [{"role": "user", "content": "hi"}])
    assert result.text == "hello there"
    assert result.tool_calls == []
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (7, 3, 10)
    assert result.usage.cost_usd == 0.0  # an unknown model has no offline price
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-scripted"
    assert request.body["model"] == "scripted-model"
    assert request.body["messages"] == [{"role": "user", "content": "hi"}]
    assert request.body["temperature"] == 0.2


async def test_litellm_is_configured_offline(server: ScriptedLLM) -> None:
    server.push(text("ok"))
    await service(server).chat("m", [{"role": "user", "content": "hi"}])
    litellm = llm_runtime.module_if_loaded()
    assert litellm is not None
    assert llm_runtime.loaded()
    assert litellm.callbacks == [] and litellm.success_callback == []
    assert litellm.disable_aiohttp_transport is True


async def test_streaming_delivers_text_deltas_in_order(server: ScriptedLLM) -> None:
    server.push(text("one two three", pieces=3, prompt_tokens=4, completion_tokens=6))
    deltas: list[str] = []
    result = await service(server).chat("m", [{"role": "user", "content": "count"}], stream=True, on_text=deltas.append)
    assert len(deltas) == 3
    assert "".join(deltas) == "one two three" == result.text
    assert result.usage.total_tokens == 10
    assert server.requests[0].body["stream"] is True
    assert server.requests[0].body["stream_options"] == {"include_usage": True}


async def test_streamed_tool_call_deltas_are_assembled(server: ScriptedLLM) -> None:
    server.push(
        tool_calls(
            ScriptedCall("read_file", {"path": "src/a.py"}, id="call_a"),
            ScriptedCall("search", {"query": "needle", "regex": False}, id="call_b"),
        )
    )
    tools = [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}]
    result = await service(server).chat("m", [{"role": "user", "content": "go"}], tools=tools, stream=True)
    assert [(c.id, c.name) for c in result.tool_calls] == [("call_a", "read_file"), ("call_b", "search")]
    assert result.tool_calls[0].arguments == '{"path": "src/a.py"}'
    assert result.tool_calls[1].arguments == '{"query": "needle", "regex": false}'
    assert result.finish_reason == "tool_calls"
    assert server.requests[0].body["tools"] == tools


async def test_rate_limited_then_success_is_retried(server: ScriptedLLM) -> None:
    metrics = Metrics()
    server.push(error(429, "slow down"), text("finally"))
    result = await service(server, metrics).chat("m", [{"role": "user", "content": "hi"}])
    assert result.text == "finally"
    assert len(server.requests) == 2
    assert sample(metrics, "gateway_llm_requests_total", model="m", status="rate_limited") == 1
    assert sample(metrics, "gateway_llm_requests_total", model="m", status="ok") == 1


async def test_server_error_then_success_is_retried_when_streaming(server: ScriptedLLM) -> None:
    metrics = Metrics()
    server.push(error(500, "boom"), text("recovered"))
    deltas: list[str] = []
    result = await service(server, metrics).chat(
        "m", [{"role": "user", "content": "hi"}], stream=True, on_text=deltas.append
    )
    assert result.text == "recovered" == "".join(deltas)
    assert len(server.requests) == 2
    assert sample(metrics, "gateway_llm_requests_total", model="m", status="server_error") == 1


async def test_retries_give_up_with_upstream_failure(server: ScriptedLLM) -> None:
    server.push(error(503), error(503), error(503))
    with pytest.raises(UpstreamFailure) as info:
        await service(server, max_retries=2).chat("m", [{"role": "user", "content": "hi"}])
    assert info.value.data["status"] == 503
    assert info.value.data["retries"] == 2
    assert len(server.requests) == 3


async def test_client_errors_are_not_retried(server: ScriptedLLM) -> None:
    server.push(error(400, "bad request body"), text("never"))
    with pytest.raises(UpstreamFailure, match="bad request body"):
        await service(server).chat("m", [{"role": "user", "content": "hi"}])
    assert len(server.requests) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_hung_server_times_out(server: ScriptedLLM, stream: bool) -> None:
    metrics = Metrics()
    server.push(hang(), text("too late"))
    started = time.monotonic()
    with pytest.raises(Timeout) as info:
        await service(server, metrics, timeout_seconds=0.5).chat(
            "m", [{"role": "user", "content": "hi"}], stream=stream
        )
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 3.0
    assert info.value.data == {"model": "m", "timeout_seconds": 0.5}
    assert len(server.requests) == 1  # a timeout is not retried
    await asyncio.wait_for(server.hang_ended.wait(), 5)  # the request was abandoned, not left open
    assert sample(metrics, "gateway_llm_requests_total", model="m", status="timeout") == 1


async def test_usage_is_recorded_in_metrics(server: ScriptedLLM) -> None:
    metrics = Metrics()
    llm = service(server, metrics)
    server.push(text("a", prompt_tokens=11, completion_tokens=2), text("b", prompt_tokens=5, completion_tokens=4))
    await llm.chat("m", [{"role": "user", "content": "1"}])
    await llm.chat("m", [{"role": "user", "content": "2"}], stream=True)
    assert sample(metrics, "gateway_llm_tokens_total", model="m", kind="prompt") == 16
    assert sample(metrics, "gateway_llm_tokens_total", model="m", kind="completion") == 6
    assert metrics.registry.get_sample_value("gateway_llm_cost_usd_total", {"model": "m"}) == 0.0
    assert sample(metrics, "gateway_llm_requests_total", model="m", status="ok") == 2
    assert b"gateway_llm_tokens_total" in metrics.render()


async def test_cost_comes_from_the_offline_price_map(server: ScriptedLLM) -> None:
    metrics = Metrics()
    server.push(text("priced", prompt_tokens=1000, completion_tokens=1000))
    llm = service(server, metrics, model="openai/gpt-4o-mini")
    result = await llm.chat("m", [{"role": "user", "content": "hi"}])
    assert result.usage.cost_usd > 0
    assert metrics.registry.get_sample_value("gateway_llm_cost_usd_total", {"model": "m"}) == result.usage.cost_usd


async def test_fill_in_the_middle_uses_the_completions_endpoint(server: ScriptedLLM) -> None:
    server.push(text("name: str"))
    result = await service(server, fim=True).complete_text(
        "m", "def greet(", suffix="):\n    pass\n", params={"max_tokens": 16}
    )
    assert result.text == "name: str"
    assert result.usage.total_tokens == 15
    [request] = server.requests
    assert request.path == "/v1/completions"
    assert request.body["prompt"] == "def greet("
    assert request.body["suffix"] == "):\n    pass\n"
    assert request.body["max_tokens"] == 16


async def test_cancelling_a_call_aborts_the_request(server: ScriptedLLM) -> None:
    metrics = Metrics()
    server.push(hang())
    call = asyncio.create_task(service(server, metrics).chat("m", [{"role": "user", "content": "hi"}], stream=True))
    await asyncio.wait_for(server.hanging.wait(), 10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(call, 5)
    await asyncio.wait_for(server.hang_ended.wait(), 5)
    assert sample(metrics, "gateway_llm_requests_total", model="m", status="cancelled") == 1


async def test_no_model_configured_is_unsupported() -> None:
    llm = LLMService([])
    assert not llm.configured
    with pytest.raises(Unsupported, match=r"no model configured: add \[\[models\]\] to the config") as info:
        await llm.chat(None, [{"role": "user", "content": "hi"}])
    assert info.value.message == NO_MODEL_MESSAGE


async def test_unknown_model_and_missing_key_are_clear(server: ScriptedLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    llm = service(server)
    with pytest.raises(NotFound, match="no model named 'other'"):
        await llm.chat("other", [{"role": "user", "content": "hi"}])
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(Unsupported, match=KEY_ENV):
        await llm.chat("m", [{"role": "user", "content": "hi"}])
    assert server.requests == []


def test_gateway_without_models_never_imports_litellm(tmp_path: object) -> None:
    code = (
        "import sys\n"
        "from gateway.app import build_gateway\n"
        "from gateway.config import GatewayConfig\n"
        f"gw = build_gateway(GatewayConfig.model_validate({{'server': {{'workspace': {str(tmp_path)!r}}}}}))\n"
        "gw.start_llm()\n"
        "assert gw.llm is not None and not gw.llm.configured\n"
        "print('litellm' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_building_a_gateway_with_models_defers_the_litellm_import(tmp_path: object) -> None:
    code = (
        "import sys\n"
        "from gateway.app import build_gateway\n"
        "from gateway.config import GatewayConfig\n"
        "config = GatewayConfig.model_validate({\n"
        f"    'server': {{'workspace': {str(tmp_path)!r}}},\n"
        "    'models': [{'name': 'm', 'model': 'openai/x', 'api_base': 'http://127.0.0.1:9/v1'}],\n"
        "    'agents': [{'name': 'helper', 'model': 'm', 'tools': ['read_file']}],\n"
        "    'inline_completion': {'model': 'm'},\n"
        "})\n"
        "gw = build_gateway(config)\n"
        "assert 'run_agent' in gw.registry and 'agent.helper' in gw.registry and 'complete_inline' in gw.registry\n"
        "print('litellm' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
