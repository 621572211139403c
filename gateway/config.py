"""Configuration: one TOML file plus `GATEWAY_*` environment overrides, validated once at start.

Environment overrides name a key path with double underscores, e.g. `GATEWAY_SERVER__HTTP_PORT=9000`
or `GATEWAY_REDIS_URL=redis://127.0.0.1:6379/0`. Values are parsed as JSON when they parse, else kept
as strings, and then validated by the same models as the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "GATEWAY_"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    http_port: int = Field(8765, ge=0, le=65535)
    lsp_port: int | None = Field(2087, ge=0, le=65535, description="LSP over TCP; null turns the listener off")
    workspace: Path = Path(".")
    state_dir: Path | None = Field(None, description="Where durable state lives; default <workspace>/.gateway")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Request bodies above this get 413")
    shutdown_grace_seconds: float = Field(5.0, ge=0)
    default_deadline_seconds: float = Field(60.0, gt=0)
    code_cache: bool = Field(True, description="Cache generated attrs/cattrs bytecode (faster start-up)")
    code_cache_dir: Path | None = Field(None, description="Where that cache lives; default $XDG_CACHE_HOME/gateway")


class ApiKey(_Strict):
    name: str = Field(min_length=1)
    hash: str = Field(description="sha256:<hex> of the key; make one with `gateway auth hash-key`")
    roles: list[str] = Field(default_factory=lambda: ["member"])

    @field_validator("hash")
    @classmethod
    def _check_hash(cls, value: str) -> str:
        algo, _, digest = value.partition(":")
        if algo != "sha256" or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError("must be 'sha256:' followed by 64 lowercase hex digits")
        return value


def _default_algorithms() -> list[Literal["HS256", "RS256"]]:
    return ["HS256"]


class JwtConfig(_Strict):
    algorithms: list[Literal["HS256", "RS256"]] = Field(default_factory=_default_algorithms, min_length=1)
    secret_env: str | None = Field(None, description="Environment variable holding the HS256 secret")
    public_key_file: Path | None = Field(None, description="PEM file with the RS256 public key")
    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    leeway_seconds: float = Field(0, ge=0)
    roles_claim: str = "roles"
    authorization_servers: list[str] = Field(
        default_factory=list, description="Issuers for RFC 9728 protected-resource metadata (MCP over HTTP)"
    )
    resource: str | None = Field(None, description="This gateway's resource URL in that metadata")

    @model_validator(mode="after")
    def _keys_present(self) -> JwtConfig:
        if "HS256" in self.algorithms and not self.secret_env:
            raise ValueError("HS256 needs secret_env (the name of the variable holding the secret)")
        if "RS256" in self.algorithms and not self.public_key_file:
            raise ValueError("RS256 needs public_key_file")
        return self


class AuthConfig(_Strict):
    api_keys: list[ApiKey] = Field(default_factory=list)
    jwt: JwtConfig | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.api_keys) or self.jwt is not None


class RateLimitConfig(_Strict):
    enabled: bool = False
    rate_per_second: float = Field(50.0, gt=0)
    burst: int = Field(100, ge=1)


class LimitsConfig(_Strict):
    read_file_max_bytes: int = Field(1_048_576, ge=1)
    search_max_file_bytes: int = Field(2_097_152, ge=1)
    max_page_size: int = Field(1000, ge=1)
    finished_executions_kept: int = Field(256, ge=1)
    bus_queue_size: int = Field(1000, ge=1)


class HubConfig(_Strict):
    """The WebSocket hub (`/ws`) and the y-websocket endpoint (`/yjs/<path>`)."""

    ping_seconds: float = Field(20.0, gt=0, description="Ping every connection this often; no pong: closed")
    max_message_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Larger frames close with 1009")
    send_buffer_bytes: int = Field(
        1024 * 1024, ge=4096, description="Unsent bytes a connection may hold before it counts as lagging"
    )
    lag_seconds: float = Field(10.0, gt=0, description="A lagging connection that stays behind this long is closed")
    queue_size: int = Field(1000, ge=1, description="Events queued per hub connection before it is resynchronised")
    idle_seconds: float = Field(600.0, gt=0, description="A hub connection that sends nothing this long is closed")


class LanguageServerConfig(_Strict):
    """A language server the gateway drives: a preset by name, or any stdio command."""

    name: str = Field(min_length=1, description="Unique name; a preset name fills command, languages and globs")
    preset: str | None = Field(None, description="Preset to start from (defaults to `name` when it is one)")
    command: list[str] | None = Field(None, min_length=1, description="argv of a stdio language server")
    languages: list[str] | None = Field(None, description="LSP language ids this server answers for")
    globs: list[str] | None = Field(None, description="Root-relative file globs this server answers for")
    initialization_options: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict, description="Answers to workspace/configuration")
    env: dict[str, str] = Field(default_factory=dict)
    request_timeout_seconds: float = Field(30.0, gt=0)
    restart_initial_seconds: float = Field(0.5, gt=0)
    restart_max_seconds: float = Field(30.0, gt=0)
    max_restarts: int = Field(10, ge=0, description="Consecutive failed starts before giving up")


class AnalysisConfig(_Strict):
    jedi: bool = Field(True, description="Built-in Python engine (jedi, pyflakes)")
    tree_sitter: bool = Field(True, description="Built-in structure engine for every tree-sitter language")
    index_on_start: bool = Field(True, description="Build the workspace symbol index in the background")
    watch: bool = Field(True, description="Watch the workspace for changes made outside the gateway")
    max_results: int = Field(2000, ge=1, description="Cap on any list result before pagination")
    worker_threads: int = Field(2, ge=1, le=32, description="Threads for blocking analysis work")
    index_max_files: int = Field(50_000, ge=1)
    index_max_file_bytes: int = Field(1_048_576, ge=1)
    servers: list[LanguageServerConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> AnalysisConfig:
        names = [s.name for s in self.servers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"language server names must be unique: {', '.join(duplicates)}")
        return self


class McpUpstreamConfig(_Strict):
    """An upstream MCP server whose tools, resources and prompts the gateway federates."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    command: list[str] | None = Field(None, min_length=1, description="stdio upstream: argv")
    env: dict[str, str] = Field(default_factory=dict, description="stdio upstream: extra environment")
    url: str | None = Field(None, description="streamable HTTP upstream")
    headers: dict[str, str] = Field(default_factory=dict, description="Values may name variables: ${NAME}")
    bearer_token_env: str | None = Field(None, description="Variable holding the upstream's bearer token")
    prefix: str | None = Field(None, description="Name prefix for its tools and prompts; default '<name>_'; '' ok")
    timeout_seconds: float = Field(60.0, gt=0)
    restart_initial_seconds: float = Field(0.5, gt=0)
    restart_max_seconds: float = Field(30.0, gt=0)
    max_restarts: int = Field(10, ge=0)

    @model_validator(mode="after")
    def _one_transport(self) -> McpUpstreamConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("an upstream needs exactly one of command (stdio) or url (HTTP)")
        return self


class PromptArgument(_Strict):
    name: str = Field(min_length=1)
    description: str | None = None
    required: bool = False
    completions: list[str] = Field(default_factory=list, description="Values offered by argument completion")


class PromptConfig(_Strict):
    """A prompt template offered to MCP clients; `{argument}` placeholders are filled in."""

    name: str = Field(min_length=1)
    description: str | None = None
    arguments: list[PromptArgument] = Field(default_factory=list)
    template: str = Field(min_length=1)


class McpConfig(_Strict):
    upstreams: list[McpUpstreamConfig] = Field(default_factory=list)
    prompts: list[PromptConfig] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Extra Host header values accepted on /mcp (loopback names always are)"
    )
    allowed_origins: list[str] = Field(default_factory=list, description="Extra Origin values accepted on /mcp")
    resource_max_bytes: int = Field(1_048_576, ge=1)

    @model_validator(mode="after")
    def _unique(self) -> McpConfig:
        for label, names in (
            ("upstream", [u.name for u in self.upstreams]),
            ("prompt", [p.name for p in self.prompts]),
        ):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{label} names must be unique: {', '.join(duplicates)}")
        return self


NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]*$"


class CommandToolConfig(_Strict):
    """A tool that runs a program: argv filled from validated parameters, never through a shell."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    argv: list[str] = Field(min_length=1, description="Each element may hold {param} placeholders")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}}, description="JSON Schema of the parameters"
    )
    cwd: str = Field(".", description="Working directory, relative to the workspace root")
    timeout_seconds: float = Field(60.0, gt=0)
    output_max_bytes: int = Field(65_536, ge=1)
    env_allow: list[str] = Field(default_factory=lambda: ["PATH", "HOME", "LANG"])
    read_only: bool = False
    code_action: bool = Field(False, description="Offer it as an LSP code action on files")


class HttpToolConfig(_Strict):
    """A tool that calls an HTTP API; private and loopback addresses are refused unless allowed."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str = Field(description="URL template with {param} placeholders (values are URL-encoded)")
    headers: dict[str, str] = Field(default_factory=dict, description="Values may name variables: ${NAME}")
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    body: str | None = Field(None, description="'json' sends the parameters as a JSON body")
    timeout_seconds: float = Field(30.0, gt=0)
    response_max_bytes: int = Field(1_048_576, ge=1)
    allow_private: bool = Field(False, description="Allow loopback, private and link-local addresses")
    max_redirects: int = Field(3, ge=0, le=10)
    read_only: bool = True


class ToolsConfig(_Strict):
    command: list[CommandToolConfig] = Field(default_factory=list)
    http: list[HttpToolConfig] = Field(default_factory=list)


class ModelConfig(_Strict):
    """An LLM reachable through litellm."""

    name: str = Field(pattern=NAME_PATTERN)
    model: str = Field(min_length=1, description="litellm model string, e.g. openai/gpt-4o-mini, ollama/llama3")
    api_base: str | None = None
    api_key_env: str | None = Field(None, description="Variable holding the API key")
    params: dict[str, Any] = Field(default_factory=dict, description="Default parameters (temperature, ...)")
    timeout_seconds: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)
    fim: bool = Field(False, description="The model takes fill-in-the-middle prompts (prefix/suffix)")


class AgentConfig(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    model: str = Field(description="Name of a [[models]] entry")
    system_prompt: str = ""
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    tools: list[str] = Field(default_factory=list, description="Capability names the agent may call")
    max_steps: int = Field(8, ge=1, le=100)
    token_budget: int = Field(50_000, ge=1)


class InlineCompletionConfig(_Strict):
    model: str | None = Field(None, description="Name of a [[models]] entry; unset turns inline completion off")
    debounce_ms: int = Field(150, ge=0)
    cache_size: int = Field(256, ge=0)
    max_tokens: int = Field(128, ge=1)
    add_to_completion_list: bool = False


class QueueConfig(_Strict):
    workers: int = Field(2, ge=0, le=64)
    max_attempts: int = Field(3, ge=1, le=20)
    backoff_initial_seconds: float = Field(1.0, gt=0)
    backoff_max_seconds: float = Field(60.0, gt=0)


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_lines: bool = True


class GatewayConfig(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    redis_url: str | None = None
    auth: AuthConfig = Field(default_factory=AuthConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    mcp: McpConfig = Field(default_factory=McpConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    models: list[ModelConfig] = Field(default_factory=list)
    agents: list[AgentConfig] = Field(default_factory=list)
    inline_completion: InlineCompletionConfig = Field(default_factory=InlineCompletionConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    hub: HubConfig = Field(default_factory=HubConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _references(self) -> GatewayConfig:
        models = {m.name for m in self.models}
        problems = [f"agent {a.name!r} names unknown model {a.model!r}" for a in self.agents if a.model not in models]
        inline = self.inline_completion.model
        if inline is not None and inline not in models:
            problems.append(f"inline_completion names unknown model {inline!r}")
        names = [t.name for t in self.tools.command] + [t.name for t in self.tools.http] + [a.name for a in self.agents]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            problems.append(f"tool and agent names must be unique: {', '.join(duplicates)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


class ConfigError(Exception):
    """The configuration is unreadable or invalid; `problems` lists one human line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _parse_env_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX:
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__")]
        if any(not part for part in path):
            continue
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[path[-1]] = _parse_env_value(raw)
    return result


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_validation(error: ValidationError, source: str) -> list[str]:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"{source}: {where}: {item['msg']}")
    return lines


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """Read the TOML file (if any), apply environment then explicit overrides, and validate once."""
    data: dict[str, Any] = {}
    source = str(path) if path else "defaults"
    if path is not None:
        import tomllib  # only with a file: `gateway lsp` without one starts without it

        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError([f"{path}: file not found"]) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    env = _env_overrides(os.environ if environ is None else environ)
    if env:
        data = _merge(data, env)
        source += " + GATEWAY_* environment"
    if overrides:
        data = _merge(data, overrides)
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, source)) from exc
