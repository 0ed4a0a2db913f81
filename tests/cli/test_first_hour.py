"""Issue 17, the first hour of a new user, through the real commands against a running service: a typo in the
config is caught and the running set kept, problems reach `mcpproxy-ctl status`, `mcpproxy-ctl ui`, one voice."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import requests

from tests.cli.helpers import CTL, MCPPROXY, clean_env, ctl, login_through_cli, mcpproxy, run
from tests.harness import ROOT, ServiceHandle, wait_until
from tests.oauthserver.control import OAuthServerHandle


def _status(svc: ServiceHandle) -> dict[str, object]:
    return dict(svc.api("GET", "/api/v1/status").json()["data"])


def _names(svc: ServiceHandle) -> set[str]:
    return {s["name"] for s in svc.api("GET", "/api/v1/servers").json()["data"]["servers"]}


def _write(svc: ServiceHandle, servers_key: str, servers: list[dict[str, object]]) -> None:
    doc = {"listen": f"127.0.0.1:{svc.port}", "data_dir": str(svc.data_dir), "api_key": svc.api_key,
           servers_key: servers}
    svc.config_path.write_text(json.dumps(doc, indent=2))


def test_a_typo_or_an_empty_list_does_not_remove_every_server_and_is_told_everywhere(
        service: ServiceHandle) -> None:
    """Items 1 and 3: the log, GET /api/v1/status (`config_problems`) and `mcpproxy-ctl status` say it."""
    running = json.loads(service.config_path.read_text())["mcpServers"]
    assert _status(service)["config_problems"] == [] and _status(service)["config_differs"] is False

    _write(service, "mcpServer", running)
    typo = f"{service.config_path}: mcpServer: unknown setting; did you mean 'mcpServers'? (line 5)"
    wait_until(lambda: typo in service.logs(), 15, "the typo in the log")
    assert "keeping the running configuration until" in service.logs()
    status = _status(service)
    assert status["config_differs"] is True and status["config_problems"] == [typo]
    assert status["config_file"] == str(service.config_path)
    assert _names(service) == {"demo", "plain"}

    r = ctl(service, "status")
    assert r.returncode == 0, r.stderr
    table, _, below = r.stdout.partition("\n\n")
    assert "demo" in table and "plain" in table
    assert below.splitlines() == [
        "The config file has an edit that was not applied; the service runs the previous configuration:",
        f"  {typo}",
    ]

    # Spelt right but empty: refused as well, with its own sentence.
    _write(service, "mcpServers", [])
    wait_until(lambda: "the edit leaves no servers" in " ".join(_status(service)["config_problems"]),  # type: ignore[arg-type]
               15, "the empty edit refused")
    assert _names(service) == {"demo", "plain"}
    assert "the edit leaves no servers (mcpServers is empty or missing); keeping the running 2 server(s)" in \
        ctl(service, "status").stdout

    # A typo inside an entry (it would have meant "discover"): that edit is refused too, path and suggestion.
    _write(service, "mcpServers", [running[0], {**running[1], "oauht": None}])
    wait_until(lambda: any("mcpServers[1] (plain).oauht: unknown setting; did you mean 'oauth'?" in p
                           for p in _status(service)["config_problems"]), 15, "the entry's typo")  # type: ignore[union-attr]

    _write(service, "mcpServers", running)  # fixed: the file runs again, nothing to say
    wait_until(lambda: _status(service)["config_differs"] is False, 15, "the fixed file taken")
    assert _status(service)["config_problems"] == []
    assert ctl(service, "status").stdout.count("\n\n") == 0


def test_ctl_ui_prints_the_web_ui_address_with_its_key_and_opens_it(service: ServiceHandle, tmp_path: Path) -> None:
    """Item 6: the address the no-key page promises."""
    r = ctl(service, "ui")
    assert r.returncode == 0, r.stderr
    url = r.stdout.strip()
    assert url == f"{service.base_url}/?apikey={service.api_key}"
    assert requests.get(url, timeout=10).status_code == 200
    assert requests.get(f"{service.base_url}/api/v1/status?apikey={service.api_key}", timeout=10).ok

    opened = tmp_path / "opened"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s" "$1" > "{opened}"\n')
    browser.chmod(0o755)
    r = run([CTL, "--config", str(service.config_path), "ui", "--open"], BROWSER=str(browser))
    assert r.returncode == 0, r.stderr
    assert opened.read_text() == url and r.stdout.strip() == url

    r = ctl(service, "ui", "--open")  # no display, no BROWSER: said, with the address still printed
    assert r.returncode == 1 and r.stdout.strip() == url
    assert r.stderr == "mcpproxy-ctl: no browser could be opened here; open the address above yourself\n"


def test_the_wrong_key_is_said_the_same_way_by_every_command(service: ServiceHandle) -> None:
    """Item 7: where the key came from and the file it must match; no HTTP advice; `mcpproxy` errors say mcpproxy."""
    wrong = "wrong-key-0123456789abcdef"
    key_file = service.data_dir / "api_key"
    sentence = (f"the service at {service.base_url} refused the API key from --api-key or MCPPROXY_API_KEY; "
                f"the key must match the service's own: api_key in {service.config_path}")
    said = {}
    for argv in ([CTL, "--config", str(service.config_path), "--api-key", wrong, "status"],
                 [CTL, "--config", str(service.config_path), "--api-key", wrong, "events"],
                 [CTL, "--config", str(service.config_path), "--api-key", wrong, "login", "demo", "--no-browser"]):
        r = run(argv)
        assert r.returncode == 1, argv
        said[argv[-1]] = r.stderr
        assert r.stderr.startswith(f"mcpproxy-ctl: {sentence}"), r.stderr
        assert "X-API-Key" not in r.stderr and "Bearer" not in r.stderr
    # The service made its own key (no api_key in the config): the file named is the one in its data dir.
    doc = json.loads(service.config_path.read_text())
    del doc["api_key"]
    other = service.data_dir / "other.json"
    other.write_text(json.dumps(doc))
    key_file.write_text("the-generated-key-0123456789\n")
    r = run([MCPPROXY, "auth", "status", "--config", str(other)])
    assert r.returncode == 1
    assert r.stderr == (f"mcpproxy: the service at {service.base_url} refused the API key from {key_file}; the key "
                        f"must match the service's own: {key_file} (or pass --api-key / set MCPPROXY_API_KEY)\n")


def test_events_says_where_it_connected_one_line_a_refresh_unknown_server_and_ctrl_c(
        service: ServiceHandle) -> None:
    """Item 7: `events` in one voice."""
    r = ctl(service, "events", "--server", "nosuch")
    assert r.returncode == 1
    assert r.stderr == "mcpproxy-ctl: server 'nosuch' not found in configuration. Available servers: demo, plain\n"

    service.login("demo")
    ev = subprocess.Popen([CTL, "--config", str(service.config_path), "events", "--server", "demo"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=clean_env())
    try:
        assert ev.stderr is not None and ev.stdout is not None
        first = ev.stderr.readline()
        assert first == f"mcpproxy-ctl: connected to {service.base_url}/events (server 'demo'); Ctrl-C to stop\n"
        lines: list[str] = []

        def refreshed_twice() -> bool:
            lines.append(ev.stdout.readline())  # type: ignore[union-attr]
            return sum("token refreshed" in x for x in lines) >= 2

        wait_until(refreshed_twice, 30, "two refreshes of the 2 s tokens")
        refresh_lines = [x for x in lines if "demo" in x]
        # Each refresh is one line, not a line per status change on the way.
        assert all("oauth.token_refreshed" in x for x in refresh_lines[-2:]), lines
        assert not any("servers.changed" in x and "token_refreshed" in x for x in lines), lines
        ev.send_signal(signal.SIGINT)
        _, err = ev.communicate(timeout=20)
    finally:
        if ev.poll() is None:
            ev.kill()
    assert ev.returncode == 0, err
    assert "Aborted" not in err and "Traceback" not in err


def test_login_of_a_logged_in_server_says_so(service: ServiceHandle) -> None:
    code, out, err = login_through_cli([CTL, "--config", str(service.config_path), "login", "demo", "--no-browser"])
    assert code == 0, err
    for argv in ([CTL, "--config", str(service.config_path), "login", "demo", "--no-browser"],
                 [MCPPROXY, "auth", "login", "-s", "demo", "--no-browser", "--config", str(service.config_path)]):
        r = run(argv)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("Already logged in to 'demo'; the token expires "), r.stdout
        assert "--again" in r.stdout
    # --again does log in anew.
    code, out, err = login_through_cli([CTL, "--config", str(service.config_path), "login", "demo", "--no-browser",
                                        "--again"])
    assert code == 0 and "Logged in to 'demo'" in out, err


def test_standalone_auth_status_shows_what_the_service_would(service: ServiceHandle,
                                                              auth_server: OAuthServerHandle) -> None:
    """Item 7: a refresh token the authorization server stopped taking is Auth Error, standalone as in the
    service — the CLI runs the session rules, it does not just read the store."""
    r = mcpproxy(service, "auth", "status")
    assert "log in with: mcpproxy auth login -s demo" in r.stdout  # the hint in this command's own words
    expires = service.login("demo")["token_expires_at"]
    service.stop()
    auth_server.invalidate_refresh_tokens()
    # 2 s tokens: once this one has expired the service would refresh it at once, and be told invalid_grant.
    wait_until(lambda: time.time() > datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp(), 10,
               "the stored token to expire")
    r = mcpproxy(service, "auth", "status")
    assert r.returncode == 0, r.stderr
    row = next(x for x in r.stdout.splitlines() if x.startswith("demo"))
    assert "Auth Error" in row, r.stdout
    service.start()
    assert service.wait_status("demo", lambda s: s["oauth_status"] == "error", 15, "the service agreeing")


def test_a_failed_login_page_closes_itself_and_runs_no_other_script(service: ServiceHandle) -> None:
    """Item 8, the service's side: the callback page of a failed login closes the tab the Web UI opened; its CSP
    allows that one script by hash, so nothing the authorization server sends can run."""
    from urllib.parse import parse_qs, urlsplit

    state = parse_qs(urlsplit(service.start_login("demo")).query)["state"][0]
    r = requests.get(f"{service.base_url}/oauth/callback", timeout=30, params={
        "state": state, "error": "access_denied", "error_description": "<script>alert(1)</script>"})
    assert r.status_code == 400
    csp = r.headers["Content-Security-Policy"]
    assert csp.startswith("default-src 'none';") and re.search(r"; script-src 'sha256-[A-Za-z0-9+/=]+'$", csp), csp
    assert r.text.count("<script>") == 1 and "<script>window.close()</script>" in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    unknown = requests.get(f"{service.base_url}/oauth/callback?state=nope&code=x", timeout=10)
    assert "<script>" not in unknown.text and "script-src" not in unknown.headers["Content-Security-Policy"]
