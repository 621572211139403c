"""Presets for well-known language servers: command, languages and file globs by name."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import LanguageServerConfig
from ..errors import InvalidParams


@dataclass(frozen=True)
class Preset:
    command: tuple[str, ...]
    languages: tuple[str, ...]
    globs: tuple[str, ...]


PYTHON = (("python",), ("**/*.py", "**/*.pyi"))
TS_LANGS = ("typescript", "typescriptreact", "javascript", "javascriptreact")
TS_GLOBS = ("**/*.ts", "**/*.tsx", "**/*.js", "**/*.jsx", "**/*.mjs", "**/*.cjs")

PRESETS: dict[str, Preset] = {
    "pyright": Preset(("pyright-langserver", "--stdio"), *PYTHON),
    "basedpyright": Preset(("basedpyright-langserver", "--stdio"), *PYTHON),
    "pylsp": Preset(("pylsp",), *PYTHON),
    "jedi-language-server": Preset(("jedi-language-server",), *PYTHON),
    "typescript-language-server": Preset(("typescript-language-server", "--stdio"), TS_LANGS, TS_GLOBS),
    "gopls": Preset(("gopls",), ("go",), ("**/*.go",)),
    "rust-analyzer": Preset(("rust-analyzer",), ("rust",), ("**/*.rs",)),
    "clangd": Preset(
        ("clangd",), ("c", "cpp"), ("**/*.c", "**/*.h", "**/*.cc", "**/*.cpp", "**/*.cxx", "**/*.hpp", "**/*.hh")
    ),
}


@dataclass(frozen=True)
class ResolvedServer:
    """A language server's config with its preset applied: everything needed to start it."""

    config: LanguageServerConfig
    command: tuple[str, ...]
    languages: tuple[str, ...]
    globs: tuple[str, ...]


def resolve_server(config: LanguageServerConfig) -> ResolvedServer:
    """Fill command, languages and globs from the preset; refuse a server with no command."""
    preset = PRESETS.get(config.preset or config.name)
    if config.preset and preset is None:
        raise InvalidParams(f"unknown language server preset {config.preset!r}; known: {', '.join(sorted(PRESETS))}")
    command = tuple(config.command) if config.command else (preset.command if preset else ())
    if not command:
        raise InvalidParams(f"language server {config.name!r} needs a command (or a preset name)")
    languages = tuple(config.languages) if config.languages is not None else (preset.languages if preset else ())
    globs = tuple(config.globs) if config.globs is not None else (preset.globs if preset else ())
    return ResolvedServer(config, command, languages, globs)
