"""Benchmark (issue #7): y-websocket fan-out, one writer and many subscribers on one document.

Peers in the same run, on the same protocol (y-websocket sync + update messages, one shared Y.Text):

- `gateway`: `gateway serve`, `/yjs/<path>` on the HTTP listener (embedded store: the state directory);
- `js-ref`: the reference JS server `@y/websocket-server` 0.1.1 with yjs 13 (tests/yjs/node_modules);
- `pycrdt-ws`: pycrdt-websocket 0.16.5 (`bench/pycrdt_ws_server.py`: WebsocketServer + ASGIServer on uvicorn).

For 100, 500 and 1,000 subscribers, one writer inserts a small marker `@<send time µs>;` at the end of
the text at a steady rate (a pycrdt doc makes the Yjs updates). Subscribers are raw asyncio protocols in
two worker processes that speak the WebSocket framing and the y-websocket sync messages by hand: they
answer sync step 1, and read markers straight out of update / step 2 payloads (no Yjs decoding), so the
client side stays cheap. Latency is subscriber receive time minus the send time in the marker (both
CLOCK_MONOTONIC, which every process on the machine shares). Delivered/s counts markers received inside
the measured window; p50/p99 are over updates sent inside the window.

Also measured: the latency Redis adds between two gateway instances (writer on one, subscribers on the
other, vs both on one), and RSS per idle y-websocket connection (server RSS with N idle connections vs
one).

    .venv/bin/python bench/hub.py            # about 4 minutes
    .venv/bin/python bench/hub.py --quick    # about 1 minute

The machine has few cores: clients and servers share them (the OS schedules them; `--pin` puts the server
under test on CPU 0 and the writer and subscriber processes on CPU 1, which suffers more from other load).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import multiprocessing
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
YJS_DIR = ROOT / "tests" / "yjs"
JS_SERVER = YJS_DIR / "node_modules" / "@y" / "websocket-server" / "src" / "server.js"
PYCRDT_SERVER = Path(__file__).resolve().parent / "pycrdt_ws_server.py"
GATEWAY = [sys.executable, "-m", "gateway.cli"]

MARK = re.compile(rb"@(\d{16});")
# y-websocket messages a subscriber sends: its sync step 1 (empty state vector) and sync step 2 (nothing).
STEP1_EMPTY = b"\x00\x00\x01\x00"
STEP2_EMPTY = b"\x00\x01\x02\x00\x00"
WS_KEY = base64.b64encode(b"hub-bench-key-16").decode()


def now_us() -> int:
    return time.monotonic_ns() // 1000


def client_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """A masked client frame with the all-zero mask (valid, and the payload needs no XOR)."""
    size = len(payload)
    if size < 126:
        header = bytes([0x80 | opcode, 0x80 | size])
    elif size < 65536:
        header = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    return header + b"\x00\x00\x00\x00" + payload


# -- subscriber worker process --------------------------------------------------------------------------------
class Subscriber:
    """One y-websocket subscriber socket: the handshake, frame parsing and sync replies by hand."""

    __slots__ = ("buf", "error", "sock", "synced", "upgraded")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.upgraded = False
        self.synced = False
        self.error: str | None = None


class Worker:
    """A subscriber process: non-blocking sockets on one epoll loop (cheaper per read than asyncio)."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.epoll = select.epoll()
        self.epoll.register(pipe.fileno(), select.EPOLLIN)
        self.subs: dict[int, Subscriber] = {}
        self.sends = array.array("q")
        self.lats = array.array("q")
        self.closed = 0
        self.errors: list[str] = []

    # -- sockets --------------------------------------------------------------------------------------------
    def connect(self, host: str, port: int, path: str, count: int) -> int:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.errors = []
        ok = 0
        for first in range(0, count, 32):  # in batches: no listen backlog overflows
            batch = []
            for _ in range(min(32, count - first)):
                try:
                    sock = socket.create_connection((host, port), timeout=10)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sock.sendall(request)
                    sock.setblocking(False)
                except OSError as exc:
                    self.errors.append(repr(exc))
                    continue
                sub = Subscriber(sock)
                self.subs[sock.fileno()] = sub
                self.epoll.register(sock.fileno(), select.EPOLLIN)
                batch.append(sub)
            deadline = now_us() + 30_000_000
            while now_us() < deadline and not all(s.synced or s.error for s in batch):
                self.pump(0.05, commands=False)
            for sub in batch:
                if sub.synced:
                    ok += 1
                else:
                    self.errors.append(sub.error or "no sync step 2 within 30 s")
                    self.drop(sub)
        return ok

    def drop(self, sub: Subscriber) -> None:
        fd = sub.sock.fileno()
        if fd in self.subs:
            del self.subs[fd]
            with contextlib.suppress(OSError):
                self.epoll.unregister(fd)
            sub.sock.close()

    def close_all(self) -> None:
        close = client_frame((1000).to_bytes(2, "big"), 0x8)
        for sub in list(self.subs.values()):
            with contextlib.suppress(OSError):
                sub.sock.send(close)
            self.drop(sub)

    # -- the loop ---------------------------------------------------------------------------------------------
    def pump(self, timeout: float, commands: bool = True) -> Any:
        """Read whatever is ready; returns a command from the parent if one came (and `commands`)."""
        subs = self.subs
        pipe_fd = self.pipe.fileno()
        command = None
        for fd, _ in self.epoll.poll(timeout):
            if fd == pipe_fd:
                if commands:
                    command = self.pipe.recv()
                continue
            sub = subs.get(fd)
            if sub is None:
                continue
            try:
                data = sub.sock.recv(262144)
            except BlockingIOError:
                continue
            except OSError as exc:
                data = b""
                sub.error = repr(exc)
            if not data:
                self.closed += 1
                self.drop(sub)
                continue
            self.received(sub, data, now_us())
        return command

    def received(self, sub: Subscriber, data: bytes, received: int) -> None:
        buf = sub.buf + data if sub.buf else data
        if not sub.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                sub.buf = buf
                return
            status = buf[: buf.find(b"\r\n")]
            if b" 101 " not in status:
                sub.error = status.decode(errors="replace")
                self.drop(sub)
                return
            buf = buf[end + 4 :]
            sub.upgraded = True
            sub.sock.send(client_frame(STEP1_EMPTY))
        pos, size = 0, len(buf)
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            header = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                header = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                header = 10
            end = pos + header + length
            if end > size:
                break
            opcode = buf[pos] & 0x0F
            start = pos + header
            pos = end
            if opcode == 0x2:
                if length < 2 or buf[start] != 0:
                    continue  # awareness and anything else: not counted
                step = buf[start + 1]
                if step == 0:
                    sub.sock.send(client_frame(STEP2_EMPTY))
                    continue
                for mark in MARK.findall(buf, start, end):
                    sent = int(mark)
                    self.sends.append(sent)
                    self.lats.append(received - sent)
                if step == 1:
                    sub.synced = True
            elif opcode == 0x9:
                sub.sock.send(client_frame(buf[start:end], 0xA))
            elif opcode == 0x8:
                self.drop(sub)
                return
        sub.buf = buf[pos:] if pos < size else b""

    def run(self) -> None:
        """Serve the parent's commands; read subscriber sockets in between."""
        while True:
            command = self.pump(1.0)
            if command is None:
                continue
            op = command[0]
            if op == "connect":
                _, host, port, path, count = command
                ok = self.connect(host, port, path, count)
                self.pipe.send(("ready", ok, self.errors[:3]))
            elif op == "collect":
                while now_us() < command[1]:
                    self.pump(max(0.0, (command[1] - now_us()) / 1e6), commands=False)
                self.pipe.send(("data", self.sends.tobytes(), self.lats.tobytes(), self.closed))
            elif op == "close":
                self.close_all()
                self.sends, self.lats, self.closed = array.array("q"), array.array("q"), 0
                self.pipe.send(("closed",))
            elif op == "exit":
                self.close_all()
                return


def worker_main(pipe: Any, cpu: int | None) -> None:
    """A subscriber process: commands from the parent over `pipe`, one at a time."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    Worker(pipe).run()


# -- the writer ---------------------------------------------------------------------------------------------
async def run_writer(url: str, rate: float, start_us: int, stop_us: int) -> int:
    """Insert one marker every 1/rate s between start_us and stop_us; returns how many it sent."""
    from pycrdt import Doc, Text, create_sync_message, create_update_message, handle_sync_message
    from websockets.asyncio.client import connect

    doc: Doc[Any] = Doc()
    text = doc.get("content", type=Text)
    pending: list[bytes] = []
    doc.observe(lambda event: pending.append(event.update))
    async with connect(url, max_size=None, compression=None, ping_interval=None) as ws:
        await ws.send(create_sync_message(doc))
        while True:  # wait for the server's step 2; answer its step 1
            message = await ws.recv()
            assert isinstance(message, bytes)
            if message[0] == 0:
                reply = handle_sync_message(message[1:], doc)
                if reply is not None:
                    await ws.send(reply)
                if message[1] == 1:
                    break
        pending.clear()

        async def drain() -> None:  # echoes (pycrdt-websocket) and awareness: read and drop
            with contextlib.suppress(Exception):
                async for _ in ws:
                    pass

        drainer = asyncio.create_task(drain())
        sent = 0
        interval = 1e6 / rate
        await asyncio.sleep(max(0.0, (start_us - now_us()) / 1e6))
        while True:
            due = start_us + sent * interval
            if due >= stop_us:
                break
            delay = (due - now_us()) / 1e6
            if delay > 0:
                await asyncio.sleep(delay)
            text.insert(len(text), f"@{now_us():016d};")
            for update in pending:
                await ws.send(create_update_message(update))
            pending.clear()
            sent += 1
        drainer.cancel()
        return sent


# -- servers -----------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {port}:\n{log.read_text()[-3000:]}")


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    prefix: str  # URL path prefix before the document name
    workspace: Path | None = None

    def path(self, doc: str) -> str:
        return f"{self.prefix}/{doc}"

    def make_doc(self, doc: str) -> None:
        if self.workspace is not None:
            (self.workspace / doc).write_text("")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def pin_to(cpu: int | None) -> Any:
    """A preexec_fn that pins the child (and every thread it starts: node has several) to `cpu`."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def start_server(
    name: str, tmp: Path, cpu: int | None, *, workspace: Path | None = None, env: dict[str, str] | None = None
) -> Server:
    log = tmp / f"{name}.log"
    port = free_port()
    full_env = {**os.environ, **(env or {})}
    cwd = None
    prefix = ""
    if name.startswith("gateway"):
        assert workspace is not None
        cmd = [*GATEWAY, "serve", "--workspace", str(workspace), "--http-port", str(port), "--lsp-port", "0"]
        prefix = "/yjs"
    elif name == "js-ref":
        cmd = ["node", str(JS_SERVER)]
        full_env.update(HOST="127.0.0.1", PORT=str(port))
        cwd = str(YJS_DIR)
    elif name == "pycrdt-ws":
        cmd = [sys.executable, str(PYCRDT_SERVER), str(port)]
    else:
        raise ValueError(name)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=cwd, preexec_fn=pin_to(cpu)
        )
    wait_port(port, proc, log)
    return Server(name, proc, port, prefix, workspace)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- one scenario ----------------------------------------------------------------------------------------------
@dataclass
class Result:
    subscribers: int
    connected: int
    sent: int
    delivered_per_s: float
    p50_ms: float
    p99_ms: float
    delivered_pct: float
    server_cpu_pct: float
    client_cpu_pct: float
    dropped: int


def pct(values: list[int], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(p / 100 * len(values)))] / 1000


class Clients:
    """The subscriber worker processes (started once, reused by every scenario)."""

    def __init__(self, workers: int, cpu: int | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes = []
        self.procs = []
        for _ in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child, cpu), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    async def ask(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        for pipe, cmd in zip(self.pipes, commands, strict=True):
            pipe.send(cmd)
        return await asyncio.gather(*(asyncio.to_thread(pipe.recv) for pipe in self.pipes))

    async def connect(self, host: str, port: int, path: str, count: int) -> int:
        # One subscriber alone first: it creates the document on the server (pycrdt-websocket 0.16.5 drops
        # every connection that races the first one into a new room).
        self.pipes[0].send(("connect", host, port, path, 1))
        replies = [await asyncio.to_thread(self.pipes[0].recv)]
        rest = count - 1
        share = [rest // len(self.pipes) + (i < rest % len(self.pipes)) for i in range(len(self.pipes))]
        replies += await self.ask([("connect", host, port, path, n) for n in share])
        errors = [e for r in replies for e in r[2]]
        connected = sum(r[1] for r in replies)
        if errors:
            print(f"  ! {count - connected} of {count} subscribers failed: {errors[:3]}", flush=True)
        return connected

    async def close(self) -> None:
        await self.ask([("close",)] * len(self.pipes))

    def exit(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(Exception):
                pipe.send(("exit",))
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()


async def scenario(
    clients: Clients,
    writer_server: Server,
    sub_server: Server,
    doc: str,
    subscribers: int,
    rate: float,
    warmup: float,
    seconds: float,
    drain: float,
) -> Result:
    writer_server.make_doc(doc)
    if sub_server is not writer_server:
        sub_server.make_doc(doc)
    connected = await clients.connect("127.0.0.1", sub_server.port, sub_server.path(doc), subscribers)
    start = now_us() + 300_000
    window_start = start + int(warmup * 1e6)
    window_stop = window_start + int(seconds * 1e6)
    server_pids = {sub_server.proc.pid, writer_server.proc.pid}
    client_pids = [p.pid for p in clients.procs if p.pid is not None] + [os.getpid()]
    wall_before = now_us()
    cpu_before = sum(map(cpu_seconds, server_pids)), sum(map(cpu_seconds, client_pids))
    url = f"ws://127.0.0.1:{writer_server.port}{writer_server.path(doc)}"
    sent = await run_writer(url, rate, start, window_stop)
    cpu_after = sum(map(cpu_seconds, server_pids)), sum(map(cpu_seconds, client_pids))
    wall = (now_us() - wall_before) / 1e6
    replies = await clients.ask([("collect", window_stop + int(drain * 1e6))] * len(clients.pipes))
    in_window: list[int] = []
    received_in_window = 0
    dropped = 0
    for _, sends_raw, lats_raw, closed in replies:
        sends, lats = array.array("q"), array.array("q")
        sends.frombytes(sends_raw)
        lats.frombytes(lats_raw)
        dropped += closed
        for sent_at, lat in zip(sends, lats, strict=True):
            if window_start <= sent_at < window_stop:
                in_window.append(lat)
            if window_start <= sent_at + lat < window_stop:
                received_in_window += 1
    in_window.sort()
    sent_in_window = sum(1 for i in range(sent) if window_start <= start + i * 1e6 / rate < window_stop)
    expected = sent_in_window * connected
    await clients.close()
    return Result(
        subscribers=subscribers,
        connected=connected,
        sent=sent,
        delivered_per_s=received_in_window / seconds,
        p50_ms=pct(in_window, 50),
        p99_ms=pct(in_window, 99),
        delivered_pct=100 * len(in_window) / expected if expected else float("nan"),
        server_cpu_pct=100 * (cpu_after[0] - cpu_before[0]) / wall,
        client_cpu_pct=100 * (cpu_after[1] - cpu_before[1]) / wall,
        dropped=dropped,
    )


async def idle_memory(clients: Clients, server: Server, doc: str, idle: int) -> tuple[int, int]:
    """Server RSS (KiB) with one connection on `doc`, then with `idle` more idle connections."""
    server.make_doc(doc)
    await clients.connect("127.0.0.1", server.port, server.path(doc), 2)
    await asyncio.sleep(1.0)
    base = rss_kib(server.proc.pid)
    await clients.close()
    await clients.connect("127.0.0.1", server.port, server.path(doc), idle + 2)
    await asyncio.sleep(1.0)
    loaded = rss_kib(server.proc.pid)
    await clients.close()
    return base, loaded


# -- the run ------------------------------------------------------------------------------------------------
def fmt_row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print(fmt_row(headers, widths))
    print(fmt_row(["-" * w for w in widths], widths))
    for row in rows:
        print(fmt_row(row, widths))


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base > 0 else "-"


async def main(args: argparse.Namespace) -> None:
    pin = args.pin and (os.cpu_count() or 1) >= 2
    server_cpu = 0 if pin else None
    client_cpu = 1 if pin else None
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    one, five, _ = os.getloadavg()
    print(f"# hub fan-out benchmark: {os.cpu_count()} CPUs, load {one:.2f} (1 min) {five:.2f} (5 min)")
    placement = (
        "server pinned to CPU 0; writer + 2 subscriber processes pinned to CPU 1"
        if pin
        else "not pinned: writer, 2 subscriber processes and the server share every CPU"
    )
    print(f"# clients and server share this machine: {placement}")
    print(
        f"# writer: {args.rate:.0f} inserts/s for {args.warmup:.1f} s warm-up + {args.seconds:.1f} s measured; "
        f"subscribers: {', '.join(map(str, args.subscribers))}"
    )
    print()
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    clients = Clients(2, client_cpu)
    servers: list[Server] = []
    try:
        results: dict[str, list[Result]] = {}
        memory: dict[str, tuple[int, int]] = {}
        for name in args.servers:
            workspace = None
            if name == "gateway":
                workspace = tmp / "ws-gateway"
                workspace.mkdir()
            server = start_server(name, tmp, server_cpu, workspace=workspace)
            servers.append(server)
            results[name] = []
            for n in args.subscribers:
                result = await scenario(
                    clients, server, server, f"fanout-{n}.txt", n, args.rate, args.warmup, args.seconds, args.drain
                )
                results[name].append(result)
                print(
                    f"  {name:10} {n:5} subs: {result.delivered_per_s:9.0f} delivered/s  "
                    f"p50 {result.p50_ms:7.1f} ms  p99 {result.p99_ms:7.1f} ms  "
                    f"({result.delivered_pct:.1f}% delivered, CPU server {result.server_cpu_pct:.0f}% "
                    f"clients {result.client_cpu_pct:.0f}%)",
                    flush=True,
                )
            server.stop()
            servers.remove(server)
            # A fresh server for the memory measurement: memory freed by the fan-out runs would be reused.
            workspace = tmp / f"ws-idle-{name}" if name == "gateway" else None
            if workspace is not None:
                workspace.mkdir()
            server = start_server(name, tmp, server_cpu, workspace=workspace)
            servers.append(server)
            memory[name] = await idle_memory(clients, server, "idle.txt", args.idle)
            server.stop()
            servers.remove(server)

        print()
        print(f"## Fan-out: one writer at {args.rate:.0f} updates/s, N subscribers, one document")
        print("delivered/s = updates received by all subscribers per second (ideal: rate x N)")
        base = results.get("js-ref")
        headers = [
            "server",
            "subs",
            "ideal/s",
            "delivered/s",
            "vs js-ref",
            "p50 ms",
            "vs js-ref",
            "p99 ms",
            "vs js-ref",
            "delivered",
            "srv CPU",
        ]
        rows = []
        for name, rs in results.items():
            for i, r in enumerate(rs):
                b = base[i] if base else None
                rows.append(
                    [
                        name,
                        str(r.subscribers),
                        f"{args.rate * r.connected:.0f}",
                        f"{r.delivered_per_s:.0f}",
                        ratio(r.delivered_per_s, b.delivered_per_s) if b else "-",
                        f"{r.p50_ms:.1f}",
                        ratio(r.p50_ms, b.p50_ms) if b else "-",
                        f"{r.p99_ms:.1f}",
                        ratio(r.p99_ms, b.p99_ms) if b else "-",
                        f"{r.delivered_pct:.1f}%",
                        f"{r.server_cpu_pct:.0f}%",
                    ]
                )
        print_table(headers, rows)
        print("(latency ratios: lower is better; srv CPU = server process CPU over the run, 100% = one core)")

        print()
        print(f"## Memory per idle y-websocket connection ({args.idle} idle connections)")
        rows = []
        for name, (before, after) in memory.items() if args.idle > 0 else ():
            per = (after - before) * 1024 / args.idle
            b = memory.get("js-ref")
            base_per = (b[1] - b[0]) * 1024 / args.idle if b else 0
            rows.append(
                [
                    name,
                    f"{before / 1024:.1f}",
                    f"{after / 1024:.1f}",
                    f"{per / 1024:.1f}",
                    ratio(per, base_per) if b else "-",
                ]
            )
        print_table(["server", "RSS idle MiB", f"RSS +{args.idle} MiB", "KiB/conn", "vs js-ref"], rows)

        if not args.no_redis and "gateway" in args.servers:
            await redis_section(args, clients, tmp, server_cpu, servers)
    finally:
        for server in servers:
            server.stop()
        clients.exit()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"# logs kept in {tmp}")


def start_redis(redis_bin: str, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A throwaway redis-server on a free port, no persistence."""
    port = free_port()
    log = tmp / "redis.log"
    with open(log, "wb") as out:
        redis = subprocess.Popen(
            [redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_port(port, redis, log)
    return redis, port


async def redis_section(
    args: argparse.Namespace, clients: Clients, tmp: Path, server_cpu: int | None, servers: list[Server]
) -> None:
    redis_bin = shutil.which("redis-server")
    print()
    if redis_bin is None:
        print("## Redis: skipped (no redis-server on PATH)")
        return
    redis, port = start_redis(redis_bin, tmp)
    try:
        env = {"GATEWAY_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
        workspace = tmp / "ws-redis"
        workspace.mkdir()
        one = start_server("gateway-1", tmp, server_cpu, workspace=workspace, env=env)
        servers.append(one)
        two = start_server("gateway-2", tmp, server_cpu, workspace=workspace, env=env)
        servers.append(two)
        n = args.redis_subscribers
        rate = args.redis_rate
        same = await scenario(clients, one, one, "redis-same.txt", n, rate, args.warmup, args.seconds, args.drain)
        cross = await scenario(clients, one, two, "redis-cross.txt", n, rate, args.warmup, args.seconds, args.drain)
        print(f"## Across instances through Redis: {n} subscribers, writer at {rate:.0f} updates/s")
        rows = []
        for label, r in (
            ("same instance (writer + subs on 1)", same),
            ("cross instance (writer on 1, subs on 2)", cross),
        ):
            rows.append(
                [label, f"{r.delivered_per_s:.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}", f"{r.delivered_pct:.1f}%"]
            )
        print_table(["placement", "delivered/s", "p50 ms", "p99 ms", "delivered"], rows)
        print(f"added by Redis: p50 +{cross.p50_ms - same.p50_ms:.2f} ms, p99 +{cross.p99_ms - same.p99_ms:.2f} ms")
    finally:
        for server in [s for s in servers if s.name.startswith("gateway-")]:
            server.stop()
            servers.remove(server)
        redis.terminate()
        redis.wait(10)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run: shorter windows")
    parser.add_argument("--rate", type=float, default=100.0, help="writer inserts per second")
    parser.add_argument("--seconds", type=float, default=None, help="measured window per scenario")
    parser.add_argument("--warmup", type=float, default=None, help="writer runs this long before the window")
    parser.add_argument("--drain", type=float, default=2.0, help="wait this long after the writer for stragglers")
    parser.add_argument("--subscribers", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--servers", nargs="+", default=["js-ref", "gateway", "pycrdt-ws"])
    parser.add_argument("--idle", type=int, default=1000, help="idle connections for the memory measurement")
    parser.add_argument("--redis-subscribers", type=int, default=100)
    parser.add_argument("--redis-rate", type=float, default=100.0)
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server logs)")
    parser.add_argument("--pin", action="store_true", help="pin the server to CPU 0 and the clients to CPU 1")
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 5.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.0
    if args.quick:
        args.drain = min(args.drain, 1.5)
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
