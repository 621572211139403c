"""Command tools: run a configured program with arguments filled from validated parameters.

Safety rules, each one deliberate:

- **No shell, ever.** The argv template is filled element by element and run with
  `create_subprocess_exec`, so `; rm -rf /`, `$(...)`, backticks, quotes and newlines in a value are
  just characters of one argument.
- **Placeholders.** `{name}` inside an argv element is replaced by that parameter's value: strings as
  they are, numbers with `str()`, booleans as `true`/`false`; objects are refused, and so are arrays
  except in an element that is exactly `{name}`, which expands to one argument per item. An element
  whose parameter is absent (and has no schema `default`) or null is left out, so optional flags such
  as `--max-count={max}` simply disappear. `{{` and `}}` are literal braces. The program (argv[0])
  can never come from a parameter.
- **Option injection.** A string value that would begin an argument with `-` is refused (InvalidParams),
  because the program would read it as an option (`--output=/etc/passwd`, `-exec`). Put a literal
  `--` element earlier in argv to accept such values (after `--` programs treat them as operands),
  or embed the placeholder after a prefix (`--pattern={pattern}`). Numbers are exempt: `-5` injects
  nothing but a digit.
- **Paths.** A parameter whose schema says `"format": "path"` (or whose array items do), or whose name
  ends with `path`, is resolved inside the workspace root (absolute paths, `..` and symlinks that leave
  the root raise PathOutsideRoot) and passed relative to the tool's working directory, which is the root
  by default, so root-relative; one that would start with `-` gets a `./` prefix.
- **Working directory** `cwd` is resolved inside the root as well.
- **Environment**: only the variables named in `env_allow` are passed, nothing else.
- **Time**: the program runs in its own session (process group); at `timeout_seconds`, when the
  execution is cancelled or hits its deadline, and after it exits, the whole group is killed with
  SIGKILL, so no child outlives the call. A timeout raises the gateway's Timeout error.
- **Output**: stdout and stderr are read incrementally; each keeps at most `output_max_bytes`, the rest
  is read and thrown away (`truncated: true`). A program that keeps writing past
  `DISCARD_MAX_BYTES` of thrown-away output is killed, so endless output cannot hold a call open.

A non-zero exit status is a normal result, not an error; a program that cannot be started is ToolFailed.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import posixpath
import re
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ..config import CommandToolConfig
from ..errors import InvalidParams, ToolFailed
from ..errors import Timeout as TimeoutFailure
from ..execution import ExecutionContext
from ..identity import Role
from ..registry import Capability
from ..workspace import Workspace
from . import split_description
from .schema_model import SchemaParams, model_from_schema

READ_CHUNK_BYTES = 65_536
"""Bytes asked for per read of stdout or stderr."""
STREAM_BUFFER_BYTES = 262_144
"""The asyncio stream buffer per pipe; reading pauses the pipe beyond it, so memory stays bounded."""
DISCARD_MAX_BYTES = 64 * 1024 * 1024
"""Thrown-away output per stream after which the program is killed (exit_code -9, truncated)."""
EXIT_DRAIN_SECONDS = 2.0
"""After the program exits, how long to wait for what is left in its pipes."""
REAP_SECONDS = 5.0
"""How long to wait for a killed program to be reaped."""

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]+)\}")


class CommandResult(BaseModel):
    """What the program did: its exit status and (capped) output."""

    exit_code: int = Field(description="Exit status; negative when killed by that signal (-9: output flood)")
    stdout: str = Field(description="Standard output as UTF-8 text, at most output_max_bytes")
    stderr: str = Field(description="Standard error as UTF-8 text, at most output_max_bytes")
    truncated: bool = Field(description="stdout or stderr was cut at output_max_bytes")
    duration_ms: float = Field(description="Wall time from start to exit, in milliseconds")


# -- the argv template --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Element:
    """One argv element: literal text and parameter names, in order."""

    tokens: tuple[tuple[bool, str], ...]  # (is_param, literal text or parameter name)

    @property
    def sole_param(self) -> str | None:
        """The parameter name when the element is exactly `{name}`."""
        if len(self.tokens) == 1 and self.tokens[0][0]:
            return self.tokens[0][1]
        return None

    @property
    def params(self) -> list[str]:
        return [text for is_param, text in self.tokens if is_param]

    @property
    def literal(self) -> str | None:
        """The text when the element holds no placeholder."""
        return None if self.params else "".join(text for _, text in self.tokens)


def parse_element(element: str) -> _Element:
    """Split an argv element into literal text and `{name}` placeholders (`{{`/`}}` are braces)."""
    tokens: list[tuple[bool, str]] = []
    literal: list[str] = []
    last = 0
    for match in _TOKEN.finditer(element):
        literal.append(element[last : match.start()])
        last = match.end()
        if match.group(1) is None:
            literal.append(match.group(0)[0])
            continue
        if literal and "".join(literal):
            tokens.append((False, "".join(literal)))
        literal = []
        tokens.append((True, match.group(1)))
    literal.append(element[last:])
    if "".join(literal) or not tokens:
        tokens.append((False, "".join(literal)))
    return _Element(tuple(tokens))


def _scalar(name: str, value: Any) -> str:
    """The argument text of one scalar value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidParams(f"parameter {name!r} contains a NUL byte", data={"param": name})
        return value
    raise InvalidParams(
        f"parameter {name!r}: an object or array cannot be placed inside an argument",
        data={"param": name},
    )


def _refuse_option(name: str, text: str) -> None:
    raise InvalidParams(
        f"parameter {name!r} starts with '-' and would be read as an option ({text[:40]!r}); "
        "pass it after a literal '--' in the tool's argv, or embed the placeholder after a prefix",
        data={"param": name},
    )


def build_argv(template: list[_Element], values: Mapping[str, Any]) -> list[str]:
    """The argument vector for `values`; see the module docstring for the rules."""
    argv: list[str] = []
    operands_only = False  # a literal `--` came before: programs take what follows as operands
    for element in template:
        literal = element.literal
        if literal is not None:
            argv.append(literal)
            operands_only = operands_only or literal == "--"
            continue
        sole = element.sole_param
        if sole is not None:
            value = values.get(sole)
            items = value if isinstance(value, list) else [] if value is None else [value]
            for item in items:
                if isinstance(item, list):
                    raise InvalidParams(f"parameter {sole!r}: nested arrays are not arguments", data={"param": sole})
                text = _scalar(sole, item)
                if text.startswith("-") and isinstance(item, str) and not operands_only:
                    _refuse_option(sole, text)
                argv.append(text)
            continue
        if any(values.get(name) is None for name in element.params):
            continue  # an optional part is absent: leave the whole element out
        pieces = []
        for is_param, text in element.tokens:
            if not is_param:
                pieces.append(text)
                continue
            value = values[text]
            piece = _scalar(text, value)
            if not pieces and piece.startswith("-") and isinstance(value, str) and not operands_only:
                _refuse_option(text, piece)
            pieces.append(piece)
        argv.append("".join(pieces))
    return argv


# -- parameters ------------------------------------------------------------------------------------------
def path_parameters(schema: Mapping[str, Any]) -> frozenset[str]:
    """Top-level parameters that name files: `"format": "path"` (on them or their items) or a name ending in path."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return frozenset()
    found = set()
    for name, sub in properties.items():
        sub = sub if isinstance(sub, Mapping) else {}
        items = sub.get("items")
        items = items if isinstance(items, Mapping) else {}
        if name.lower().endswith("path") or sub.get("format") == "path" or items.get("format") == "path":
            found.add(name)
    return frozenset(found)


def _confine_path(workspace: Workspace, cwd: Path, name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidParams(f"parameter {name!r} must be a path string", data={"param": name})
    if "\x00" in value:
        raise InvalidParams(f"parameter {name!r} contains a NUL byte", data={"param": name})
    _, absolute = workspace.locate(value)
    relative = os.path.relpath(absolute, cwd).replace(os.sep, "/")
    return "./" + relative if relative.startswith("-") else relative


def confine_paths(workspace: Workspace, cwd: Path, values: Mapping[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """`values` with every path parameter resolved inside the root and made relative to `cwd`."""
    confined = dict(values)
    for name in names:
        value = confined.get(name)
        if value is None:
            continue
        if isinstance(value, list):
            confined[name] = [_confine_path(workspace, cwd, name, item) for item in value]
        else:
            confined[name] = _confine_path(workspace, cwd, name, value)
    return confined


# -- running ---------------------------------------------------------------------------------------------
class _Capture:
    """One output stream: the first `limit` bytes kept, the rest counted and dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.discarded = 0
        self.complete = False

    @property
    def truncated(self) -> bool:
        return self.discarded > 0 or not self.complete

    def text(self) -> str:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # A cut stream may end inside a character: leave that partial character out.
        return decoder.decode(bytes(self.data), final=not self.truncated)


async def _pump(stream: asyncio.StreamReader, capture: _Capture, on_flood: Callable[[], None]) -> None:
    while True:
        chunk = await stream.read(READ_CHUNK_BYTES)
        if not chunk:
            capture.complete = True
            return
        room = capture.limit - len(capture.data)
        if room > 0:
            capture.data += chunk[:room]
        if len(chunk) > room:
            capture.discarded += len(chunk) - max(room, 0)
            if capture.discarded > DISCARD_MAX_BYTES:
                on_flood()


def _kill_group(pgid: int) -> None:
    """SIGKILL every process of the group; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _find_program(program: str, env: Mapping[str, str], cwd: Path) -> str:
    """The executable to run: a name is looked up on the child's PATH, a path is taken from `cwd`."""
    if "/" in program:
        candidate = cwd / program
        if not candidate.is_file() or not os.access(candidate, os.X_OK):
            raise ToolFailed(f"the program {program!r} does not exist or is not executable", data={"program": program})
        return str(candidate)
    found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        raise ToolFailed(
            f"the program {program!r} was not found on PATH; install it or give its full path in argv",
            data={"program": program},
        )
    return found


async def run_program(
    ctx: ExecutionContext,
    name: str,
    argv: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    output_max_bytes: int,
) -> CommandResult:
    """Run `argv` in its own process group with capped output; kill the group on timeout or cancel."""
    program = _find_program(argv[0], env, cwd)
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            executable=program,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=STREAM_BUFFER_BYTES,
        )
    except OSError as exc:
        raise ToolFailed(
            f"{name}: cannot start {argv[0]!r}: {exc.strerror or exc}", data={"program": argv[0]}
        ) from None
    pgid = proc.pid  # start_new_session: the child leads a new session and process group
    assert proc.stdout is not None and proc.stderr is not None
    out, err = _Capture(output_max_bytes), _Capture(output_max_bytes)
    readers = [
        asyncio.create_task(_pump(proc.stdout, out, lambda: _kill_group(pgid))),
        asyncio.create_task(_pump(proc.stderr, err, lambda: _kill_group(pgid))),
    ]
    ctx.progress("started", 0.0, pid=proc.pid)
    try:
        try:
            async with asyncio.timeout(timeout):
                await proc.wait()
        except TimeoutError:
            _kill_group(pgid)
            raise TimeoutFailure(
                f"{name} did not finish within {timeout:g}s and was killed",
                data={"timeout_seconds": timeout},
            ) from None
        # Children left behind would keep the pipes open and outlive the call: end them too.
        _kill_group(pgid)
        await asyncio.wait(readers, timeout=EXIT_DRAIN_SECONDS)
    finally:
        if proc.returncode is None:  # cancelled, timed out or failed: nothing of the group may outlive the call
            _kill_group(pgid)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), REAP_SECONDS)
        for reader in readers:
            reader.cancel()
            if reader.done() and not reader.cancelled():
                reader.exception()  # a failed read only shortens the output; mark the error as seen
    duration_ms = round((time.monotonic() - started) * 1000, 3)
    exit_code = proc.returncode if proc.returncode is not None else -int(signal.SIGKILL)
    ctx.progress(f"exited with {exit_code}", 100.0, exit_code=exit_code)
    return CommandResult(
        exit_code=exit_code,
        stdout=out.text(),
        stderr=err.text(),
        truncated=out.truncated or err.truncated,
        duration_ms=duration_ms,
    )


# -- registration ---------------------------------------------------------------------------------------
def _check_template(config: CommandToolConfig, template: list[_Element]) -> None:
    if template[0].literal is None:
        raise ValueError(f"tool {config.name!r}: the program (argv[0]) cannot come from a parameter")
    properties = config.parameters.get("properties")
    known = set(properties) if isinstance(properties, Mapping) else set()
    for element in template:
        for name in element.params:
            if name not in known:
                raise ValueError(f"tool {config.name!r}: argv placeholder {{{name}}} names no parameter in its schema")
    cwd = posixpath.normpath(config.cwd.replace("\\", "/"))
    if cwd.startswith("/") or cwd == ".." or cwd.startswith("../"):
        raise ValueError(f"tool {config.name!r}: cwd {config.cwd!r} must be inside the workspace root")


def command_capability(config: CommandToolConfig) -> Capability[SchemaParams, CommandResult]:
    """The capability for one `[[tools.command]]` entry; raises `ValueError` for an unusable config."""
    try:
        params_model = model_from_schema(config.name, config.parameters)
    except ValueError as exc:
        raise ValueError(f"tool {config.name!r}: parameters: {exc}") from None
    template = [parse_element(element) for element in config.argv]
    _check_template(config, template)
    paths = path_parameters(config.parameters)

    async def run_command_tool(ctx: ExecutionContext, params: SchemaParams) -> CommandResult:
        cwd = ctx.workspace.resolve(config.cwd)
        if not cwd.is_dir():
            raise ToolFailed(f"{config.name}: the working directory {config.cwd!r} does not exist")
        values = confine_paths(ctx.workspace, cwd, params.arguments_with_defaults(), paths)
        argv = build_argv(template, values)
        env = {key: os.environ[key] for key in config.env_allow if key in os.environ}
        return await run_program(
            ctx,
            config.name,
            argv,
            cwd=cwd,
            env=env,
            timeout=config.timeout_seconds,
            output_max_bytes=config.output_max_bytes,
        )

    summary, description = split_description(config.description, f"Run {config.argv[0]}")
    tags = ("tool", "command", "code_action") if config.code_action else ("tool", "command")
    return Capability(
        name=config.name,
        params_model=params_model,
        result_model=CommandResult,
        handler=run_command_tool,
        summary=summary,
        description=description,
        required_role=Role.MEMBER,
        read_only=config.read_only,
        destructive=not config.read_only,
        idempotent=config.read_only,
        tags=tags,
    )
