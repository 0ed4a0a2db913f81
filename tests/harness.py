"""Runs the real service as a subprocess for tests, e2e and benchmarks: start, drive, observe, stop.

Everything on loopback; every process is started in its own session and stopped by PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
MCPPROXY = str(Path(sys.executable).parent / "mcpproxy")
API_KEY = "test-api-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Polls cond until it returns something truthy; fails with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class SSEEvent:
    id: str | None
    event: str
    data: dict[str, Any]


class SSEReader:
    """Reads /events in a thread and keeps every event; tests wait on what they expect."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.events: list[SSEEvent] = []
        self._cv = threading.Condition()
        self._resp = requests.get(url, headers=headers, stream=True, timeout=(5, 60))
        self._resp.raise_for_status()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ev_id: str | None = None
        name = "message"
        data: list[str] = []
        try:
            for raw in self._resp.iter_lines(decode_unicode=True):
                if raw is None:
                    continue
                if raw == "":
                    if data:
                        with self._cv:
                            self.events.append(SSEEvent(ev_id, name, json.loads("\n".join(data))))
                            self._cv.notify_all()
                    ev_id, name, data = None, "message", []
                elif raw.startswith("id:"):
                    ev_id = raw[3:].strip()
                elif raw.startswith("event:"):
                    name = raw[6:].strip()
                elif raw.startswith("data:"):
                    data.append(raw[5:].strip())
        except Exception:  # noqa: BLE001 — the stream ends when the test closes it
            pass

    def wait_for(self, pred: Callable[[SSEEvent], bool], timeout: float, what: str) -> SSEEvent:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for ev in self.events:
                    if pred(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no SSE event {what} within {timeout}s; got {[e.event for e in self.events]}")
                self._cv.wait(left)

    def named(self, name: str, server: str | None = None) -> list[SSEEvent]:
        with self._cv:
            return [e for e in self.events if e.event == name and (
                server is None or e.data["payload"].get("server_name", e.data["payload"].get("name")) == server)]

    def failed_for_good(self, server: str) -> list[SSEEvent]:
        """oauth.refresh_failed events that gave up (`will_retry: false`), not a failing streak's notices."""
        return [e for e in self.named("oauth.refresh_failed", server) if e.data["payload"].get("will_retry") is False]

    def streak_told(self, server: str) -> list[SSEEvent]:
        """oauth.refresh_failed notices of a failing streak that is still retried (`will_retry: true`)."""
        return [e for e in self.named("oauth.refresh_failed", server) if e.data["payload"].get("will_retry") is True]

    def close(self) -> None:
        """Ends the stream now (a plain close would wait for the next byte, up to a 15 s ping)."""
        conn = getattr(self._resp.raw, "_connection", None)
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._resp.close()
        self._thread.join(5)


@dataclass
class ServiceHandle:
    data_dir: Path
    config_path: Path
    port: int
    api_key: str = API_KEY
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)
    extra_env: dict[str, str] = field(default_factory=dict)
    readers: list[SSEReader] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> ServiceHandle:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}
        for k in ("MCPPROXY_LISTEN", "MCPPROXY_DATA_DIR", "MCPPROXY_API_KEY", "MCPPROXY_CONFIG"):
            if k not in self.extra_env:
                env.pop(k, None)
        self.log_path = self.data_dir / f"service-{int(time.time() * 1000)}.out"
        out = open(self.log_path, "wb")  # noqa: SIM115 — the child writes to it until it stops
        self.proc = subprocess.Popen(
            [MCPPROXY, "serve", "--config", str(self.config_path), "--log-level", "DEBUG"],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True,
        )
        out.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"mcpproxy exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
            try:
                return requests.get(self.base_url + "/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, timeout, "mcpproxy /readyz", interval=0.05)
        return self

    def pids(self) -> list[int]:
        """Every process of the service: its session (actors are forked into it)."""
        if self.proc is None:
            return []
        try:
            main = psutil.Process(self.proc.pid)
            procs = [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        return [p.pid for p in procs if _running(p)]

    def stop(self, timeout: float = 20) -> int | None:
        try:
            return self._stop(timeout)
        finally:
            # After the service ended their streams: closing a live one blocks until its next ping.
            for r in self.readers:
                r.close()
            self.readers.clear()

    def _stop(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        tree = self.pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        code = self.proc.returncode
        left = [p for p in tree if _pid_running(p)]
        self._kill(left)
        self.proc = None
        assert not left, f"mcpproxy left processes behind after SIGTERM: {left}"
        return code

    def kill9(self) -> None:
        """kill -9 of the whole service: the main process and every actor process."""
        assert self.proc is not None
        self._kill(self.pids())
        self.proc.wait(10)
        self.proc = None

    @staticmethod
    def _kill(pids: list[int]) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def logs(self) -> str:
        text = ""
        for f in sorted(self.data_dir.glob("service-*.out")):
            text += f.read_text(errors="replace")
        return text

    # ---- REST -----------------------------------------------------------------------------------

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {**self.headers, **kw.pop("headers", {})}
        return requests.request(method, self.base_url + path, headers=headers, timeout=kw.pop("timeout", 30), **kw)

    def status(self, name: str) -> dict[str, Any]:
        r = self.api("GET", f"/api/v1/servers/{name}")
        assert r.status_code == 200, r.text
        return dict(r.json()["data"])

    def wait_status(self, name: str, pred: Callable[[dict[str, Any]], bool], timeout: float, what: str
                    ) -> dict[str, Any]:
        return dict(wait_until(lambda: (lambda s: s if pred(s) else None)(self.status(name)), timeout, what))

    def start_login(self, name: str) -> str:
        r = self.api("POST", f"/api/v1/servers/{name}/login", json={})
        assert r.status_code == 200, r.text
        return str(r.json()["data"]["auth_url"])

    def login(self, name: str) -> dict[str, Any]:
        """The REST flow, following auth_url like a browser would (the test AS approves by itself)."""
        auth_url = self.start_login(name)
        r = requests.get(auth_url, allow_redirects=False, timeout=10)
        assert r.status_code == 302, r.text
        cb = requests.get(r.headers["Location"], timeout=60)
        assert cb.status_code == 200, cb.text
        return self.status(name)

    def events(self, last_event_id: str | None = None, query: str = "") -> SSEReader:
        headers = dict(self.headers)
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        reader = SSEReader(f"{self.base_url}/events{query}", headers)
        self.readers.append(reader)
        return reader


def key_file_of(data_dir: Path) -> Path:
    """Where a test service keeps its data key: beside its data dir, never in the tester's home."""
    return data_dir.with_name(data_dir.name + ".key")


def open_store(data_dir: Path, key_file: Path | None = None) -> Any:
    """The service's store, opened with its data key (to look at what it wrote)."""
    from mcpproxy.datakey import load
    from mcpproxy.sealing import Sealer
    from mcpproxy.store import TokenStore

    return TokenStore(data_dir, sealer=Sealer(load(data_dir, key_file or key_file_of(data_dir))))


def write_config(data_dir: Path, port: int, servers: list[dict[str, Any]], *, threshold: float = 0.8,
                 api_key: str | None = API_KEY, **extra: Any) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"listen": f"127.0.0.1:{port}", "data_dir": str(data_dir),
                           "oauth_refresh_threshold": threshold, "mcpServers": servers,
                           "key_file": str(key_file_of(data_dir)), **extra}
    if api_key:
        doc["api_key"] = api_key
    path = data_dir / "mcp_config.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


def make_service(data_dir: Path, servers: list[dict[str, Any]], *, threshold: float = 0.8,
                 api_key: str | None = API_KEY, **extra: Any) -> ServiceHandle:
    port = free_port()
    path = write_config(data_dir, port, servers, threshold=threshold, api_key=api_key, **extra)
    return ServiceHandle(data_dir=data_dir, config_path=path, port=port, api_key=api_key or "")


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _pid_running(pid: int) -> bool:
    try:
        return _running(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def iter_secrets(auth_issued: dict[str, list[str]]) -> Iterator[str]:
    for values in auth_issued.values():
        yield from (v for v in values if v)
