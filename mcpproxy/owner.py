"""One service owns a data dir at a time (docs/architecture.md "Store"): it holds an exclusive lock on
DATA_DIR/service.lock, which also names its PID and address. A second `serve` exits naming the first; the
CLI, finding a live owner, goes through that service instead of writing the store behind its back (its
TokenActors would keep the token, and the gateway its lease).

The lock is taken before the actor system forks, so every actor process holds it too: the data dir stays
owned until the last process that may write the store is gone.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = "service.lock"
#: A lock still held by the actors of a service killed with -9 is released within seconds (they stop themselves).
ORPHAN_WAIT = 6.0


@dataclass(frozen=True)
class Owner:
    pid: int
    url: str


class AlreadyOwned(RuntimeError):
    def __init__(self, data_dir: Path, owner: Owner | None) -> None:
        who = f"mcpproxy (pid {owner.pid}, {owner.url})" if owner else "another mcpproxy"
        super().__init__(f"{data_dir} is in use by {who}; stop it first, or give this one another --data-dir")
        self.owner = owner


def lock_path(data_dir: Path) -> Path:
    return data_dir / LOCK_FILE


def claim(data_dir: Path, url: str) -> int:
    """Takes the data dir (waiting out a killed owner's last actors); returns the descriptor to keep open."""
    fd = os.open(lock_path(data_dir), os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + ORPHAN_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            held_by = _read(fd)
            if (held_by is not None and _alive(held_by.pid)) or time.monotonic() >= deadline:
                os.close(fd)
                raise AlreadyOwned(data_dir, held_by) from None
            time.sleep(0.1)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "url": url}).encode(), 0)
    return fd


def owner(data_dir: Path) -> Owner | None:
    """The service that owns the data dir now, if one does."""
    try:
        fd = os.open(lock_path(data_dir), os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd) or Owner(0, "")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read(fd: int) -> Owner | None:
    try:
        doc = json.loads(os.pread(fd, 4096, 0) or b"null")
        return Owner(int(doc["pid"]), str(doc["url"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
