"""`mcpproxy auth status|login|logout`: through the service, and logout standalone when none runs."""

from __future__ import annotations

import json

from tests.cli.helpers import MCPPROXY, login_through_cli, mcpproxy
from tests.harness import ServiceHandle
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
