"""A byte relay for `bench/analysis.py`: this process's stdin to a child's stdin, the child's stdout to this
process's stdout, nothing parsed. It is the floor for any process that sits between an editor and a language
server: the price of the second pipe hop alone, against which the gateway's own hop is read.

    python bench/_relay.py COMMAND [ARG...]
"""

from __future__ import annotations

import asyncio
import os
import sys


async def relay(argv: list[str]) -> int:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    out = sys.stdout.buffer.fileno()

    async def up() -> None:
        assert proc.stdin is not None
        while data := await reader.read(1 << 16):
            proc.stdin.write(data)
        proc.stdin.close()

    async def down() -> None:
        assert proc.stdout is not None
        while data := await proc.stdout.read(1 << 16):
            view = memoryview(data)
            while view:
                view = view[os.write(out, view) :]

    await asyncio.gather(up(), down())
    return await proc.wait()


if __name__ == "__main__":
    sys.exit(asyncio.run(relay(sys.argv[1:])))
