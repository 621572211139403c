"""write_file: atomic writes confined to the root, conditional on version or hash, in step with open documents."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from gateway.capabilities import documents, workspace_write
from gateway.config import LimitsConfig
from gateway.errors import ContentModified, InvalidParams, NotFound, PathOutsideRoot, PayloadTooLarge
from gateway.events import InMemoryBus
from gateway.execution import CallContext, Core
from gateway.identity import Role
from gateway.registry import Registry
from gateway.workspace import Workspace


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def build(root: Path, limits: LimitsConfig | None = None) -> Core:
    registry = Registry()
    documents.register(registry)
    workspace_write.register(registry, limits or LimitsConfig())
    return Core(registry, Workspace(root), InMemoryBus())


async def run(core: Core, name: str, **params: Any) -> dict[str, Any]:
    result = await core.execute(CallContext(), name, params)
    return result.model_dump()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*.tmp")]


async def test_creates_a_file_and_its_folders(root: Path) -> None:
    core = build(root)
    result = await run(core, "write_file", path="src/pkg/new.py", text="x = 'é'\n")
    assert result == {
        "path": "src/pkg/new.py",
        "bytes": len("x = 'é'\n".encode()),
        "sha256": sha("x = 'é'\n"),
        "created": True,
        "version": None,
    }
    assert (root / "src/pkg/new.py").read_text() == "x = 'é'\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((root / "src/pkg/new.py").stat().st_mode) == 0o666 & ~umask
    assert leftovers(root) == []


async def test_overwrites_atomically_and_keeps_the_mode(root: Path) -> None:
    target = root / "run.sh"
    target.write_text("old\n")
    target.chmod(0o750)
    inode = target.stat().st_ino
    core = build(root)
    result = await run(core, "write_file", path="run.sh", text="new\n")
    assert result["created"] is False
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
    assert target.stat().st_ino != inode  # a new file renamed over the old one, not rewritten in place
    assert leftovers(root) == []


async def test_create_false_needs_an_existing_file(root: Path) -> None:
    core = build(root)
    with pytest.raises(NotFound):
        await run(core, "write_file", path="absent.txt", text="x", create=False)
    assert not (root / "absent.txt").exists()


async def test_paths_outside_the_root_are_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("safe")
    (root / "link_dir").symlink_to(outside)
    (root / "link_file").symlink_to(outside / "victim.txt")
    (root / "dangling").symlink_to(outside / "not-yet.txt")
    core = build(root)
    for path in (
        "../outside/victim.txt",
        str(outside / "victim.txt"),
        "link_dir/victim.txt",
        "link_dir/new.txt",
        "link_file",
        "dangling",
        "a/../../outside/x",
    ):
        with pytest.raises(PathOutsideRoot):
            await run(core, "write_file", path=path, text="pwned")
    assert (outside / "victim.txt").read_text() == "safe"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]


async def test_a_symlink_inside_the_root_is_written_through(root: Path) -> None:
    (root / "real.txt").write_text("old")
    (root / "alias.txt").symlink_to("real.txt")
    core = build(root)
    result = await run(core, "write_file", path="alias.txt", text="new")
    assert result["path"] == "real.txt"
    assert (root / "alias.txt").is_symlink() and (root / "real.txt").read_text() == "new"


async def test_folders_are_refused(root: Path) -> None:
    (root / "dir").mkdir()
    core = build(root)
    for path in ("dir", ".", "dir/.."):
        with pytest.raises(InvalidParams):
            await run(core, "write_file", path=path, text="x")
    assert (root / "dir").is_dir()


async def test_expected_sha256_guards_against_lost_updates(root: Path) -> None:
    (root / "a.txt").write_text("one")
    core = build(root)
    with pytest.raises(ContentModified) as info:
        await run(core, "write_file", path="a.txt", text="two", expected_sha256=sha("something else"))
    assert info.value.data["current_sha256"] == sha("one")
    assert (root / "a.txt").read_text() == "one"
    result = await run(core, "write_file", path="a.txt", text="two", expected_sha256=sha("one"))
    assert result["sha256"] == sha("two")
    with pytest.raises(ContentModified):
        await run(core, "write_file", path="new.txt", text="x", expected_sha256=sha(""))
    with pytest.raises(InvalidParams):
        await run(core, "write_file", path="a.txt", text="x", expected_sha256="not-a-hash")


async def test_an_open_document_gets_the_new_text(root: Path) -> None:
    (root / "m.py").write_text("a = 1\n")
    core = build(root)
    await run(core, "open_document", path="m.py", version=4)
    await run(core, "change_document", path="m.py", changes=[{"text": "a = 2  # unsaved\n"}])
    with pytest.raises(ContentModified):
        await run(core, "write_file", path="m.py", text="a = 3\n", expected_version=4)
    with pytest.raises(ContentModified):  # the hash is of what every door sees: the unsaved text
        await run(core, "write_file", path="m.py", text="a = 3\n", expected_sha256=sha("a = 1\n"))
    subscription = core.bus.subscribe("documents")
    result = await run(
        core, "write_file", path="m.py", text="a = 3\n", expected_version=5, expected_sha256=sha("a = 2  # unsaved\n")
    )
    assert result["version"] == 6
    assert (await run(core, "read_document", path="m.py"))["text"] == "a = 3\n"
    assert (root / "m.py").read_text() == "a = 3\n"
    event = await asyncio.wait_for(subscription.get(), 5)
    assert event.type == "document.changed" and event.data["version"] == 6


async def test_expected_version_needs_an_open_document(root: Path) -> None:
    (root / "m.py").write_text("a = 1\n")
    core = build(root)
    with pytest.raises(ContentModified, match="not open"):
        await run(core, "write_file", path="m.py", text="b", expected_version=0)


async def test_large_texts_are_refused(root: Path) -> None:
    core = build(root, LimitsConfig(read_file_max_bytes=10))
    with pytest.raises(PayloadTooLarge):
        await run(core, "write_file", path="big.txt", text="x" * 41)
    assert (await run(core, "write_file", path="ok.txt", text="x" * 40))["bytes"] == 40


async def test_concurrent_writes_to_one_file_are_serialised(root: Path) -> None:
    core = build(root)
    texts = [f"version {i}\n" * 1000 for i in range(20)]
    await asyncio.gather(*(run(core, "write_file", path="same.txt", text=t) for t in texts))
    assert (root / "same.txt").read_text() in texts
    assert leftovers(root) == []


def test_write_file_is_a_destructive_member_capability(root: Path) -> None:
    cap = build(root).registry.get("write_file")
    assert cap.required_role is Role.MEMBER
    assert cap.destructive and not cap.read_only


async def test_impossible_paths_are_invalid_params(root: Path) -> None:
    (root / "file.txt").write_text("x")
    core = build(root)
    for path in ("n" * 300, "file.txt/child.txt", "d" * 300 + "/x.txt"):
        with pytest.raises(InvalidParams, match="cannot write"):
            await run(core, "write_file", path=path, text="x")
    with pytest.raises(InvalidParams, match="cannot write"):
        await run(core, "write_file", path="n" * 300, text="x", expected_sha256=sha("x"))
    assert (root / "file.txt").read_text() == "x"
