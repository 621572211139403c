"""Command tools: argv from validated params with no shell, confinement, timeouts, output caps, env, cancel.

Every test runs real subprocesses through `core.execute`, like any door would.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway import tools
from gateway.config import CommandToolConfig, GatewayConfig, ToolsConfig
from gateway.errors import Cancelled, InvalidParams, PathOutsideRoot, ToolFailed
from gateway.errors import Timeout as TimeoutFailure
from gateway.events import InMemoryBus
from gateway.execution import CallContext, Core, ProgressReport
from gateway.identity import Role
from gateway.registry import Registry
from gateway.tools.command import build_argv, parse_element
from gateway.tools.schema_model import model_from_schema
from gateway.workspace import Workspace
from translators.openapi import build_openapi

PY = sys.executable
PRINT_ARGS = "import json, sys; print(json.dumps(sys.argv[1:]))"
"""A program that prints its arguments as a JSON list, so tests see exactly what it received."""


def tool(name: str, argv: list[str], properties: dict[str, Any] | None = None, **extra: Any) -> CommandToolConfig:
    schema: dict[str, Any] = {"type": "object", "properties": properties or {}}
    if "required" in extra:
        schema["required"] = extra.pop("required")
    return CommandToolConfig(name=name, argv=argv, parameters=schema, **extra)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def build(root: Path, *configs: CommandToolConfig) -> Core:
    registry = Registry()
    tools.register(registry, ToolsConfig(command=list(configs)))
    return Core(registry, Workspace(root), InMemoryBus())


async def run(core: Core, name: str, **params: Any) -> dict[str, Any]:
    result = await core.execute(CallContext(), name, params)
    return result.model_dump()


def process_group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in process group `pgid`."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            return True
    return False


def in_test_cwd(name: str) -> bool:
    """Whether `name` exists in the test process's own working directory."""
    return os.path.exists(name)


def real_path(path: Path) -> str:
    return os.path.realpath(path)


async def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)  # polling interval of a bounded wait on process state
    return check()


SLEEPER = (
    "import subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
    "time.sleep(30)\n"
)
"""Sleeps 30 s with a grandchild that sleeps too: killing only the child would leave the grandchild."""


# -- schema-made params models ---------------------------------------------------------------------------
def test_params_model_shows_the_configured_schema_exactly() -> None:
    schema = {
        "type": "object",
        "properties": {"path": {"type": "string", "format": "path"}, "count": {"type": "integer", "minimum": 1}},
        "required": ["path"],
        "additionalProperties": False,
    }
    model = model_from_schema("lint", schema)
    assert model.model_json_schema() == schema
    assert model.model_fields["path"].is_required()
    assert not model.model_fields["count"].is_required()


def test_params_model_validates_with_jsonschema_and_reports_message_and_path() -> None:
    model = model_from_schema(
        "t",
        {
            "type": "object",
            "properties": {"opts": {"type": "object", "properties": {"level": {"type": "integer"}}}},
            "additionalProperties": False,
        },
    )
    with pytest.raises(InvalidParams) as info:
        model.model_validate({"opts": {"level": "high"}})
    assert "'high' is not of type 'integer'" in info.value.message
    assert info.value.data["errors"][0]["loc"] == "opts.level"
    with pytest.raises(InvalidParams) as info:
        model.model_validate({"other": 1})
    assert info.value.data["errors"][0]["type"] == "additionalProperties"


def test_params_model_skips_format_checks_and_keeps_values_as_sent() -> None:
    model = model_from_schema(
        "t", {"type": "object", "properties": {"mail": {"type": "string", "format": "email"}, "n": {"default": 2}}}
    )
    params = model.model_validate({"mail": "not an address", "json": [1]})
    assert params.arguments() == {"mail": "not an address", "json": [1]}
    assert params.arguments_with_defaults() == {"mail": "not an address", "json": [1], "n": 2}


def test_params_model_honours_the_schemas_own_draft() -> None:
    draft7 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"items": {"type": "array", "items": [{"type": "integer"}]}},
    }
    model = model_from_schema("t", draft7)
    model.model_validate({"items": [1, "extra"]})
    with pytest.raises(InvalidParams):
        model.model_validate({"items": ["x"]})


@pytest.mark.parametrize(
    "schema",
    [{"type": "string"}, {"type": "object", "properties": {"a": {"type": "no-such-type"}}}, {"required": "a"}],
)
def test_invalid_parameter_schemas_are_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        model_from_schema("t", schema)


def test_openapi_document_carries_the_tool_schema(root: Path) -> None:
    properties = {"path": {"type": "string", "format": "path"}}
    core = build(root, tool("lint", ["true"], properties, required=["path"]))
    doc = build_openapi(list(core.registry), version="test", auth=False)
    body = doc["paths"]["/v1/capabilities/lint"]["post"]["requestBody"]
    assert body["required"] is True
    ref = body["content"]["application/json"]["schema"]["$ref"]
    assert doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"] == properties


# -- registration ---------------------------------------------------------------------------------------------
def test_capability_flags_come_from_the_config(root: Path) -> None:
    core = build(
        root,
        tool("fmt", ["true"], description="Format a file.\n\nMore words.", code_action=True),
        tool("ls", ["true"], read_only=True),
    )
    fmt, ls = core.registry.get("fmt"), core.registry.get("ls")
    assert (fmt.summary, fmt.description) == ("Format a file.", "More words.")
    assert fmt.tags == ("tool", "command", "code_action") and ls.tags == ("tool", "command")
    assert fmt.required_role is Role.MEMBER
    assert fmt.destructive and not fmt.read_only
    assert ls.read_only and not ls.destructive


@pytest.mark.parametrize(
    ("argv", "cwd", "message"),
    [
        (["{prog}"], ".", "cannot come from a parameter"),
        (["echo", "{missing}"], ".", "names no parameter"),
        (["echo"], "../elsewhere", "inside the workspace root"),
        (["echo"], "/tmp", "inside the workspace root"),
    ],
)
def test_unusable_configs_fail_at_start_up(root: Path, argv: list[str], cwd: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(root, tool("bad", argv, {"prog": {"type": "string"}}, cwd=cwd))


def test_build_gateway_registers_tools_and_write_file(root: Path) -> None:
    from gateway.app import build_gateway

    config = GatewayConfig.model_validate(
        {
            "server": {"workspace": str(root)},
            "analysis": {"jedi": False, "tree_sitter": False, "index_on_start": False, "watch": False},
            "tools": {"command": [{"name": "hello", "argv": ["echo", "hi"]}]},
        }
    )
    gw = build_gateway(config)
    assert "hello" in gw.registry and "write_file" in gw.registry


def test_build_gateway_refuses_to_start_with_an_unusable_tool(root: Path) -> None:
    from gateway.app import StartupRefused, build_gateway

    config = GatewayConfig.model_validate(
        {
            "server": {"workspace": str(root)},
            "analysis": {"jedi": False, "tree_sitter": False, "index_on_start": False, "watch": False},
            "tools": {"command": [{"name": "bad", "argv": ["echo", "{nope}"]}]},
        }
    )
    with pytest.raises(StartupRefused, match="tool 'bad'"):
        build_gateway(config)


# -- argv building -----------------------------------------------------------------------------------------
def test_placeholders_fill_scalars_and_drop_absent_elements() -> None:
    template = [parse_element(e) for e in ["prog", "--name={name}", "--max={max}", "{flag}", "{{literal}}", "{files}"]]
    argv = build_argv(template, {"name": "a b", "flag": True, "files": ["x", "y"]})
    assert argv == ["prog", "--name=a b", "true", "{literal}", "x", "y"]


def test_non_scalars_inside_an_argument_are_refused() -> None:
    template = [parse_element(e) for e in ["prog", "--opt={value}"]]
    with pytest.raises(InvalidParams, match="object or array"):
        build_argv(template, {"value": {"a": 1}})
    with pytest.raises(InvalidParams, match="object or array"):
        build_argv(template, {"value": [1, 2]})


async def test_arguments_arrive_exactly_as_given(root: Path) -> None:
    core = build(
        root,
        tool(
            "args",
            [PY, "-c", PRINT_ARGS, "{word}", "--n={n}", "{flag}", "{many}"],
            {
                "word": {"type": "string"},
                "n": {"type": "integer"},
                "flag": {"type": "boolean"},
                "many": {"type": "array", "items": {"type": "string"}},
            },
        ),
    )
    result = await run(core, "args", word="hello world", n=3, flag=False, many=["a", "b c"])
    assert json.loads(result["stdout"]) == ["hello world", "--n=3", "false", "a", "b c"]
    assert result["exit_code"] == 0 and result["truncated"] is False
    assert result["duration_ms"] > 0


@pytest.mark.parametrize(
    "value",
    [
        "; touch pwned",
        "$(touch pwned)",
        "`touch pwned`",
        "x\ntouch pwned",
        "x && touch pwned",
        "x | touch pwned",
        "'; touch pwned; '",
        "${IFS}touch${IFS}pwned",
    ],
)
async def test_shell_metacharacters_are_plain_argument_text(root: Path, value: str) -> None:
    core = build(
        root,
        tool("echo_py", [PY, "-c", PRINT_ARGS, "{value}"], {"value": {"type": "string"}}),
        tool("echo_bin", ["echo", "{value}", "--suffix={value}"], {"value": {"type": "string"}}),
    )
    result = await run(core, "echo_py", value=value)
    assert json.loads(result["stdout"]) == [value]
    result = await run(core, "echo_bin", value=value)
    assert result["stdout"] == f"{value} --suffix={value}\n"
    assert not (root / "pwned").exists()
    assert not in_test_cwd("pwned")


async def test_a_value_that_looks_like_an_option_is_refused(root: Path) -> None:
    core = build(
        root,
        tool("grep", [PY, "-c", PRINT_ARGS, "{pattern}"], {"pattern": {"type": "string"}}),
        tool("grep_operands", [PY, "-c", PRINT_ARGS, "--", "{pattern}"], {"pattern": {"type": "string"}}),
        tool("grep_embedded", [PY, "-c", PRINT_ARGS, "--regexp={pattern}"], {"pattern": {"type": "string"}}),
        tool("head", [PY, "-c", PRINT_ARGS, "{n}"], {"n": {"type": "integer"}}),
    )
    with pytest.raises(InvalidParams, match="option"):
        await run(core, "grep", pattern="--output=/etc/passwd")
    assert json.loads((await run(core, "grep_operands", pattern="-v"))["stdout"]) == ["--", "-v"]
    assert json.loads((await run(core, "grep_embedded", pattern="-v"))["stdout"]) == ["--regexp=-v"]
    assert json.loads((await run(core, "head", n=-5))["stdout"]) == ["-5"]


async def test_schema_violations_are_invalid_params(root: Path) -> None:
    core = build(
        root,
        tool(
            "strict",
            [PY, "-c", PRINT_ARGS, "{count}"],
            {"count": {"type": "integer", "maximum": 10}},
            required=["count"],
        ),
    )
    for params in ({}, {"count": "3"}, {"count": 11}, {"count": 3.5}):
        with pytest.raises(InvalidParams):
            await run(core, "strict", **params)


async def test_a_non_zero_exit_is_a_result(root: Path) -> None:
    core = build(root, tool("fail", [PY, "-c", "import sys; print('bad', file=sys.stderr); sys.exit(3)"]))
    result = await run(core, "fail")
    assert result["exit_code"] == 3 and result["stderr"] == "bad\n"


async def test_a_missing_program_is_tool_failed(root: Path) -> None:
    core = build(root, tool("ghost", ["no-such-program-anywhere-42"]), tool("ghost2", ["./nope.sh"]))
    with pytest.raises(ToolFailed, match="not found on PATH"):
        await run(core, "ghost")
    with pytest.raises(ToolFailed, match="does not exist"):
        await run(core, "ghost2")


# -- paths and working directory ---------------------------------------------------------------------------
async def test_path_parameters_are_confined_and_passed_relative(root: Path, tmp_path: Path) -> None:
    (root / "src").mkdir()
    (root / "src" / "a.py").write_text("x = 1\n")
    (root / "-rf").write_text("")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    (root / "escape_dir").symlink_to(tmp_path)
    props = {"file_path": {"type": "string"}, "target": {"type": "string", "format": "path"}}
    core = build(
        root,
        tool("show", [PY, "-c", PRINT_ARGS, "{file_path}", "{target}"], props),
        tool("show_in_src", [PY, "-c", PRINT_ARGS, "{file_path}"], props, cwd="src"),
    )
    assert json.loads((await run(core, "show", file_path="src/a.py", target="-rf"))["stdout"]) == ["src/a.py", "./-rf"]
    assert json.loads((await run(core, "show", file_path="./src/../src/a.py"))["stdout"]) == ["src/a.py"]
    assert json.loads((await run(core, "show_in_src", file_path="src/a.py"))["stdout"]) == ["a.py"]
    for bad in ("../secret.txt", "/etc/passwd", "escape", "escape_dir/secret.txt", "src/../../secret.txt"):
        with pytest.raises(PathOutsideRoot):
            await run(core, "show", file_path=bad)
        with pytest.raises(PathOutsideRoot):
            await run(core, "show", target=bad)


async def test_working_directory_is_inside_the_root(root: Path, tmp_path: Path) -> None:
    (root / "sub").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "out").symlink_to(outside)
    cwd_script = "import os; print(os.getcwd())"
    core = build(
        root,
        tool("pwd", [PY, "-c", cwd_script], cwd="sub"),
        tool("pwd_out", [PY, "-c", cwd_script], cwd="out"),
        tool("pwd_missing", [PY, "-c", cwd_script], cwd="missing"),
    )
    assert (await run(core, "pwd"))["stdout"].strip() == real_path(root / "sub")
    with pytest.raises(PathOutsideRoot):
        await run(core, "pwd_out")
    with pytest.raises(ToolFailed, match="does not exist"):
        await run(core, "pwd_missing")


# -- environment -----------------------------------------------------------------------------------------------
async def test_only_allowed_variables_reach_the_program(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TEST_SECRET", "s3cret")
    monkeypatch.setenv("GATEWAY_TEST_ALLOWED", "yes")
    script = "import json, os; print(json.dumps(dict(os.environ)))"
    core = build(root, tool("env", [PY, "-c", script], env_allow=["GATEWAY_TEST_ALLOWED", "PATH", "NOT_SET_X"]))
    env = json.loads((await run(core, "env"))["stdout"])
    assert env.pop("GATEWAY_TEST_ALLOWED") == "yes"
    assert env.pop("PATH") == os.environ["PATH"]
    env.pop("LC_CTYPE", None)  # the interpreter itself may set this one (PEP 538 locale coercion)
    assert env == {}


# -- time, output, cancellation ------------------------------------------------------------------------------
async def test_timeout_kills_the_whole_process_group(root: Path) -> None:
    core = build(root, tool("slow", [PY, "-c", SLEEPER], timeout_seconds=0.5))
    reports: list[ProgressReport] = []
    started = time.monotonic()
    with pytest.raises(TimeoutFailure) as info:
        await core.execute(CallContext(on_progress=reports.append), "slow", {})
    assert time.monotonic() - started < 10
    assert info.value.data["timeout_seconds"] == 0.5
    assert reports[0].message == "started" and reports[0].data is not None
    pgid = reports[0].data["pid"]
    assert await wait_until(lambda: not process_group_alive(pgid))


async def test_cancellation_kills_the_whole_process_group(root: Path) -> None:
    core = build(root, tool("slow", [PY, "-c", SLEEPER, "{marker}"], {"marker": {"type": "string"}}))
    started = asyncio.Event()
    reports: list[ProgressReport] = []

    def on_progress(report: ProgressReport) -> None:
        reports.append(report)
        started.set()

    execution = core.start(CallContext(on_progress=on_progress), "slow", {"marker": "x"})
    await asyncio.wait_for(started.wait(), 10)
    assert reports[0].data is not None
    pgid = reports[0].data["pid"]
    assert await wait_until(lambda: process_group_alive(pgid))
    execution.cancel()
    with pytest.raises(Cancelled):
        await execution.wait()
    assert await wait_until(lambda: not process_group_alive(pgid))


async def test_cancelling_the_caller_kills_the_program(root: Path) -> None:
    core = build(root, tool("slow", [PY, "-c", SLEEPER]))
    started = asyncio.Event()
    pids: list[int] = []

    def on_progress(report: ProgressReport) -> None:
        if report.message == "started" and report.data:
            pids.append(report.data["pid"])
            started.set()

    task = asyncio.create_task(core.execute(CallContext(on_progress=on_progress), "slow", {}))
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_until(lambda: not process_group_alive(pids[0]))


async def test_huge_output_is_capped_and_drained(root: Path) -> None:
    script = "import sys; sys.stdout.write('x' * 50_000_000); sys.stderr.write('é' * 10_000); print('done')"
    core = build(root, tool("loud", [PY, "-c", script], output_max_bytes=1001))
    started = time.monotonic()
    result = await run(core, "loud")
    assert time.monotonic() - started < 30
    assert result["exit_code"] == 0  # drained, not killed: the program finished normally
    assert result["truncated"] is True
    assert result["stdout"] == "x" * 1001
    assert result["stderr"] == "é" * 500  # cut at 1001 bytes, never inside a character


async def test_endless_output_is_cut_off_promptly(root: Path) -> None:
    if shutil.which("yes") is None:
        pytest.skip("no `yes` program")
    core = build(root, tool("yes", ["yes"], output_max_bytes=100, timeout_seconds=60))
    started = time.monotonic()
    result = await run(core, "yes")
    assert time.monotonic() - started < 30
    assert result["truncated"] is True
    assert result["stdout"] == "y\n" * 50
    assert result["exit_code"] == -9


async def test_progress_reports_start_and_end(root: Path) -> None:
    core = build(root, tool("ok", ["true"]))
    reports: list[ProgressReport] = []
    await core.execute(CallContext(on_progress=reports.append), "ok", {})
    assert [r.message for r in reports] == ["started", "exited with 0"]
    assert reports[-1].percentage == 100.0
