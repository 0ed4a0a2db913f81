"""`mcpproxy auth status|login|logout`: through the service, and logout standalone when none runs."""

from __future__ import annotations

import json
import os
import signal

from tests.cli.helpers import MCPPROXY, ctl, login_through_cli, mcpproxy
from tests.conftest import ServiceFactory
from tests.faults import oauth_servers, one_pid
from tests.harness import ServiceHandle, wait_until, write_config
from tests.mcpserver.control import MCPServerHandle
from tests.oauthserver.control import OAuthServerHandle


def test_auth_commands_through_the_service_then_standalone_logout(
        service: ServiceHandle, auth_server: OAuthServerHandle) -> None:
    r = mcpproxy(service, "auth", "logout", "--server", "nope")
    assert r.returncode == 1
    assert r.stderr == "mcpproxy: server 'nope' not found in configuration. Available servers: demo, plain\n"
    r = mcpproxy(service, "auth", "status", "--server", "plain")
    assert r.returncode == 1 and "server 'plain' does not use OAuth" in r.stderr
    assert mcpproxy(service, "auth", "logout").returncode == 2

    code, out, err = login_through_cli([MCPPROXY, "auth", "login", "--server", "demo", "--no-browser",
                                        "--config", str(service.config_path)])
    assert code == 0, err
    assert "Logged in to 'demo'" in out

    r = mcpproxy(service, "auth", "status", "--server", "demo", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["oauth_status"] == "authenticated"
    r = mcpproxy(service, "auth", "status")
    assert r.returncode == 0 and "Authenticated" in r.stdout
    refreshes = service.wait_status("demo", lambda s: s["refresh_count"] >= 1, 15, "a refresh")["refresh_count"]
    assert refreshes >= 1

    service.stop()
    revocations = auth_server.counters()["revocations"]
    r = mcpproxy(service, "auth", "status")
    assert r.returncode == 0 and "not running" in r.stderr
    row = next(x for x in r.stdout.splitlines() if x.startswith("demo"))
    assert "Authenticated" in row or "Token Expired" in row  # 2 s tokens: either, by now
    r = mcpproxy(service, "auth", "login", "--server", "demo", "--no-browser")
    assert r.returncode == 1 and "not running" in r.stderr

    r = mcpproxy(service, "auth", "logout", "--server", "demo")
    assert r.returncode == 0, r.stderr
    assert "standalone" in r.stdout and "token deleted and revoked" in r.stdout
    assert auth_server.counters()["revocations"] == revocations + 2  # the refresh token, then the access token
    r = mcpproxy(service, "auth", "status", "--json")
    demo = next(s for s in json.loads(r.stdout)["servers"] if s["name"] == "demo")
    assert demo["oauth_status"] == "none" and demo["user_logged_out"] is True

    service.start()
    status = service.status("demo")
    assert status["oauth_status"] == "none"
    assert status["user_logged_out"] is True
    assert status["token_expires_at"] is None

    # through the service again: --all, and idempotent
    r = mcpproxy(service, "auth", "logout", "--all")
    assert r.returncode == 0 and "Logged out of 'demo'" in r.stdout and "standalone" not in r.stdout


# ---- logout --all and disabled servers (issue 14.2) --------------------------------------------------

LONG_TTL = 900.0  # nothing refreshes or expires during these tests
PLAIN = {"name": "plain", "url": "http://127.0.0.1:9/mcp", "protocol": "http", "oauth": None}


def test_logout_all_logs_out_every_enabled_server_past_a_disabled_one(
        service_factory: ServiceFactory, mcp_server: MCPServerHandle, auth_server: OAuthServerHandle) -> None:
    """A disabled server listed first used to end `--all` with exit 1 before the others were logged out."""
    auth_server.set_config(access_ttl=LONG_TTL)
    servers = [*oauth_servers(mcp_server.url, ["old", "demo", "demo2"]), PLAIN]
    svc = service_factory(servers)
    for name in ("old", "demo", "demo2"):
        svc.login(name)
    # 'old' is disabled with its token still stored: the service stops its actor, the store keeps the token.
    servers[0]["enabled"] = False
    write_config(svc.data_dir, svc.port, servers)
    svc.wait_status("old", lambda s: s["enabled"] is False, 15, "the service to reload 'old' as disabled")
    revocations = auth_server.counters()["revocations"]

    r = mcpproxy(svc, "auth", "logout", "--all")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "Skipped 'old': it is disabled in the configuration; its stored token is kept — "
        "`mcpproxy auth logout -s old` deletes it.",
        "Logged out of 'demo': token deleted and revoked at the authorization server.",
        "Logged out of 'demo2': token deleted and revoked at the authorization server.",
    ]
    assert r.stderr == ""
    for name in ("demo", "demo2"):
        assert svc.status(name)["user_logged_out"] is True
    # Revocation follows the logout's answer, in the background: two servers × (refresh, access).
    wait_until(lambda: auth_server.counters()["revocations"] == revocations + 4, 10, "both servers revoked")

    # mcpproxy-ctl says the same of the disabled server, and points at the command that can clear it.
    r = ctl(svc, "logout", "--all")
    assert r.returncode == 0, r.stderr
    assert "Skipped 'old': it is disabled in the configuration; `mcpproxy auth logout -s old` deletes its " \
           "stored token, if any." in r.stdout
    r = ctl(svc, "logout", "old")
    assert r.returncode == 1
    assert r.stderr.strip() == "mcpproxy-ctl: server 'old' is disabled in the configuration; " \
                               "`mcpproxy auth logout -s old` deletes its stored token"

    # By name, while the service owns the data dir, nothing edits the store behind it (issue 12.2): the
    # disabled server's token is kept and the command says why; stopped, the standalone logout deletes it.
    revocations = auth_server.counters()["revocations"]
    r = mcpproxy(svc, "auth", "logout", "-s", "old")
    assert r.returncode == 1
    assert r.stderr == (f"mcpproxy: the mcpproxy service (pid {svc.proc.pid}, {svc.base_url}) owns {svc.data_dir}; "
                        "'old' is disabled, so the service holds no session for it and its stored token is kept; "
                        "stop the service to delete it standalone — nothing was changed\n")
    assert auth_server.counters()["revocations"] == revocations
    svc.stop()
    r = mcpproxy(svc, "auth", "logout", "-s", "old")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Logged out of 'old' (disabled in the configuration, so in the token store " \
                               "directly): token deleted and revoked at the authorization server."
    assert auth_server.counters()["revocations"] == revocations + 2
    svc.start()
    r = mcpproxy(svc, "auth", "logout", "--all")
    assert r.returncode == 0, r.stderr
    assert "Skipped 'old': it is disabled in the configuration and holds no stored token." in r.stdout

    # Enabled again, it comes back logged out.
    servers[0]["enabled"] = True
    write_config(svc.data_dir, svc.port, servers)
    # Until its new actor answers, the gateway shows the config's static status; wait for the actor's own.
    status = svc.wait_status("old", lambda s: s["enabled"] is True and s["user_logged_out"] is True, 15,
                             "the service to reload 'old' as enabled and logged out")
    assert status["oauth_status"] == "none" and not status["token_held"], status


def test_logout_all_goes_on_past_a_failed_logout_and_exits_1(
        service_factory: ServiceFactory, mcp_server: MCPServerHandle, auth_server: OAuthServerHandle) -> None:
    """An enabled server whose logout fails (its actor frozen: no answer) does not stop the ones after it."""
    auth_server.set_config(access_ttl=LONG_TTL)
    svc = service_factory(oauth_servers(mcp_server.url, ["a1", "frozen", "a3"]))
    for name in ("a1", "frozen", "a3"):
        svc.login(name)
    pid = one_pid(svc, "mcpproxy:frozen")
    os.kill(pid, signal.SIGSTOP)
    try:
        r = mcpproxy(svc, "auth", "logout", "--all", timeout=90)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stdout.splitlines() == [
        "Logged out of 'a1': token deleted and revoked at the authorization server.",
        "Logged out of 'a3': token deleted and revoked at the authorization server.",
    ]
    assert r.stderr.splitlines() == [
        "mcpproxy: server 'frozen': the service is busy or restarting: no answer to Logout within 10s",
        "mcpproxy: 1 of 3 logouts failed: frozen",
    ]
    assert svc.status("a3")["user_logged_out"] is True
