"""Benchmark: what the gateway adds to an agent step, and how many runs per second the durable queue moves.

1. Agent steps, in process. The gateway core (`build_gateway(load_config(...))`, started) runs `run_agent`
   with its model pointed at the scripted OpenAI-compatible server of the tests (tests/support), which
   answers at once, in this event loop. Four scripts: a final answer (1 step), one `read_file` then the
   answer (2 steps), four `read_file` calls in one reply (2 steps), three `read_file` calls in turn (4
   steps). After each run, the exact requests the run sent are replayed (with the same replies) through
   - `litellm.acompletion` streamed, no gateway at all: the peer, i.e. the model calls' own cost;
   - the gateway's model client (`gw.llm.chat`, streamed, as the agent loop calls it);
   - a bare aiohttp POST: the HTTP floor of the scripted server.
   Gateway overhead = agent run - the litellm replay of the same calls; per step and per tool call.
   litellm's import (seconds) happens before anything is timed.
2. The durable run queue with a trivial fake `run_agent` (one step, one tool call reported, a final answer,
   no model: the queue itself is measured), with the queue's default settings, 1 and 4 workers per
   instance: embedded (SQLite), and on Redis with a Redis event bus as `redis_url` gives (one instance; two
   instances in this process sharing one Redis; two instances in two processes, the second being this file
   with --serve-queue). Idle latency (one run at a time, submit -> its final status event), then a burst
   of runs submitted back to back: runs/s and submit -> finished p50/p99 (a burst's latency includes the
   wait behind the backlog). The peer is the same fake `run_agent` executed through the core, no queue.

A redis-server (this machine's binary, on a free port, no persistence) is started and stopped by the run.

    .venv/bin/python bench/agents.py [--iterations 200] [--runs 200] [--idle 50]
"""

from __future__ import annotations

# ruff: noqa: E402 - the imports below come after sys.path is fixed
import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and bench/mcp.py would shadow the MCP SDK's `mcp`
# package (litellm imports it). Move the folder to the end: `_common` is still found, `mcp` is the SDK.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]

import argparse
import asyncio
import contextlib
import functools
import gc
import importlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from _common import machine, pct, ratio

from gateway.agents.models import AgentResult, AgentToolCall, RunAgentParams
from gateway.app import Gateway, build_gateway
from gateway.config import QueueConfig, load_config
from gateway.events import EventBus, InMemoryBus, Subscription
from gateway.execution import CallContext, Core, ExecutionContext, ProgressReport
from gateway.identity import Identity, Role
from gateway.llm import runtime
from gateway.llm.models import TokenUsage
from gateway.middleware import auth_middleware
from gateway.redis_bus import RedisBus
from gateway.registry import Registry
from gateway.runs import RUNS_TOPIC, RunQueue, SubmitRun
from gateway.runs.redis_queue import RedisRunQueue
from gateway.runs.sqlite_queue import SqliteRunQueue
from gateway.workspace import Workspace

ROOT = BENCH.parent
KEY_ENV = "BENCH_SCRIPTED_LLM_KEY"
KEY = "sk-scripted"
MODEL = "openai/scripted"
MODULE = "src/module.py"
ALICE = Identity(subject="alice", method="api_key", role=Role.MEMBER)
REDIS_ONE = "Redis, 1 instance"
REDIS_SHARED = "Redis, 2 in 1 process"
REDIS_PROCESSES = "Redis, 2 processes"
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def scripted_llm() -> Any:
    """tests/support/scripted_llm.py, the scripted OpenAI-compatible server the tests use."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    return importlib.import_module("support.scripted_llm")


SL = scripted_llm()


def config_text(workspace: Path, base_url: str) -> str:
    return f"""
[server]
workspace = {json.dumps(str(workspace))}

[[models]]
name = "m"
model = "{MODEL}"
api_base = "{base_url}"
api_key_env = "{KEY_ENV}"
max_retries = 0
timeout_seconds = 30

[[agents]]
name = "reader"
description = "Reads the code it is asked about"
model = "m"
system_prompt = "You read code. Use read_file to look at files."
tools = ["read_file"]
temperature = 0.2
max_steps = 8

[queue]
workers = 1
"""


# -- part 1: agent steps ---------------------------------------------------------------------------------
@dataclass
class Scenario:
    label: str
    replies: Callable[[], list[Any]]
    steps: int
    tools: int
    run: list[float] = field(default_factory=list)
    litellm: list[float] = field(default_factory=list)
    service: list[float] = field(default_factory=list)
    http: list[float] = field(default_factory=list)

    def overhead(self, p: float) -> float:
        """Agent run minus the litellm replay of its calls, at percentile `p`, in ms."""
        return pct(self.run, p) - pct(self.litellm, p)

    def paired(self, p: float) -> float:
        """Percentile `p` over iterations of (run - its own replay), in ms."""
        return pct([r - m for r, m in zip(self.run, self.litellm, strict=True)], p)


def scenarios() -> list[Scenario]:
    def read() -> Any:
        return SL.tool_call("read_file", {"path": MODULE})

    def four() -> Any:
        return SL.tool_calls(*(SL.ScriptedCall("read_file", {"path": MODULE}) for _ in range(4)))

    return [
        Scenario("final answer", lambda: [SL.text("It is a module.")], steps=1, tools=0),
        Scenario("1 read_file", lambda: [read(), SL.text("It defines f0..f199.")], steps=2, tools=1),
        Scenario("4 read_file at once", lambda: [four(), SL.text("It defines f0..f199.")], steps=2, tools=4),
        Scenario("3 read_file in turn", lambda: [read(), read(), read(), SL.text("Done.")], steps=4, tools=3),
    ]


def replay_params(body: dict[str, Any]) -> dict[str, Any]:
    """The sampling parameters a recorded request carried (what is not messages, tools, model or streaming)."""
    skip = {"model", "messages", "tools", "stream", "stream_options"}
    return {k: v for k, v in body.items() if k not in skip}


def ignore(_: str) -> None:
    """A text-delta listener that does nothing."""


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    await call()
    return time.perf_counter() - t0


class StepBench:
    """The started gateway, the scripted server, and one way to replay a request per client."""

    def __init__(self, gw: Gateway, server: Any, litellm: Any, http: aiohttp.ClientSession) -> None:
        self.gw = gw
        self.server = server
        self.litellm = litellm
        self.http = http
        self.reports = 0

    def on_progress(self, report: ProgressReport) -> None:  # a door listening, as SSE or MCP would
        self.reports += 1

    async def run_agent(self) -> None:
        call = CallContext(on_progress=self.on_progress)
        params = {"agent": "reader", "input": f"What does {MODULE} define?", "context": {"path": MODULE}}
        result = await self.gw.core.execute(call, "run_agent", params)
        assert isinstance(result, AgentResult) and result.stop_reason == "final", result

    async def via_litellm(self, body: dict[str, Any]) -> None:
        response = await self.litellm.acompletion(
            model=MODEL,
            api_base=self.server.base_url,
            api_key=KEY,
            messages=body["messages"],
            tools=body.get("tools"),
            stream=True,
            stream_options={"include_usage": True},
            timeout=30,
            max_retries=0,
            num_retries=0,
            **replay_params(body),
        )
        async for _ in response:
            pass

    async def via_service(self, body: dict[str, Any]) -> None:
        assert self.gw.llm is not None
        await self.gw.llm.chat(
            "m", body["messages"], tools=body.get("tools"), params=replay_params(body), stream=True, on_text=ignore
        )

    async def via_http(self, body: dict[str, Any]) -> None:
        async with self.http.post(self.server.base_url + "/chat/completions", json=body) as resp:
            await resp.read()
            assert resp.status == 200, resp.status

    async def replay(
        self, scenario: Scenario, bodies: list[dict[str, Any]], how: Callable[..., Awaitable[None]]
    ) -> float:
        self.server.push(*scenario.replies())
        total = 0.0
        for body in bodies:
            total += await timed(functools.partial(how, body))
        return total

    async def iteration(self, scenario: Scenario, record: bool) -> None:
        self.server.requests.clear()
        self.server.push(*scenario.replies())
        run = await timed(self.run_agent)
        bodies = [r.body for r in self.server.requests]
        assert len(bodies) == scenario.steps, (scenario.label, len(bodies))
        lite = await self.replay(scenario, bodies, self.via_litellm)
        service = await self.replay(scenario, bodies, self.via_service)
        http = await self.replay(scenario, bodies, self.via_http)
        assert not self.server.script, "replies left over"
        if record:
            scenario.run.append(run)
            scenario.litellm.append(lite)
            scenario.service.append(service)
            scenario.http.append(http)


async def bench_steps(iterations: int, warmup: int) -> None:
    os.environ[KEY_ENV] = KEY
    with tempfile.TemporaryDirectory(prefix="bench-agents-") as tmp:
        workspace = Path(tmp) / "ws"
        (workspace / "src").mkdir(parents=True)
        module = workspace / MODULE
        module.write_text("".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(200)))
        async with SL.ScriptedLLM() as server:
            config_path = Path(tmp) / "gateway.toml"
            config_path.write_text(config_text(workspace, server.base_url))
            gw = build_gateway(load_config(config_path))
            await gw.start()
            try:
                t0 = time.perf_counter()
                litellm = await runtime.litellm_module()  # the import, once, before any timing
                imported = time.perf_counter() - t0
                async with aiohttp.ClientSession() as http:
                    bench = StepBench(gw, server, litellm, http)
                    plan = scenarios()
                    print(
                        f"litellm import {imported:.1f} s (not timed below); read_file of a {module.stat().st_size} "
                        f"byte file; {iterations} runs per script after {warmup} warm-up runs"
                    )
                    for scenario in plan:
                        for i in range(warmup + iterations):
                            await bench.iteration(scenario, record=i >= warmup)
                    read = functools.partial(gw.core.execute, CallContext(), "read_file", {"path": MODULE})
                    tool_alone = [await timed(read) for _ in range(warmup + iterations)][warmup:]
                    runs = len(plan) * (warmup + iterations)
                    print_steps(plan, tool_alone, bench.reports / runs)
            finally:
                await gw.close()


def print_steps(plan: list[Scenario], tool_alone: list[float], reports_per_run: float) -> None:
    print()
    print("times in ms; the three replay columns are the sum over the run's model calls (same requests, same replies)")
    head = (
        f"{'script':<20} | {'steps':>5} | {'tools':>5} | {'agent run':>15} | {'litellm (peer)':>15} | "
        f"{'gw.llm.chat':>15} | {'bare HTTP':>15}"
    )
    print(head)
    print(f"{'':<20} | {'':>5} | {'':>5} |" + " | ".join(f"{'p50':>7} {'p99':>7}" for _ in range(4)))
    print("-" * len(head))
    for s in plan:
        cells = " | ".join(f"{pct(v, 50):>7.2f} {pct(v, 99):>7.2f}" for v in (s.run, s.litellm, s.service, s.http))
        print(f"{s.label:<20} | {s.steps:>5} | {s.tools:>5} | {cells}")
    print()
    print("gateway overhead = agent run - litellm replay (ms); run/peer = agent run p50 / litellm replay p50")
    head = (
        f"{'script':<20} | {'ovh p50':>7} | {'ovh p99':>7} | {'pair p50':>8} | {'pair p99':>8} | {'per step':>8} | "
        f"{'per tool':>8} | {'run/peer':>8} | {'gw.llm.chat/peer':>16}"
    )
    print(head)
    print("-" * len(head))
    for s in plan:
        p50 = s.overhead(50)
        per_tool = f"{p50 / s.tools:>8.2f}" if s.tools else f"{'-':>8}"
        print(
            f"{s.label:<20} | {p50:>7.2f} | {s.overhead(99):>7.2f} | {s.paired(50):>8.2f} | {s.paired(99):>8.2f} | "
            f"{p50 / s.steps:>8.2f} | "
            f"{per_tool} | {ratio(pct(s.run, 50), pct(s.litellm, 50)):>8} | "
            f"{ratio(pct(s.service, 50), pct(s.litellm, 50)):>16}"
        )
    by = {s.label: s for s in plan}
    one, four, three = by["1 read_file"], by["4 read_file at once"], by["3 read_file in turn"]
    print()
    print("  ovh p50 = run p50 - litellm p50 (ovh p99 likewise: two independent tails, noisy, can go negative)")
    print("  pair p50/p99 = percentiles over runs of (run - its own replay, timed right after it)")
    print("  per step = ovh p50 / steps; per tool = ovh p50 / tool calls")
    print("  the scripted server shares this event loop: its time is in the run and in every replay alike")
    print(f"  progress reports per run: {reports_per_run:.1f} on average, each to a listening callback (a door's)")
    print("  from the p50 overheads:")
    print(f"    fixed cost of a run (1 step, no tool call):  {by['final answer'].overhead(50):.2f} ms")
    print(f"    each extra tool call in the same reply:      {(four.overhead(50) - one.overhead(50)) / 3:.2f} ms")
    print(f"    each extra step with its tool call:          {(three.overhead(50) - one.overhead(50)) / 2:.2f} ms")
    print(
        f"    read_file alone through core.execute:        {pct(tool_alone, 50):.2f} ms p50, "
        f"{pct(tool_alone, 99):.2f} ms p99"
    )


# -- part 2: the run queue ---------------------------------------------------------------------------------
def fake_core(root: Path, bus: EventBus) -> Core:
    """A Core whose only capability is a trivial `run_agent`, as in tests/unit/test_runs_queue.py."""
    registry = Registry()

    @registry.register("run_agent", RunAgentParams, AgentResult, required_role=Role.MEMBER, read_only=False)
    async def run_agent(ctx: ExecutionContext, params: RunAgentParams) -> AgentResult:
        """A trivial agent: one step, one tool call reported, a final answer; no model."""
        ctx.progress("step 1/1", 0.0, kind="step", agent=params.agent, step=1, max_steps=1)
        ctx.progress("calling read_file", 0.0, kind="tool_call", agent=params.agent, step=1, name="read_file")
        usage = TokenUsage(prompt_tokens=3, completion_tokens=2, total_tokens=5)
        ctx.progress("done", 100.0, kind="final", agent=params.agent, step=1, usage=usage.model_dump())
        call = AgentToolCall(name="read_file", ok=True, result_preview="...", step=1)
        return AgentResult(
            agent=params.agent,
            model="fake",
            output=f"done: {params.input}",
            steps=1,
            tool_calls=[call],
            usage=usage,
            stop_reason="final",
        )

    core = Core(registry, Workspace(root), bus)
    core.middleware = [auth_middleware(False)]
    return core


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[tuple[str, int]]:
    """A redis-server child on a free loopback port without persistence; yields its URL and pid, kills it after."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise RuntimeError("redis-server is not on PATH")
    port = free_port()
    argv = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    log = open(directory / "redis.log", "wb")  # noqa: SIM115 - closed below, after the process
    proc = subprocess.Popen([*argv, "--dir", str(directory)], cwd=directory, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not ping(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {(directory / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.01)  # readiness poll with a deadline
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        proc.kill()
        proc.wait(10)
        log.close()


class Finished:
    """Hears `run.status` events on every instance's bus; the first final status of each run, with its time."""

    def __init__(self, buses: list[EventBus]) -> None:
        self.done: dict[str, tuple[float, str]] = {}
        self.changed = asyncio.Event()
        self.subs = [bus.subscribe(RUNS_TOPIC, maxsize=1_000_000) for bus in buses]
        self.tasks = [asyncio.create_task(self._listen(sub)) for sub in self.subs]

    async def _listen(self, sub: Subscription) -> None:
        async for event in sub:
            if event.type != "run.status" or event.data.get("status") not in TERMINAL:
                continue
            run_id = str(event.data["run_id"])
            if run_id not in self.done:
                self.done[run_id] = (time.perf_counter(), str(event.data["status"]))
                self.changed.set()

    async def wait(self, ids: list[str], timeout: float = 120.0) -> None:
        async with asyncio.timeout(timeout):
            while any(i not in self.done for i in ids):
                self.changed.clear()
                if all(i in self.done for i in ids):
                    break
                await self.changed.wait()
        failed = [self.done[i][1] for i in ids if self.done[i][1] != "succeeded"]
        assert not failed, f"{len(failed)} runs did not succeed: {failed[:3]}"

    async def close(self) -> None:
        for sub in self.subs:
            sub.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@dataclass
class QueueRow:
    label: str
    workers: str
    rate: float
    burst: list[float]
    idle: list[float]
    submit: list[float]


async def measure_queue(
    label: str, workers: str, queues: list[RunQueue], buses: list[EventBus], runs: int, idle: int
) -> QueueRow:
    """Warm up, then `idle` runs one at a time, then a burst of `runs`; every run must succeed."""
    gc.collect()  # start each row without the garbage of the one before
    for bus in buses:
        await bus.start()
    for queue in queues:
        await queue.start()
    finished = Finished(buses)
    submitted: dict[str, float] = {}
    submit_times: list[float] = []

    async def submit(i: int, tag: str) -> str:
        t0 = time.perf_counter()
        record = await queues[i % len(queues)].submit(ALICE, "helper", SubmitRun(input=f"{tag}-{i}"))
        submit_times.append(time.perf_counter() - t0)
        submitted[record.id] = t0
        return record.id

    try:
        for i in range(10):  # warm up: connections, scripts, statements
            await finished.wait([await submit(i, "warm")])
        idle_latency = []
        for i in range(idle):
            run_id = await submit(i, "idle")
            await finished.wait([run_id])
            idle_latency.append(finished.done[run_id][0] - submitted[run_id])
        submit_times.clear()
        started = time.perf_counter()
        ids = [await submit(i, "burst") for i in range(runs)]
        await finished.wait(ids)
        elapsed = max(finished.done[i][0] for i in ids) - started
        burst = [finished.done[i][0] - submitted[i] for i in ids]
        return QueueRow(label, workers, runs / elapsed, burst, idle_latency, list(submit_times))
    finally:
        await finished.close()
        for queue in queues:
            await queue.close()
        for bus in buses:
            await bus.close()


async def direct_row(root: Path, runs: int, idle: int) -> QueueRow:
    """The peer: the same fake `run_agent` executed through the core, one after another, no queue."""
    core = fake_core(root, InMemoryBus())
    params = {"agent": "helper", "input": "direct"}

    async def once() -> None:
        await core.execute(CallContext(identity=ALICE), "run_agent", params)

    gc.collect()
    for _ in range(10):
        await once()
    idle_times = [await timed(once) for _ in range(idle)]
    started = time.perf_counter()
    times = [await timed(once) for _ in range(runs)]
    elapsed = time.perf_counter() - started
    return QueueRow("no queue: core.execute", "-", runs / elapsed, times, idle_times, [])


async def bench_queue(runs: int, idle: int) -> None:
    rows: list[QueueRow] = []
    with tempfile.TemporaryDirectory(prefix="bench-runs-") as tmp:
        root = Path(tmp)
        rows.append(await direct_row(root, runs, idle))
        for workers in (1, 4):
            bus = InMemoryBus()
            state = root / f"sqlite-{workers}"
            queue = SqliteRunQueue(fake_core(root, bus), QueueConfig(workers=workers), state)
            rows.append(await measure_queue("embedded (SQLite)", str(workers), [queue], [bus], runs, idle))
        redis_dir = root / "redis"
        redis_dir.mkdir()
        with redis_server(redis_dir) as (url, pid):
            for label in (REDIS_ONE, REDIS_SHARED, REDIS_PROCESSES):
                for workers in (1, 4):
                    prefix = f"bench:{uuid.uuid4().hex[:8]}"
                    local = 2 if label == REDIS_SHARED else 1
                    buses: list[EventBus] = [RedisBus(url, channel_prefix=f"{prefix}:events") for _ in range(local)]
                    queues: list[RunQueue] = [
                        RedisRunQueue(fake_core(root, bus), QueueConfig(workers=workers), url, prefix=f"{prefix}:runs")
                        for bus in buses
                    ]
                    shown = str(workers) if label == REDIS_ONE else f"2x{workers}"
                    async with contextlib.AsyncExitStack() as stack:
                        if label == REDIS_PROCESSES:
                            await stack.enter_async_context(peer_process(url, prefix, workers))
                        rows.append(await measure_queue(label, shown, queues, buses, runs, idle))
            print(f"(redis-server {pid} on {url}, stopped after this table)")
    print_queue(rows, runs, idle)


@contextlib.asynccontextmanager
async def peer_process(url: str, prefix: str, workers: int) -> AsyncIterator[int]:
    """A second queue instance in its own process (this file with --serve-queue); stopped at EOF on its stdin."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve-queue",
        url,
        prefix,
        str(workers),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise RuntimeError(f"the second queue process did not start: {line!r}")
        yield proc.pid
    finally:
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def serve_queue(url: str, prefix: str, workers: int) -> None:
    """--serve-queue: workers of a fake core's RedisRunQueue with a Redis bus, until stdin reaches EOF."""
    with tempfile.TemporaryDirectory(prefix="bench-runs-peer-") as tmp:
        bus = RedisBus(url, channel_prefix=f"{prefix}:events")
        queue = RedisRunQueue(fake_core(Path(tmp), bus), QueueConfig(workers=workers), url, prefix=f"{prefix}:runs")
        await bus.start()
        await queue.start()
        try:
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.read)
        finally:
            await queue.close()
            await bus.close()


def print_queue(rows: list[QueueRow], runs: int, idle: int) -> None:
    print(
        f"fake run_agent (no model; the queue itself); idle = {idle} runs one at a time, burst = {runs} runs "
        "submitted back to back; latency = submit -> final status event, ms"
    )
    head = (
        f"{'backend':<24} | {'workers':>7} | {'idle p50':>8} | {'idle p99':>8} | {'burst runs/s':>12} | "
        f"{'burst p50':>9} | {'burst p99':>9} | {'submit p50':>10} | {'vs no queue':>11} | {'vs 1 worker':>11} | "
        f"{'vs SQLite':>9}"
    )
    print(head)
    print("-" * len(head))
    base: dict[str, float] = {}
    sqlite: dict[str, float] = {}
    for row in rows:
        per_instance = row.workers.split("x")[-1]
        base.setdefault(row.label, row.rate)
        if row.label.startswith("embedded"):
            sqlite[row.workers] = row.rate
        vs_one = ratio(row.rate, base[row.label]) if row.workers != "-" else "-"
        vs_sqlite = ratio(row.rate, sqlite[per_instance]) if row.label.startswith("Redis") else "-"
        submit = f"{pct(row.submit, 50):>10.2f}" if row.submit else f"{'-':>10}"
        print(
            f"{row.label:<24} | {row.workers:>7} | {pct(row.idle, 50):>8.2f} | {pct(row.idle, 99):>8.2f} | "
            f"{row.rate:>12.0f} | {pct(row.burst, 50):>9.2f} | {pct(row.burst, 99):>9.2f} | {submit} | "
            f"{ratio(row.rate, rows[0].rate):>11} | {vs_one:>11} | {vs_sqlite:>9}"
        )
    print()
    print("  runs/s ratios: vs no queue = vs the fake run_agent through core.execute, one after another (the peer);")
    print("  vs 1 worker = vs the same backend's first row; vs SQLite = vs embedded with the same workers per instance")
    print(f"  2x4 = two queue instances of 4 workers each on one Redis. {REDIS_SHARED}: both in this event loop,")
    print(f"  submits alternating; {REDIS_PROCESSES}: this one submits and works, a second process (same code,")
    print("  its own event loop and Redis bus) works too; its final status events reach this one through Redis")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=200, help="timed agent runs per script")
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--runs", type=int, default=200, help="runs per queue burst")
    parser.add_argument("--idle", type=int, default=50, help="runs one at a time per queue row")
    parser.add_argument("--part", choices=["all", "steps", "queue"], default="all")
    parser.add_argument("--serve-queue", nargs=3, metavar=("URL", "PREFIX", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.serve_queue:
        url, prefix, workers = args.serve_queue
        await serve_queue(url, prefix, int(workers))
        return
    started = time.perf_counter()
    print(machine())
    if args.part in ("all", "steps"):
        print()
        print("== 1. agent steps in process: gateway core vs litellm alone, scripted model answering at once ==")
        await bench_steps(args.iterations, args.warmup)
    if args.part in ("all", "queue"):
        print()
        print("== 2. durable run queue throughput ==")
        await bench_queue(args.runs, args.idle)
    print()
    print(f"total {time.perf_counter() - started:.0f} s; {machine()}")


if __name__ == "__main__":
    asyncio.run(main())
