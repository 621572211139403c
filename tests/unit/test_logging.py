"""The log writer thread: lines are formatted and written off the event loop, and none is lost at the end."""

from __future__ import annotations

import json
import logging

import pytest

from gateway import cli
from gateway.config import load_config
from gateway.middleware import StructuredMessage


def test_lines_reach_stderr_through_the_writer_thread(capsys: pytest.CaptureFixture[str]) -> None:
    cli.setup_logging(load_config(environ={}))
    try:
        assert isinstance(logging.getLogger().handlers[0], cli.BackgroundHandler)
        mutable = ["before"]
        log = logging.getLogger("gateway.test")
        log.warning("plain %s", mutable)
        mutable[0] = "after"  # arguments are merged when logged, not when the thread gets to them
        log.info(StructuredMessage({"event": "execution", "status": "finished"}))
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        for i in range(200):
            log.info("line %d", i)
    finally:
        cli.stop_log_writer()  # writes out what is queued
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["msg"] == "plain ['before']" and lines[0]["level"] == "warning"
    assert lines[1]["event"] == "execution" and lines[1]["status"] == "finished"
    assert lines[2]["msg"] == "failed" and "ValueError: boom" in lines[2]["exc"]
    assert [line["msg"] for line in lines[3:]] == [f"line {i}" for i in range(200)]


def test_a_second_set_up_replaces_the_writer(capsys: pytest.CaptureFixture[str]) -> None:
    cli.setup_logging(load_config(environ={}))
    first = cli._writer
    cli.setup_logging(load_config(environ={}))
    try:
        assert cli._writer is not first and first is not None
        assert first._thread is None  # stopped
        logging.getLogger("gateway.test").warning("once")
    finally:
        cli.stop_log_writer()
    assert [json.loads(line)["msg"] for line in capsys.readouterr().err.splitlines()] == ["once"]


def test_after_the_writer_stops_lines_are_written_directly(capsys: pytest.CaptureFixture[str]) -> None:
    cli.setup_logging(load_config(environ={}))
    cli.stop_log_writer()
    root = logging.getLogger()
    assert not any(isinstance(h, cli.BackgroundHandler) for h in root.handlers)
    logging.getLogger("gateway.test").warning("at exit")
    assert [json.loads(line)["msg"] for line in capsys.readouterr().err.splitlines()] == ["at exit"]
