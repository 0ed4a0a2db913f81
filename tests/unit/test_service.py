"""mcpproxy/service.py on the platforms it supports (issue 14.7): Linux-only calls are optional, Windows is refused.

A real macOS cannot run here, so the macOS start-up is shown the way it differs from Linux for
mcpproxy: libc has no `prctl` there (dlsym answers "symbol not found", ctypes raises AttributeError),
so neither the child subreaper (actors/system.py) nor the actors' process names (actors/base.py) can
be set. The real `mcpproxy serve` runs with a libc handle that lacks `prctl`, in the service and in
every process it forks; `sys.platform` itself is left alone, because faking it would send the
standard library down macOS-only paths (e.g. urllib's `_scproxy`) that a real Mac has and Linux has not.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from mcpproxy.cli.main import cli
from mcpproxy.config import ConfigError
from mcpproxy.service import EVENT_LOOP_ENV, event_loop_kind, unsupported_platform
from tests.harness import ROOT, make_service, wait_until
from tests.mcpserver.control import MCPServerHandle
from tests.oauthserver.control import OAuthServerHandle
from tests.providers.test_discovery_habits import call_tool

#: `mcpproxy` with a libc that has no prctl, as on macOS.
WITHOUT_PRCTL = """
import ctypes, sys

class MacLikeLibc(ctypes.CDLL):
    def __getattr__(self, name):
        if name == "prctl":
            raise AttributeError("dlsym(RTLD_DEFAULT, prctl): symbol not found")
        return super().__getattr__(name)

ctypes.CDLL = MacLikeLibc
ctypes.cdll = ctypes.LibraryLoader(MacLikeLibc)
sys.argv[0] = "mcpproxy"
from mcpproxy.cli.main import main
main()
"""

MARK = "MCPPROXY_TEST_PLATFORM_RUN"


def _marked(mark: str) -> list[psutil.Process]:
    """Every process started for this test, wherever it was reparented to (found by an environment mark)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(MARK) == mark and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def test_serve_starts_logs_in_and_stops_cleanly_without_prctl(
        tmp_path: Path, mcp_server: MCPServerHandle, auth_server: OAuthServerHandle) -> None:
    svc = make_service(tmp_path / "svc", [{"name": "demo", "url": mcp_server.url, "protocol": "http", "oauth": {}}])
    mark = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPPROXY_")}
    log = open(svc.data_dir / "service-0.out", "wb")  # noqa: SIM115 — the child writes to it until it stops
    svc.proc = subprocess.Popen([sys.executable, "-c", WITHOUT_PRCTL, "serve", "--config", str(svc.config_path)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                env={**env, "PYTHONUNBUFFERED": "1", MARK: mark})
    log.close()
    try:
        def ready() -> bool:
            assert svc.proc is not None and svc.proc.poll() is None, f"serve exited:\n{svc.logs()[-3000:]}"
            try:
                return svc.api("GET", "/readyz", timeout=2).status_code == 200
            except OSError:
                return False

        wait_until(ready, 60, "mcpproxy /readyz without prctl")
        status = svc.login("demo")  # the actors work: discovery, registration, code exchange, the store
        assert status["oauth_status"] == "authenticated", status

        procs = _marked(mark)
        main = svc.proc.pid
        names = {p.name() for p in procs}
        # Without PR_SET_NAME no actor renamed its process (on Linux they are mcpproxy-sup, mcpproxy:demo, …).
        assert not any(n.startswith("mcpproxy-") or n.startswith("mcpproxy:") for n in names), names
        # Without the subreaper Thespian's daemonized admin left our process tree, as it does on macOS.
        descendants = {c.pid for c in psutil.Process(main).children(recursive=True)}
        assert [p.pid for p in procs if p.pid != main and p.pid not in descendants], "every process stayed ours"
    finally:
        code = svc.stop()
    assert code == 0, svc.logs()[-3000:]
    # …and still nothing is left behind once it stops, though they were not our children.
    wait_until(lambda: not _marked(mark), 20, "every process of the service to end after SIGTERM")


@pytest.mark.parametrize("platform", ["win32", "cygwin"])
def test_serve_refuses_windows_with_a_sentence(platform: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    r = CliRunner().invoke(cli, ["serve", "--config", str(tmp_path / "mcp_config.json")])
    assert r.exit_code == 1
    assert r.stderr.startswith("mcpproxy: Windows is not supported: mcpproxy runs on Linux and macOS")
    assert not (tmp_path / "mcp_config.json").exists()  # refused before it touched anything


@pytest.mark.parametrize("platform", ["linux", "darwin", "freebsd14"])
def test_linux_macos_and_the_bsds_are_not_refused(platform: str) -> None:
    assert unsupported_platform(platform) is None


# ---- the gateway's event loop ---------------------------------------------------------------------


@pytest.mark.parametrize(("value", "kind"), [(None, "uvloop"), ("", "uvloop"), (" UVLOOP ", "uvloop"),
                                             ("asyncio", "asyncio")])
def test_the_gateway_runs_on_uvloop_unless_told_otherwise(value: str | None, kind: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    else:
        monkeypatch.setenv(EVENT_LOOP_ENV, value)
    assert event_loop_kind() == kind


def test_an_unknown_event_loop_is_refused_in_a_sentence(tmp_path: Path, mcp_server: MCPServerHandle) -> None:
    svc = make_service(tmp_path / "svc", [{"name": "demo", "url": mcp_server.url, "protocol": "http", "oauth": {}}])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPPROXY_")}
    r = subprocess.run([sys.executable, "-m", "mcpproxy.cli.main", "serve", "--config", str(svc.config_path)],
                       env={**env, EVENT_LOOP_ENV: "tokio"}, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "mcpproxy: MCPPROXY_EVENT_LOOP='tokio': use 'uvloop' or 'asyncio', or leave it unset"), r.stderr


def test_uvloop_asked_for_but_not_installed_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a))
    monkeypatch.setenv(EVENT_LOOP_ENV, "uvloop")
    with pytest.raises(ConfigError, match=r"MCPPROXY_EVENT_LOOP=uvloop, but uvloop is not installed"):
        event_loop_kind()
    monkeypatch.delenv(EVENT_LOOP_ENV)
    assert event_loop_kind() == "asyncio"  # not asked for: Python's own loop, as on a platform without it


@pytest.mark.parametrize(("value", "kind"), [(None, "uvloop"), ("asyncio", "asyncio")])
def test_serve_logs_in_and_proxies_on_either_loop(value: str | None, kind: str, tmp_path: Path,
                                                 mcp_server: MCPServerHandle, auth_server: OAuthServerHandle) -> None:
    svc = make_service(tmp_path / "svc", [{"name": "demo", "url": mcp_server.url, "protocol": "http", "oauth": {}}])
    if value is not None:
        svc.extra_env[EVENT_LOOP_ENV] = value
    svc.start()
    try:
        assert svc.login("demo")["oauth_status"] == "authenticated"
        call_tool(svc, "demo")
    finally:
        assert svc.stop() == 0, svc.logs()[-3000:]
    assert f"event loop: {kind}" in svc.logs()
