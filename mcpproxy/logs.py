"""Logging: one line per event, the server name in it, never a secret; text or JSON."""

from __future__ import annotations

import json
import logging
import logging.config
import logging.handlers
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

#: Libraries that would log request bodies or tokens at DEBUG.
QUIET = ("requests_oauthlib", "oauthlib", "urllib3", "aiohttp.access", "thespian", "httpx", "httpx2",
         "mcp.server", "mcp.client", "mcp.shared")


class QuietFilter(logging.Filter):
    """Thespian's log process calls handle(), which skips logger levels: filter on the handler instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return not record.name.startswith(QUIET) and record.name != "root"


class OnceFormatter(logging.Formatter):
    """Formats a record once, whatever the number of handlers it passes: stderr and the file each formatted
    it, and the stock file handler once more to weigh it."""

    def format(self, record: logging.LogRecord) -> str:
        done: tuple[int, str] | None = record.__dict__.get("_formatted")
        if done is not None and done[0] == id(self):
            return done[1]
        line = self.format_once(record)
        record.__dict__["_formatted"] = (id(self), line)
        return line

    def format_once(self, record: logging.LogRecord) -> str:
        return super().format(record)


class JsonFormatter(OnceFormatter):
    def format_once(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            doc["exc_type"] = record.exc_info[0].__name__
        return json.dumps(doc)


class OneLineFormatter(OnceFormatter):
    """Exceptions as their type only: a traceback's locals or messages could carry a token."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 — logging's name
        return f"  [{ei[0].__name__}]" if ei and ei[0] else ""


class LogFile(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler that weighs the file with one fstat of its open descriptor: per line, the stock one
    stats the path twice, seeks twice and formats the line once more (an access line per proxied MCP call)."""

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 — logging's name
        if self.maxBytes <= 0:
            return False
        if self.stream is None:  # opened late (delay=True), as the stock one does
            self.stream = self._open()
        st = os.fstat(self.stream.fileno())
        if not stat.S_ISREG(st.st_mode):
            return False  # /dev/null or a pipe is never rotated (bpo-45401)
        return st.st_size + len(self.format(record)) + 1 >= self.maxBytes


def lean_records() -> None:
    """Records skip what no format of ours prints (the caller's frame, thread, process, asyncio task): the
    logging HOWTO's "Optimization" switches. Set before the actor system forks, so every process has them."""
    logging._srcfile = None  # type: ignore[attr-defined]  # documented in the HOWTO; no caller lookup per line
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if sys.version_info >= (3, 12):
        logging.logAsyncioTasks = False


def logging_dict(level: str = "INFO", fmt: str = "text", log_file: Path | None = None) -> dict[str, Any]:
    formatter = (
        {"()": "mcpproxy.logs.JsonFormatter"}
        if fmt == "json"
        else {"()": "mcpproxy.logs.OneLineFormatter", "format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    )
    common = {"formatter": "main", "level": level.upper(), "filters": ["quiet"]}
    handlers: dict[str, Any] = {"stderr": {"class": "logging.StreamHandler", **common}}
    if log_file is not None:
        handlers["file"] = {
            "class": "mcpproxy.logs.LogFile",
            "filename": str(log_file),
            "maxBytes": 5 * 1024 * 1024,
            "backupCount": 3,
            **common,
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "filters": {"quiet": {"()": "mcpproxy.logs.QuietFilter"}},
        "handlers": handlers,
        "root": {"level": level.upper(), "handlers": list(handlers)},
        "loggers": {name: {"level": "WARNING"} for name in QUIET},
    }


def setup_logging(level: str = "INFO", fmt: str = "text", log_file: Path | None = None) -> dict[str, Any]:
    if log_file is not None:
        # Private whatever the umask: it names servers and endpoints (never a secret, but still the user's).
        os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        os.chmod(log_file, 0o600)
    conf = logging_dict(level, fmt, log_file)
    lean_records()
    logging.config.dictConfig(conf)
    return conf
