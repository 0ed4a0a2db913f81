"""One owner per data dir (docs/architecture.md "Start-up order"): the lock, the runtime file, the early bind.

The service takes an exclusive `flock` on DATA_DIR/owner.lock before the actor system exists; the
kernel drops it with the last descriptor of the process, so a `kill -9` leaves no stale lock. The
owner writes DATA_DIR/runtime.json (pid, URL; 0600) for the CLI and removes it at a clean stop.
The listen port is bound and listening before any actor starts, and every process forked from
the service (Thespian's admin, every actor) closes the lock and the socket at once: only the
service holds them.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCK_FILE = "owner.lock"
RUNTIME_FILE = "runtime.json"
#: How long a second instance waits for the owner's runtime file, to name its pid and address.
RUNTIME_WAIT = 1.0


class OwnedElsewhere(Exception):
    """Another process owns the data dir; the message is the one line the second instance prints."""

    def __init__(self, data_dir: Path, runtime: Runtime | None) -> None:
        who = f"pid {runtime.pid}, {runtime.url}" if runtime else "starting"
        super().__init__(f"another mcpproxy ({who}) owns {data_dir}")
        self.runtime = runtime


class PortBusy(Exception):
    """The listen address is taken; the message is one line."""


@dataclass(frozen=True)
class Runtime:
    """What the owner tells the CLI: who it is and where it listens."""

    pid: int
    url: str
    listen: str

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


# ---- what forked children must not keep -------------------------------------------------------------

_held_fds: list[int] = []
_held_socks: list[socket.socket] = []


def _drop_in_child() -> None:
    """Runs in every process forked from here: the lock and the listening socket stay the service's alone."""
    for fd in _held_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    _held_fds.clear()
    for sock in _held_socks:
        try:
            os.close(sock.detach())
        except OSError:
            pass
    _held_socks.clear()


os.register_at_fork(after_in_child=_drop_in_child)


# ---- the lock ---------------------------------------------------------------------------------------


def lock_path(data_dir: Path) -> Path:
    return data_dir / LOCK_FILE


def runtime_path(data_dir: Path) -> Path:
    return data_dir / RUNTIME_FILE


def _try_lock(data_dir: Path) -> int | None:
    """An fd holding the exclusive lock, or None when another process holds it."""
    fd = os.open(lock_path(data_dir), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
            return None
        raise
    return fd


def take(data_dir: Path) -> int:
    """Takes the data dir for this process (until it exits); OwnedElsewhere names the owner otherwise."""
    fd = _try_lock(data_dir)
    if fd is None:
        deadline = time.monotonic() + RUNTIME_WAIT
        runtime = read_runtime(data_dir)
        while runtime is None and time.monotonic() < deadline:  # the owner may be starting: its file comes soon
            time.sleep(0.05)
            runtime = read_runtime(data_dir)
        raise OwnedElsewhere(data_dir, runtime)
    _held_fds.append(fd)
    return fd


def release(fd: int) -> None:
    if fd in _held_fds:
        _held_fds.remove(fd)
    os.close(fd)


class Borrowed:
    """The lock held by a standalone command while it writes the store (a context manager)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> Borrowed:
        return self

    def __exit__(self, *exc: Any) -> None:
        release(self.fd)


def borrow(data_dir: Path) -> Borrowed | None:
    """The lock for a standalone write, or None when a service owns the data dir (go through it)."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = _try_lock(data_dir)
    if fd is None:
        return None
    _held_fds.append(fd)
    return Borrowed(fd)


def owner_runtime(data_dir: Path) -> Runtime | None:
    """The running owner's runtime file, when it names a live process (the lock is not probed: a probe could
    make a service that starts at that moment think the data dir taken)."""
    runtime = read_runtime(data_dir)
    return runtime if runtime is not None and runtime.alive() else None


# ---- the runtime file -------------------------------------------------------------------------------


def write_runtime(data_dir: Path, url: str, listen: str) -> Path:
    path = runtime_path(data_dir)
    tmp = path.with_name(f".{RUNTIME_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": os.getpid(), "url": url, "listen": listen}, f)
        f.write("\n")
    os.replace(tmp, path)
    return path


def read_runtime(data_dir: Path) -> Runtime | None:
    try:
        doc = json.loads(runtime_path(data_dir).read_text())
        return Runtime(int(doc["pid"]), str(doc["url"]), str(doc.get("listen", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_runtime(data_dir: Path) -> None:
    """At a clean stop; only our own file (a later owner's is not ours to remove)."""
    runtime = read_runtime(data_dir)
    if runtime is not None and runtime.pid == os.getpid():
        try:
            runtime_path(data_dir).unlink()
        except FileNotFoundError:
            pass


# ---- the listen socket ------------------------------------------------------------------------------


def bind(host: str, port: int, listen: str) -> socket.socket:
    """Bound and listening now, before any actor starts; PortBusy names the holder when it can be found."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart must not wait out TIME_WAIT
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            pid = port_holder(port)
            raise PortBusy(f"port {listen} is in use" + (f" (by pid {pid})" if pid else "")) from None
        raise PortBusy(f"cannot listen on {listen}: {e.strerror}") from None
    sock.setblocking(False)
    _held_socks.append(sock)
    return sock


def port_holder(port: int) -> int | None:
    """The pid listening on a TCP port, from /proc (Linux; our own user's processes only); None when unknown."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(cols[9])
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    return int(proc.name)
        except OSError:
            continue
    return None


# ---- all three, in order ----------------------------------------------------------------------------


@dataclass
class Owned:
    """The data dir's lock, the bound listen socket and the runtime file of this service."""

    data_dir: Path
    lock_fd: int
    sock: socket.socket

    def close(self) -> None:
        """At a clean stop: the runtime file goes first, so no CLI is sent to a closing service."""
        remove_runtime(self.data_dir)
        if self.sock in _held_socks:
            _held_socks.remove(self.sock)
        self.sock.close()
        release(self.lock_fd)


def own(data_dir: Path, host: str, port: int, listen: str, url: str) -> Owned:
    """Lock, bind, then tell: OwnedElsewhere or PortBusy (one line each) when this service cannot start."""
    fd = take(data_dir)
    try:
        sock = bind(host, port, listen)
    except BaseException:
        release(fd)
        raise
    write_runtime(data_dir, url, listen)
    return Owned(data_dir, fd, sock)
