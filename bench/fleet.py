"""A fleet for the benchmarks: the test authorization server, the test MCP server, and `mcpproxy serve`
with N OAuth servers (all behind that one MCP server), on loopback. Everything started is stopped by PID.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness import MCPPROXY, ServiceHandle, make_service, wait_until  # noqa: E402
from tests.mcpserver.control import MCPServerHandle, start_mcp_server  # noqa: E402
from tests.oauthserver.control import OAuthServerHandle, start_oauth_server  # noqa: E402

#: Logins run this many at a time (each is ~50 ms of the service's and the AS's time).
LOGIN_PARALLEL = 4


class BenchService(ServiceHandle):
    """The harness's service, run at the log level a user runs it at (the harness uses DEBUG)."""

    log_level = "INFO"

    def start(self, timeout: float = 120) -> BenchService:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}
        for k in ("MCPPROXY_LISTEN", "MCPPROXY_DATA_DIR", "MCPPROXY_API_KEY", "MCPPROXY_CONFIG"):
            env.pop(k, None)
        self.log_path = self.data_dir / f"service-{int(time.time() * 1000)}.out"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [MCPPROXY, "serve", "--config", str(self.config_path), "--log-level", self.log_level],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True,
            )
        wait_until(self._ready, timeout, "mcpproxy /readyz", interval=0.01)
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"mcpproxy exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
        try:
            return requests.get(self.base_url + "/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False


def server_names(n: int) -> list[str]:
    return [f"s{i:03d}" for i in range(n)]


def server_configs(names: list[str], mcp_url: str) -> list[dict[str, Any]]:
    return [{"name": name, "url": mcp_url, "protocol": "http", "oauth": {}} for name in names]


def bench_service(data_dir: Path, servers: list[dict[str, Any]]) -> BenchService:
    """The harness's service for these servers (config, port, API key), run at a user's log level."""
    base = make_service(data_dir, servers)
    return BenchService(data_dir=base.data_dir, config_path=base.config_path, port=base.port, api_key=base.api_key)


def new_service(data_dir: Path, names: list[str], mcp_url: str) -> BenchService:
    return bench_service(data_dir, server_configs(names, mcp_url))


@dataclass
class Fleet:
    auth: OAuthServerHandle
    mcp: MCPServerHandle
    svc: BenchService
    names: list[str]
    workdir: Path

    def login_all(self, names: list[str] | None = None, ttl_of: Callable[[int], float] | None = None) -> None:
        """Logs every server in, LOGIN_PARALLEL at a time; ttl_of(i) sets the access-token lifetime of batch i."""
        names = self.names if names is None else names
        with ThreadPoolExecutor(LOGIN_PARALLEL) as pool:
            for i in range(0, len(names), LOGIN_PARALLEL):
                if ttl_of is not None:
                    self.auth.set_config(access_ttl=ttl_of(i))
                list(pool.map(self.svc.login, names[i:i + LOGIN_PARALLEL]))

    def pss(self) -> tuple[int, int]:
        return pss_of(self.svc.pids())


def pss_of(pids: list[int]) -> tuple[int, int]:
    """(total PSS in bytes, process count) of the given processes."""
    total = count = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_full_info().pss
            count += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total, count


_shared: list[tuple[OAuthServerHandle, MCPServerHandle]] = []


@contextmanager
def shared_backends() -> Iterator[None]:
    """Within this block every fleet reuses one test AS and one test MCP server (saves their start-up)."""
    with start_oauth_server(access_ttl=3600, refresh_ttl=86400) as auth, \
            start_mcp_server(auth.base_url, name="bench") as mcp:
        _shared.append((auth, mcp))
        try:
            yield
        finally:
            _shared.pop()


@contextmanager
def fleet(n: int, *, access_ttl: float = 3600, start: bool = True) -> Iterator[Fleet]:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mcpproxy-bench-")))
        if _shared:
            auth, mcp = _shared[-1]
            auth.clear_fault()
            auth.set_config(access_ttl=access_ttl)
            auth.reset_counters()
        else:
            auth = stack.enter_context(start_oauth_server(access_ttl=access_ttl, refresh_ttl=86400))
            mcp = stack.enter_context(start_mcp_server(auth.base_url, name="bench"))
        names = server_names(n)
        svc = new_service(workdir / "svc", names, mcp.url)
        stack.callback(svc.stop)
        if start:
            svc.start()
        yield Fleet(auth, mcp, svc, names, workdir)
