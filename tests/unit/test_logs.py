"""The service's log handlers: the file rotates at its size, each line is formatted once, lines read as before."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcpproxy.logs import LogFile, OneLineFormatter, logging_dict


class CountingFormatter(OneLineFormatter):
    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s %(message)s")
        self.calls = 0

    def format_once(self, record: logging.LogRecord) -> str:
        self.calls += 1
        return super().format_once(record)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("mcpproxy.test_logs")
    log.propagate = False
    log.setLevel(logging.INFO)
    yield log
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()


def test_the_file_rotates_when_the_next_line_would_pass_its_size(tmp_path: Path, logger: logging.Logger) -> None:
    path = tmp_path / "mcpproxy.log"
    handler = LogFile(path, maxBytes=200, backupCount=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    for i in range(10):
        logger.info("line %02d %s", i, "x" * 40)  # 49 bytes a line: four fit in 200
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["mcpproxy.log", "mcpproxy.log.1", "mcpproxy.log.2"], kept
    for p in tmp_path.iterdir():
        assert p.stat().st_size < 200, (p.name, p.stat().st_size)
    assert path.read_text().splitlines()[-1].startswith("line 09 "), "the newest line is in the current file"
    assert (tmp_path / "mcpproxy.log.1").read_text().splitlines()[0].startswith("line 04 ")


def test_a_file_that_is_not_regular_is_never_rotated(tmp_path: Path, logger: logging.Logger) -> None:
    handler = LogFile(os.devnull, maxBytes=10, backupCount=1)
    logger.addHandler(handler)
    for i in range(5):
        logger.info("line %d, longer than the size", i)
    assert not handler.shouldRollover(logging.makeLogRecord({"msg": "x" * 50}))
    assert list(tmp_path.iterdir()) == []


def test_a_line_is_formatted_once_for_every_handler(tmp_path: Path, logger: logging.Logger) -> None:
    formatter = CountingFormatter()
    stream = logging.StreamHandler(open(tmp_path / "stderr.txt", "w"))  # noqa: SIM115 — closed by the fixture
    file = LogFile(tmp_path / "mcpproxy.log", maxBytes=1 << 20, backupCount=1)
    for h in (stream, file):
        h.setFormatter(formatter)
        logger.addHandler(h)
    logger.info("server=%s refreshed", "demo")
    assert formatter.calls == 1  # stderr, the file, and the file's size check: one format
    line = "INFO mcpproxy.test_logs server=demo refreshed\n"
    for h in (stream, file):
        h.flush()
    assert (tmp_path / "stderr.txt").read_text() == line
    assert (tmp_path / "mcpproxy.log").read_text() == line


def test_the_service_logs_through_these_handlers(tmp_path: Path) -> None:
    conf = logging_dict("INFO", "text", tmp_path / "mcpproxy.log")
    assert conf["handlers"]["file"]["class"] == "mcpproxy.logs.LogFile"
    assert conf["formatters"]["main"]["()"] == "mcpproxy.logs.OneLineFormatter"
    assert conf["root"]["handlers"] == ["stderr", "file"]
