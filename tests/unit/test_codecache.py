"""The bytecode cache for attrs/cattrs-generated methods (gateway/codecache.py)."""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
from pathlib import Path

import attrs
import cattrs
import pytest

from gateway import codecache
from gateway.codecache import CodeCache

SOURCE = "def f(x: int) -> int:\n    return x * 2\n"


def _run(code: object) -> object:
    namespace: dict[str, object] = {}
    exec(code, namespace)
    return namespace


def test_cached_code_equals_what_compile_returns_and_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "cache.marshal"
    first = CodeCache(path)
    code = first.compile(SOURCE, "<generated f>", "exec")
    expected = compile(SOURCE, "<generated f>", "exec")
    assert marshal.dumps(code) == marshal.dumps(expected)
    assert (first.hits, first.misses) == (0, 1)
    assert first.compile(SOURCE, "<generated f>", "exec") is code  # same process: the same object
    assert first.save() is True
    assert first.save() is False  # nothing new since

    second = CodeCache(path)
    again = second.compile(SOURCE, "<generated f>", "exec")
    assert (second.hits, second.misses) == (1, 0)
    assert marshal.dumps(again) == marshal.dumps(expected)
    assert again.co_filename == "<generated f>"
    func = _run(again)["f"]
    assert func(21) == 42  # type: ignore[operator]


def test_the_key_covers_source_filename_mode_and_future_flags(tmp_path: Path) -> None:
    cache = CodeCache(tmp_path / "c")
    cache.compile(SOURCE, "<a>", "exec")
    cache.compile(SOURCE + "\n", "<a>", "exec")
    cache.compile(SOURCE, "<b>", "exec")
    cache.compile("1 + 1", "<a>", "eval")
    cache.compile("1 + 1", "<a>", "exec")
    assert cache.misses == 5
    # `from __future__ import annotations` in the caller changes what compile() inherits, so the key too.
    plain: dict[str, object] = {"cache": cache}
    caller = compile("def call(src):\n    return cache.compile(src, '<ann>', 'exec')\n", "<plain>", "exec", 0, True)
    exec(caller, plain)
    future: dict[str, object] = {"cache": cache}
    exec(
        "from __future__ import annotations\ndef call(src):\n    return cache.compile(src, '<ann>', 'exec')\n",
        future,
    )
    source = "def g(x: undefined_name) -> None:\n    pass\n"
    lazy = future["call"](source)  # type: ignore[operator]
    eager = plain["call"](source)  # type: ignore[operator]
    assert cache.misses == 7
    assert _run(lazy)["g"].__annotations__ == {"x": "undefined_name", "return": "None"}  # type: ignore[attr-defined]
    with pytest.raises(NameError):
        _run(eager)


def test_other_calls_pass_through_untouched(tmp_path: Path) -> None:
    cache = CodeCache(tmp_path / "c")
    code = cache.compile(b"x = 1", "<bytes>", "exec")
    import ast

    tree = cache.compile(SOURCE, "<ast>", "exec", 0x400)  # ast.PyCF_ONLY_AST
    assert isinstance(tree, ast.Module)
    assert _run(code)["x"] == 1
    assert (cache.hits, cache.misses, cache.entries) == (0, 0, {})


@pytest.mark.parametrize(
    "content",
    [b"", b"not a cache at all", b"gateway-codecache-1\0" + b"\x00\x00\x00\x00garbage", marshal.dumps({1: 2})],
)
def test_a_broken_or_foreign_file_is_ignored_and_replaced(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "cache.marshal"
    path.write_bytes(content)
    cache = CodeCache(path)
    assert cache.entries == {}
    cache.compile(SOURCE, "<f>", "exec")
    assert cache.save() is True
    assert CodeCache(path).compile(SOURCE, "<f>", "exec") is not None
    assert len(CodeCache(path).entries) == 1


def test_the_file_keeps_what_the_last_writer_used_and_save_never_raises(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cache.marshal"
    one = CodeCache(path)
    one.compile("a = 1", "<a>", "exec")
    one.compile("b = 2", "<b>", "exec")
    assert one.save()
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    two = CodeCache(path)
    assert len(two.entries) == 2
    two.compile("b = 2", "<b>", "exec")  # used from the file
    two.compile("c = 3", "<c>", "exec")  # new
    two.release()  # start-up is over: the unused entry ("a") leaves memory
    assert two.entries == {}
    assert two.compile("b = 2", "<b>", "exec") is not None and two.misses == 1  # still known: it was used
    assert two.save()
    assert len(CodeCache(path).entries) == 2  # b and c: what the last writer used; a is gone
    blocked = CodeCache(tmp_path / "file-not-dir" / "x")
    (tmp_path / "file-not-dir").write_text("a file where the directory should be")
    blocked.compile("c = 3", "<c>", "exec")
    assert blocked.save() is False


def test_attrs_and_cattrs_classes_built_through_the_cache_behave_the_same(tmp_path: Path) -> None:
    path = tmp_path / "cache.marshal"

    def build() -> tuple[type, cattrs.Converter]:
        @attrs.define
        class Point:
            x: int
            y: int = 0
            tags: list[str] = attrs.field(factory=list)

        return Point, cattrs.Converter()

    for round_ in range(2):
        cache = CodeCache(path)
        cache.install()
        try:
            point_cls, converter = build()
            point = converter.structure({"x": 1, "tags": ["a"]}, point_cls)
            assert point == point_cls(1, 0, ["a"])
            assert repr(point) == "Point(x=1, y=0, tags=['a'])"
            assert converter.unstructure(point) == {"x": 1, "y": 0, "tags": ["a"]}
            with pytest.raises(Exception):  # noqa: B017 - cattrs' own error for a missing field
                converter.structure({}, point_cls)
        finally:
            cache.uninstall()
        if round_ == 0:
            assert cache.misses > 0 and cache.save()
        else:
            assert cache.hits > 0
    import attr._make

    assert "compile" not in vars(attr._make)  # uninstall gave the builtin back


def _initialize(env: dict[str, str], workspace: Path) -> dict[str, object]:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "capabilities": {}}}
    ).encode()
    exit_ = b'{"jsonrpc":"2.0","method":"exit"}'
    frames = b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    shutdown = b'{"jsonrpc":"2.0","id":2,"method":"shutdown"}'
    frames += b"Content-Length: %d\r\n\r\n%s" % (len(shutdown), shutdown)
    frames += b"Content-Length: %d\r\n\r\n%s" % (len(exit_), exit_)
    gateway = Path(sys.executable).with_name("gateway")
    done = subprocess.run(
        [str(gateway), "lsp", "--workspace", str(workspace)],
        input=frames,
        capture_output=True,
        env={**os.environ, **env},
        timeout=60,
        check=True,
    )
    data = done.stdout
    while data:
        header, _, rest = data.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in header.split(b"\r\n") if line.startswith(b"Content-Length"))
        message: dict[str, object] = json.loads(rest[:length])
        if message.get("id") == 1:
            return message
        data = rest[length:]
    raise AssertionError(f"no initialize result in {done.stdout!r}")


def test_gateway_lsp_writes_the_cache_and_answers_the_same_from_it(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    cache_dir = tmp_path / "cache"
    env = {"GATEWAY_SERVER__CODE_CACHE_DIR": str(cache_dir)}
    cold = _initialize(env, workspace)
    files = list(cache_dir.glob("generated-*.marshal"))
    assert len(files) == 1
    assert len(CodeCache(files[0]).entries) > 500  # lsprotocol's classes and the hooks for initialize
    written = files[0].stat().st_mtime_ns
    warm = _initialize(env, workspace)
    assert warm == cold
    # Everything came from the cache but cattrs' own hashable classes (their source differs per process:
    # codecache.MIN_NEW), so nothing was written.
    assert files[0].stat().st_mtime_ns == written
    off = _initialize({"GATEWAY_SERVER__CODE_CACHE": "false", "XDG_CACHE_HOME": str(tmp_path / "xdg")}, workspace)
    assert off == cold
    assert not (tmp_path / "xdg").exists()


def test_enable_installs_once_in_the_given_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codecache, "_active", None)
    try:
        cache = codecache.enable(tmp_path)
        assert cache.path == tmp_path / f"generated-{sys.implementation.cache_tag}.marshal"
        assert codecache.enable(tmp_path / "elsewhere") is cache
    finally:
        active = codecache._active
        if active is not None:
            active.uninstall()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert codecache.default_dir() == tmp_path / "xdg" / "gateway"
