"""gateway.app.run_main: the event loop's thread declares asyncio to sniffio, and only while it runs."""

from __future__ import annotations

import threading

import anyio
import anyio.to_thread
import pytest
import sniffio

from gateway.app import run_main


def test_the_loop_thread_declares_asyncio_while_it_runs() -> None:
    seen: dict[str, object] = {}

    async def main() -> int:
        seen["declared"] = sniffio.thread_local.name
        seen["detected"] = sniffio.current_async_library()

        def in_a_worker() -> object:
            return sniffio.thread_local.name  # other threads keep their own (unset) answer

        seen["worker"] = await anyio.to_thread.run_sync(in_a_worker)
        seen["worker_thread"] = threading.current_thread() is threading.main_thread()
        async with anyio.create_task_group() as tg:  # anyio runs as usual on the declared backend
            tg.start_soon(anyio.sleep, 0)
        return 7

    assert sniffio.thread_local.name is None
    assert run_main(main()) == 7
    assert seen == {"declared": "asyncio", "detected": "asyncio", "worker": None, "worker_thread": True}
    assert sniffio.thread_local.name is None  # given back after the loop


def test_the_declaration_is_given_back_when_main_fails() -> None:
    async def main() -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_main(main())
    assert sniffio.thread_local.name is None
