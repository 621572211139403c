"""The `gateway` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .startup import pause_gc, resume_gc

if TYPE_CHECKING:
    from .config import GatewayConfig

# The heavy modules (asyncio, pydantic through .config, the app) are imported inside the commands, after
# `main()` paused the garbage collector for start-up (gateway/startup.py).


class JsonFormatter(logging.Formatter):
    """One JSON object per log line on stderr."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record.msg, "fields", None) if not record.args else None
        if isinstance(fields, dict):  # a StructuredMessage (gateway.middleware): its fields as they are
            line.update(fields)
        else:
            message = record.getMessage()
            if message.startswith("{"):
                try:
                    line.update(json.loads(message))
                except ValueError:
                    line["msg"] = message
            else:
                line["msg"] = message
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line)


def _drop_request_errors(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return not (exc is not None and type(exc).__name__.startswith("JsonRpc"))


def setup_logging(config: GatewayConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.logging.json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.logging.level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # pygls logs every message it sends at INFO; keep our log about our events.
    logging.getLogger("pygls").setLevel(max(logging.WARNING, root.level))
    # pygls logs every failed request with a traceback; the door already answered it with a mapped error.
    logging.getLogger("pygls.protocol.json_rpc").addFilter(_drop_request_errors)


def _serve_overrides(args: argparse.Namespace) -> dict[str, Any]:
    server: dict[str, Any] = {}
    if args.workspace is not None:
        server["workspace"] = str(args.workspace)
    if args.host is not None:
        server["host"] = args.host
    if args.http_port is not None:
        server["http_port"] = args.http_port
    if getattr(args, "lsp_port", None) is not None:
        server["lsp_port"] = args.lsp_port
    return {"server": server} if server else {}


def _load(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> GatewayConfig:
    from .config import load_config

    return load_config(args.config, overrides=overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from .app import StartupRefused, serve

    config = _load(args, _serve_overrides(args))
    setup_logging(config)
    try:
        return asyncio.run(serve(config))
    except StartupRefused as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gateway: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 2


def cmd_lsp(args: argparse.Namespace) -> int:
    import asyncio

    from .app import run_lsp_stdio

    overrides = {"server": {"workspace": str(args.workspace)}} if args.workspace is not None else None
    config = _load(args, overrides)
    setup_logging(config)
    return asyncio.run(run_lsp_stdio(config))


def cmd_mcp(args: argparse.Namespace) -> int:
    """`gateway mcp`: the MCP door over stdio, for an MCP client (Claude Desktop) to launch."""
    import asyncio

    from .app import run_mcp_stdio

    overrides = {"server": {"workspace": str(args.workspace)}} if args.workspace is not None else None
    config = _load(args, overrides)
    setup_logging(config)
    return asyncio.run(run_mcp_stdio(config))


def cmd_config_check(args: argparse.Namespace) -> int:
    config = _load(args)
    from .app import StartupRefused, check_exposure

    try:
        check_exposure(config)
    except StartupRefused as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 1
    where = args.config or "defaults"
    print(f"config ok: {where}")
    return 0


def cmd_hash_key(args: argparse.Namespace) -> int:
    from .auth import generate_api_key, hash_api_key

    key = args.key or generate_api_key()
    if not args.key:
        print(f"key:  {key}")
    print(f"hash: {hash_api_key(key)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="LSP, MCP, REST and a workspace hub in one process.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway's network listeners")
    serve.add_argument("--config", type=Path, help="TOML config file")
    serve.add_argument("--workspace", type=Path, help="workspace root (default: current directory)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--http-port", type=int, help="HTTP port (default 8765; 0 picks a free port)")
    serve.add_argument("--lsp-port", type=int, help="LSP over TCP port (default 2087; 0 picks a free port)")
    serve.set_defaults(func=cmd_serve)

    lsp_cmd = sub.add_parser("lsp", help="serve LSP over stdio (for an editor to launch)")
    lsp_cmd.add_argument("--config", type=Path, help="TOML config file")
    lsp_cmd.add_argument("--workspace", type=Path, help="workspace root (default: current directory)")
    lsp_cmd.set_defaults(func=cmd_lsp)

    mcp_cmd = sub.add_parser("mcp", help="serve MCP over stdio (for an MCP client such as Claude Desktop to launch)")
    mcp_cmd.add_argument("--config", type=Path, help="TOML config file")
    mcp_cmd.add_argument("--workspace", type=Path, help="workspace root (default: current directory)")
    mcp_cmd.set_defaults(func=cmd_mcp)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config file and print clear errors")
    check.add_argument("--config", type=Path, help="TOML config file")
    check.set_defaults(func=cmd_config_check)

    auth = sub.add_parser("auth", help="authentication tools")
    auth_sub = auth.add_subparsers(dest="auth_command", required=True)
    hash_key = auth_sub.add_parser("hash-key", help="make an API key (or hash a given one) for [auth] api_keys")
    hash_key.add_argument("key", nargs="?", help="the key to hash; a new one is generated when absent")
    hash_key.set_defaults(func=cmd_hash_key)
    return parser


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    pause_gc()  # until the first client is answered (Gateway.ready) or the command ends
    args = build_parser().parse_args(argv)
    from .config import ConfigError

    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print("config error:", file=sys.stderr)
        for line in exc.problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        resume_gc()
    logging.getLogger("gateway").debug("exited after %.3fs", time.monotonic() - started)
    return code


if __name__ == "__main__":
    sys.exit(main())
