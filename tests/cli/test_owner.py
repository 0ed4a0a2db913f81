"""One owner per data dir (issue 12.1, 12.2) and finding it (issue 17.4, 17.5), with the real commands and service."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time
from pathlib import Path

import psutil

from mcpproxy import owner
from tests.cli.helpers import CTL, MCPPROXY, mcpproxy, run
from tests.conftest import ServiceFactory
from tests.faults import oauth_servers
from tests.harness import free_port, wait_until
from tests.mcpserver.control import MCPServerHandle
from tests.oauthserver.control import OAuthServerHandle

LONG_TTL = 3600


def _fds(pid: int) -> list[str]:
    out = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            out.append(os.readlink(fd))
        except OSError:
            continue
    return out


def _listening(pid: int) -> list[int]:
    return [c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN]


def test_a_second_serve_exits_2_at_once_naming_the_owner_and_only_the_service_holds_lock_and_port(
        service_factory: ServiceFactory, mcp_server: MCPServerHandle) -> None:
    svc = service_factory(oauth_servers(mcp_server.url, ["demo"]))
    assert svc.proc is not None
    runtime = svc.data_dir / "runtime.json"
    assert json.loads(runtime.read_text()) == {"pid": svc.proc.pid, "url": svc.base_url,
                                               "listen": f"127.0.0.1:{svc.port}"}
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o600

    # Another address, so only the lock can stop it.
    started = time.monotonic()
    r = run([MCPPROXY, "serve", "--config", str(svc.config_path), "--listen", f"127.0.0.1:{free_port()}"],
            timeout=30)
    took = time.monotonic() - started
    assert r.returncode == 2, r.stderr
    assert r.stderr == f"mcpproxy: another mcpproxy (pid {svc.proc.pid}, {svc.base_url}) owns {svc.data_dir}\n"
    assert r.stdout == ""
    assert took < 2.0, f"the second instance took {took:.2f}s to give up"
    print(f"\nsecond instance: exit {r.returncode} in {took:.2f}s: {r.stderr.strip()}")

    # The actors are forked from the service: none of them keeps the lock or the listening socket.
    main, *children = svc.pids()
    assert main == svc.proc.pid and len(children) >= 4, children  # admin, logger, supervisor, hub, worker, demo
    assert any(f.endswith("/owner.lock") for f in _fds(main)) and _listening(main) == [svc.port]
    for pid in children:
        assert not any(f.endswith("/owner.lock") for f in _fds(pid)), f"pid {pid} holds the lock"
        assert _listening(pid) == [], f"pid {pid} ({psutil.Process(pid).name()}) holds a listening socket"

    assert svc.stop() == 0
    assert not runtime.exists(), "the runtime file is left after a clean stop"
    svc.start()  # the lock went with the process
    assert json.loads(runtime.read_text())["pid"] == svc.proc.pid


def test_kill_9_of_the_owner_leaves_no_stale_lock(service_factory: ServiceFactory,
                                                   mcp_server: MCPServerHandle) -> None:
    svc = service_factory(oauth_servers(mcp_server.url, ["demo"]))
    assert svc.proc is not None
    main, *children = svc.pids()
    os.kill(main, signal.SIGKILL)  # the service alone: its actors live on until the orphan guard stops them
    svc.proc.wait(10)
    # Free at once, though the actors still run: they never held it.
    alive = [p for p in children if psutil.pid_exists(p)]
    lock = owner.borrow(svc.data_dir)
    assert lock is not None, "the lock outlived the process that took it"
    with lock:
        pass
    assert alive, "the actors were gone before the lock was checked; the check proves less"
    # The runtime file names a dead process: the CLI does not believe it.
    assert owner.read_runtime(svc.data_dir) is not None and owner.owner_runtime(svc.data_dir) is None
    wait_until(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                               for p in children), 20, "the orphan guard to stop the old actors")
    svc.proc = None
    svc.start()
    assert svc.status("demo")["is_oauth"]


def test_standalone_logout_goes_through_the_running_service_or_exits_1(
        service_factory: ServiceFactory, mcp_server: MCPServerHandle, auth_server: OAuthServerHandle) -> None:
    auth_server.set_config(access_ttl=LONG_TTL)
    svc = service_factory(oauth_servers(mcp_server.url, ["demo", "two"]), start=False)
    # Started on another address than its config says: only the runtime file tells where it is.
    svc.port = free_port()
    svc.extra_env["MCPPROXY_LISTEN"] = f"127.0.0.1:{svc.port}"
    svc.start()
    assert svc.proc is not None
    svc.login("demo")
    svc.login("two")

    r = mcpproxy(svc, "auth", "logout", "-s", "demo")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Logged out of 'demo': token deleted and revoked at the authorization server.\n"
    assert svc.status("demo")["user_logged_out"] is True  # the service did it: its own state says so

    # A service that owns the data dir but does not answer: nothing is written behind its back.
    os.kill(svc.proc.pid, signal.SIGSTOP)
    try:
        r = mcpproxy(svc, "auth", "logout", "-s", "two")
    finally:
        os.kill(svc.proc.pid, signal.SIGCONT)
    assert r.returncode == 1
    assert r.stderr == (f"mcpproxy: the mcpproxy service (pid {svc.proc.pid}, {svc.base_url}) owns {svc.data_dir}; "
                        "it did not answer, so 'two' was not logged out; try again, or stop it and log out "
                        "standalone — nothing was changed\n")
    status = svc.status("two")
    assert status["oauth_status"] == "authenticated" and status["token_held"], status


def test_ctl_finds_the_service_of_its_data_dir_on_another_address(
        service_factory: ServiceFactory, mcp_server: MCPServerHandle) -> None:
    svc = service_factory(oauth_servers(mcp_server.url, ["demo"]), start=False)
    configured = svc.port
    svc.port = free_port()
    svc.extra_env["MCPPROXY_LISTEN"] = f"127.0.0.1:{svc.port}"
    svc.start()
    config = ["--config", str(svc.config_path)]

    r = run([CTL, *config, "status"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].startswith("demo")
    assert r.stdout.splitlines()[-1] == "Tokens at rest: sealed, with the data key from a key file."

    # --url without a scheme means http://; a URL that is not one is one line, no traceback.
    r = run([CTL, *config, "--url", f"127.0.0.1:{svc.port}", "status", "--json"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["servers"][0]["name"] == "demo"
    r = run([CTL, *config, "--url", "127.0.0.1:notaport", "status"])
    assert r.returncode == 1
    assert r.stderr == "mcpproxy-ctl: --url: '127.0.0.1:notaport' is not a URL such as http://127.0.0.1:8080\n"
    r = run([CTL, *config, "status"], MCPPROXY_URL="ftp://127.0.0.1:1")
    assert r.returncode == 1
    assert r.stderr == "mcpproxy-ctl: MCPPROXY_URL: 'ftp://127.0.0.1:1' is not a URL such as http://127.0.0.1:8080\n"

    svc.stop()
    r = run([CTL, *config, "status"])
    assert r.returncode == 1
    assert f"not running at http://127.0.0.1:{configured} " in r.stderr
    assert r.stderr.strip().endswith("if it runs at another address, pass --url or set MCPPROXY_URL")
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr


def test_a_busy_port_is_one_line_and_exit_2_before_any_actor_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        data_dir = tmp_path / "d"
        config = tmp_path / "c.json"
        config.write_text(json.dumps({"listen": f"127.0.0.1:{port}", "data_dir": str(data_dir),
                                      "key_file": str(tmp_path / "k"), "mcpServers": []}))
        r = run([MCPPROXY, "serve", "--config", str(config)], timeout=30)
    assert r.returncode == 2
    assert r.stderr == f"mcpproxy: port 127.0.0.1:{port} is in use (by pid {os.getpid()})\n"
    assert not (data_dir / "store").exists(), "the actors started (they made the store) before the port was checked"
    assert not (data_dir / "runtime.json").exists()
