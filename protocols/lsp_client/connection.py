"""One language-server child process and the JSON-RPC session over its stdio, on the caller's event loop.

pygls supplies the JSON-RPC protocol (framing, lsprotocol (de)serialisation, dispatch of the server's
requests and notifications to registered handlers). The process is created here rather than by pygls'
`start_io` so that the child gets a parent-death signal, its own process group, a drained stderr, and so
that a request in flight when the process dies fails at once with `ServerExited` instead of hanging.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import functools
import itertools
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cattrs
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException, PyglsError
from pygls.io_ import run_async
from pygls.lsp.client import LanguageClient
from pygls.protocol import JsonRPCProtocol, JsonRPCRequestMessage

from protocols.jsonrpc import FastDispatch

log = logging.getLogger("protocols.lsp_client")
stderr_log = logging.getLogger("protocols.lsp_client.stderr")
wire_log = logging.getLogger("protocols.lsp_client.wire")

PR_SET_PDEATHSIG = 1
REPLY_PARSE_ERROR = -32099  # a code of our own: the server's reply did not match the lsprotocol types
_STDERR_LINE_MAX = 4000

try:  # resolved once in the parent: the child only makes the call (no dlopen between fork and exec)
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _die_with_parent(parent_pid: int) -> None:
    """Runs in the child between fork and exec: SIGKILL me when my parent dies (Linux), even by SIGKILL."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class ServerExited(Exception):
    """The language server process ended while a request was waiting for its reply."""

    def __init__(self, returncode: int | None) -> None:
        super().__init__(f"the language server process exited (code {returncode})")
        self.returncode = returncode


class _Client(LanguageClient):
    """The pygls client object the protocol reports to; errors go to our log, not to stdout."""

    def report_server_error(self, error: Exception, source: type[PyglsError] | type[JsonRpcException]) -> None:
        log.warning("language server protocol error (%s): %s", source.__name__, error)


class _Protocol(FastDispatch):
    """pygls' LSP protocol as a client's: none of the server-side built-in handlers (a server sending us
    `exit` would otherwise `sys.exit` the gateway, and `shutdown` would make us ignore it from then on); a
    request whose reply cannot be parsed fails instead of waiting forever; a server request that cannot be
    parsed is still answered."""

    def _register_builtin_features(self) -> None:
        """Register nothing: initialize/shutdown/exit/didOpen... are a server's to handle, not ours."""

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except Exception as exc:
            if "jsonrpc" not in data or "id" not in data:
                raise  # a notification: logged by the reader loop and dropped
            cause = exc.__cause__ or exc
            if "method" in data:  # a server request: hand it on untyped; the handler's failure is answered
                return JsonRPCRequestMessage(id=data["id"], method=data["method"], jsonrpc=data["jsonrpc"], params=None)
            if isinstance(cause, cattrs.BaseValidationError):
                detail = "; ".join(cattrs.transform_error(cause, path="reply"))
            else:
                detail = f"{type(cause).__name__}: {cause}"
            return lsp.ResponseErrorMessage(
                id=data["id"], error=lsp.ResponseError(code=REPLY_PARSE_ERROR, message=detail[:2000])
            )


Handler = Callable[[Any], Any]


def _plain(handler: Handler) -> Handler:
    def call(params: Any) -> Any:
        return handler(params)

    return call


class LspConnection:
    """A started language server: send requests and notifications, learn when it exits.

    `handlers` answer the server's requests and notifications by method name; they run on the event loop
    and must not block."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        handlers: Mapping[str, Handler] | None = None,
    ) -> None:
        self.name = name
        self.command = tuple(command)
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self._client = _Client(name="gateway", version="1", protocol_cls=_Protocol)
        self.protocol: JsonRPCProtocol = self._client.protocol
        for method, handler in (handlers or {}).items():
            # pygls sets attributes on what it registers, which a bound method refuses: register a plain function.
            self.protocol.fm.feature(method)(_plain(handler))
        self._process: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = threading.Event()
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._exited = asyncio.Event()
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Spawn the process (its own process group, killed if we die) and start reading its output."""
        self._process = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.cwd,
            env=self.env,
            start_new_session=True,  # Ctrl-C in a terminal reaches the gateway, which shuts servers down
            preexec_fn=functools.partial(_die_with_parent, os.getpid()),
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self.protocol.set_writer(self._process.stdin)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read(self._process.stdout), name=f"lsp-read-{self.name}"),
            loop.create_task(self._drain_stderr(), name=f"lsp-stderr-{self.name}"),
            loop.create_task(self._watch(), name=f"lsp-watch-{self.name}"),
        ]

    @property
    def pid(self) -> int | None:
        """The process id (None before `start`)."""
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has ended."""
        return None if self._process is None else self._process.returncode

    @property
    def exited(self) -> bool:
        """True once the process has ended and its output has been read."""
        return self._exited.is_set()

    @property
    def in_flight(self) -> int:
        """How many requests are waiting for a reply."""
        return len(self._pending)

    async def wait_exit(self) -> int | None:
        """Wait until the process has ended; its exit status."""
        await self._exited.wait()
        return self.returncode

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        await run_async(
            stop_event=self._stop,
            reader=stdout,
            protocol=self.protocol,
            logger=wire_log,
            error_handler=self._client._report_server_error,
        )

    async def _drain_stderr(self) -> None:
        """Log the server's stderr at debug level, line by line, so the pipe never fills."""
        assert self._process is not None and self._process.stderr is not None
        stream = self._process.stderr
        buffer = b""
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                break
            if not stderr_log.isEnabledFor(logging.DEBUG):
                continue  # drained and dropped
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                stderr_log.debug("[%s] %s", self.name, line[:_STDERR_LINE_MAX].decode("utf-8", "replace").rstrip())
            if len(buffer) > _STDERR_LINE_MAX:
                stderr_log.debug("[%s] %s", self.name, buffer[:_STDERR_LINE_MAX].decode("utf-8", "replace"))
                buffer = b""
        if buffer:
            stderr_log.debug("[%s] %s", self.name, buffer[:_STDERR_LINE_MAX].decode("utf-8", "replace").rstrip())

    async def _watch(self) -> None:
        """When the process ends: read what it wrote before dying, then fail every waiting request."""
        assert self._process is not None
        returncode = await self._process.wait()
        reader = self._tasks[0]
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            # A grandchild holding the pipe open must not keep us waiting for EOF.
            await asyncio.wait_for(asyncio.shield(reader), 1.0)
        self._stop.set()
        reader.cancel()
        log_level = logging.DEBUG if self._closing else logging.WARNING
        log.log(log_level, "language server %s (pid %s) exited with code %s", self.name, self.pid, returncode)
        for future in list(self._pending.values()):
            if not future.done():
                future.set_exception(ServerExited(returncode))
        self._exited.set()

    # -- messages -------------------------------------------------------------------------------------
    def notify(self, method: str, params: Any = None) -> None:
        """Send a notification (dropped once the process has ended)."""
        if self._exited.is_set() or self._process is None:
            return
        self.protocol.notify(method, params)

    async def request(self, method: str, params: Any, timeout: float) -> Any:
        """Send a request and wait for its reply.

        Raises TimeoutError after `timeout` seconds (the server is told to cancel), `JsonRpcException` for an
        error reply, and `ServerExited` when the process ends first."""
        if self._exited.is_set() or self._process is None:
            raise ServerExited(self.returncode)
        loop = asyncio.get_running_loop()
        msg_id = str(next(self._ids))
        waiter: asyncio.Future[Any] = loop.create_future()
        self._pending[msg_id] = waiter

        def settle(reply: concurrent.futures.Future[Any]) -> None:
            if waiter.done():
                return
            if reply.cancelled():
                waiter.cancel()
            elif (exc := reply.exception()) is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(reply.result())

        # pygls keeps its own future for the reply; ours is separate so that giving up on a request
        # (timeout, cancellation) never makes pygls resolve a cancelled future when the reply comes late.
        reply = self.protocol.send_request(method, params, msg_id=msg_id)
        loop_thread = threading.get_ident()

        def on_reply(fut: concurrent.futures.Future[Any]) -> None:
            # pygls settles its future in the reader task, on this loop's thread: settle ours right there
            # rather than through call_soon_threadsafe (a self-pipe write and one more loop iteration).
            if threading.get_ident() == loop_thread:
                settle(fut)
            else:
                loop.call_soon_threadsafe(settle, fut)

        reply.add_done_callback(on_reply)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except (TimeoutError, asyncio.CancelledError):
            if not waiter.done() or waiter.cancelled():
                self.notify("$/cancelRequest", lsp.CancelParams(id=msg_id))
            raise
        finally:
            self._pending.pop(msg_id, None)

    # -- shutting down --------------------------------------------------------------------------------
    async def close(self, timeout: float = 2.0, *, graceful: bool = True, exit_wait: float = 1.0) -> None:
        """Ask the server to shut down (waiting up to `timeout` seconds) and exit (up to `exit_wait` seconds)
        when `graceful` (it was initialised); then terminate, then kill its process group, `timeout` each."""
        self._closing = True
        process = self._process
        if process is None:
            return
        if graceful and process.returncode is None and not self._exited.is_set():
            with contextlib.suppress(Exception):
                await self.request("shutdown", None, timeout)
            self.notify("exit")
            with contextlib.suppress(Exception):
                if process.stdin is not None:
                    process.stdin.close()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and process.returncode is None:
                self._signal_group(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited.wait()), exit_wait if sig is None else timeout)
            if self._exited.is_set():
                break
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._process is None or self._process.returncode is not None:
            return
        try:
            os.killpg(self._process.pid, sig)  # the server and whatever it started
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(sig)


__all__ = ["REPLY_PARSE_ERROR", "Handler", "LspConnection", "ServerExited"]
