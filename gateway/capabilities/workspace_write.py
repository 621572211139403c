"""Write files in the workspace: `write_file`, atomic, confined to the root, in step with open documents.

The new text goes to a temporary file beside the target, is flushed to disk and then renamed over the
target (`os.replace`), so readers see the old file or the new one, never half of it. Paths that leave
the root (absolute, `..`, symlinks pointing out) are refused; a symlink inside the root is written
through (the file it points to is replaced). When the file is open in the document store, the store is
updated to the new text too, so every door sees what was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from pathlib import Path

from pydantic import BaseModel, Field

from ..config import LimitsConfig
from ..errors import (
    ContentModified,
    GatewayError,
    InvalidParams,
    NotFound,
    PathOutsideRoot,
    PayloadTooLarge,
    ToolFailed,
)
from ..events import Event
from ..execution import ExecutionContext
from ..identity import Role
from ..registry import Registry
from ..workspace import TextChange, Workspace
from .documents import DOCUMENT_TOPIC
from .files import READ_BUDGET_FACTOR

SHA256_PATTERN = r"^[0-9a-f]{64}$"
_BAD_PATH_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EINVAL, errno.ELOOP})


class WriteFileParams(BaseModel):
    path: str = Field(min_length=1, max_length=4096, description="Path relative to the workspace root")
    text: str = Field(description="The whole new content, written as UTF-8")
    create: bool = Field(True, description="Create the file (and missing parent folders) when it does not exist")
    expected_version: int | None = Field(
        None, ge=0, description="Refuse unless the file is open in the document store at this version"
    )
    expected_sha256: str | None = Field(
        None,
        pattern=SHA256_PATTERN,
        description="Refuse unless the current content (open document's text, else the file) has this SHA-256",
    )


class WriteFileResult(BaseModel):
    """What was written."""

    path: str = Field(description="Root-relative POSIX path of the file written")
    bytes: int = Field(description="Size of the new content in bytes")
    sha256: str = Field(description="SHA-256 of the new content (pass it as expected_sha256 next time)")
    created: bool = Field(description="The file did not exist before")
    version: int | None = Field(description="The open document's version after the write; null when not open")


def _umask_at_import() -> int:
    mask = os.umask(0o022)  # os.umask only reads by writing: done once, at import, before any worker thread
    os.umask(mask)
    return mask


_IMPORT_UMASK = _umask_at_import()


def _umask() -> int:
    """The umask new files get their mode from, read without changing it (Linux: /proc; else as at import)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _IMPORT_UMASK


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _current_disk_sha256(target: Path) -> str | None:
    try:
        with open(target, "rb") as fh:
            digest = hashlib.sha256()
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def _write_atomically(workspace: Workspace, rel: str, target: Path, data: bytes, create: bool) -> bool:
    """Replace `target` with `data` via a temporary file and a rename; returns whether it was created.

    Blocking: runs in a worker thread.
    """
    try:
        info: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        info = None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise InvalidParams(f"{rel!r} is a directory", data={"path": rel})
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise InvalidParams(f"{rel!r} is not a regular file", data={"path": rel})
    if info is None and not create:
        raise NotFound(f"no file {rel!r} in the workspace (create is false)", data={"path": rel})
    parent = target.parent
    if info is None:
        parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if info is not None:
            os.chmod(temp_name, stat.S_IMODE(info.st_mode))
        else:
            os.chmod(temp_name, 0o666 & ~_umask())
        # The folder may have been swapped for a symlink while we wrote: check again right before the rename.
        if os.path.realpath(parent) != str(parent):
            raise PathOutsideRoot(f"the folder of {rel!r} changed while writing", data={"path": rel})
        workspace.relative_of_absolute(parent)
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    return info is None


def _os_failure(rel: str, exc: OSError) -> GatewayError:
    """The gateway error for a failed file operation: the path's fault, or the disk's."""
    message = f"cannot write {rel!r}: {exc.strerror or exc}"
    if exc.errno in _BAD_PATH_ERRNOS:
        return InvalidParams(message, data={"path": rel})
    return ToolFailed(message, data={"path": rel})


def register(registry: Registry, limits: LimitsConfig) -> None:
    """Register `write_file`; the largest write is what `read_file` reads from disk at most."""
    max_bytes = limits.read_file_max_bytes * READ_BUDGET_FACTOR
    locks: dict[str, tuple[asyncio.Lock, int]] = {}  # one lock per path while anyone uses it, with a user count

    @registry.register(
        "write_file",
        WriteFileParams,
        WriteFileResult,
        required_role=Role.MEMBER,
        read_only=False,
        destructive=True,
        idempotent=True,
        tags=("files",),
    )
    async def write_file(ctx: ExecutionContext, params: WriteFileParams) -> WriteFileResult:
        """Write a whole file in the workspace, atomically; an open document gets the new text too.

        Creates the file (and missing folders) unless `create` is false. `expected_version` and
        `expected_sha256` make the write conditional on what the caller last saw (ContentModified
        otherwise). Paths outside the root, including through symlinks, and folders are refused.
        """
        try:
            data = params.text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidParams("text is not valid Unicode (lone surrogate)") from None
        if len(data) > max_bytes:
            raise PayloadTooLarge(
                f"text is {len(data)} bytes; the limit is {max_bytes}", data={"limit_bytes": max_bytes}
            )
        workspace = ctx.workspace
        rel, target = workspace.locate(params.path)
        if rel == ".":
            raise InvalidParams("the workspace root is a directory", data={"path": rel})
        lock, users = locks.get(rel, (asyncio.Lock(), 0))
        locks[rel] = (lock, users + 1)
        try:
            async with lock:
                doc = workspace.documents.get(rel)
                if params.expected_version is not None:
                    current = doc.version if doc is not None else None
                    if current != params.expected_version:
                        raise ContentModified(
                            f"{rel!r} is at version {current}, not {params.expected_version}"
                            if doc is not None
                            else f"{rel!r} is not open, so it has no version {params.expected_version}",
                            data={"path": rel, "current_version": current},
                        )
                if params.expected_sha256 is not None:
                    if doc is not None:
                        current_sha: str | None = _sha256(doc.text.encode("utf-8", errors="surrogatepass"))
                    else:
                        try:
                            current_sha = await asyncio.to_thread(_current_disk_sha256, target)
                        except OSError as exc:
                            raise _os_failure(rel, exc) from None
                    if current_sha != params.expected_sha256:
                        raise ContentModified(
                            f"{rel!r} has changed: its SHA-256 is {current_sha or 'none (no file)'}",
                            data={"path": rel, "current_sha256": current_sha},
                        )
                try:
                    created = await asyncio.to_thread(_write_atomically, workspace, rel, target, data, params.create)
                except OSError as exc:
                    raise _os_failure(rel, exc) from None
                doc = workspace.documents.get(rel)
                if doc is not None and doc.text != params.text:
                    doc = workspace.change(rel, [TextChange(text=params.text)])
                    await ctx.core.bus.publish(
                        Event(
                            topic=DOCUMENT_TOPIC,
                            type="document.changed",
                            data={
                                "path": doc.path,
                                "version": doc.version,
                                "by": ctx.identity.subject,
                                "door": ctx.call.door,
                            },
                        )
                    )
        finally:
            lock, users = locks[rel]
            if users == 1:
                del locks[rel]
            else:
                locks[rel] = (lock, users - 1)
        ctx.progress(f"wrote {len(data)} bytes", 100.0)
        return WriteFileResult(
            path=rel,
            bytes=len(data),
            sha256=_sha256(data),
            created=created,
            version=doc.version if doc is not None else None,
        )
