"""mcpproxy-ctl against a real service and the test authorization server (subprocesses, loopback)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import requests

from mcpproxy.cli.client import ServiceClient, ServiceNotRunning
from tests.cli.helpers import (
    CTL,
    clean_env,
    ctl,
    login_through_cli,
    run,
    start_login,
)
from tests.harness import ROOT, ServiceHandle, free_port, wait_until
from tests.loopback import LoopbackHTTPServer, QuietHandler
from tests.oauthserver.control import OAuthServerHandle


def test_status_table_json_and_errors(service: ServiceHandle) -> None:
    r = ctl(service, "status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("NAME") and "EXPIRES" in lines[0]
    assert any(x.startswith("demo") and "Not logged in" in x and "mcpproxy-ctl login demo" in x for x in lines)
    assert any(x.startswith("plain") and "no OAuth" in x for x in lines)

    r = ctl(service, "status", "--json")
    assert r.returncode == 0
    data = json.loads(r.stdout)
    api = service.api("GET", "/api/v1/servers").json()["data"]
    assert data.keys() == api.keys() == {"servers", "stats"}
    assert [s["name"] for s in data["servers"]] == ["demo", "plain"]
    assert data["servers"][0].keys() == api["servers"][0].keys()

    r = ctl(service, "status", "demo", "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout) == service.status("demo")

    r = ctl(service, "status", "nope")
    assert r.returncode == 1
    assert "server 'nope' not found in configuration. Available servers: demo, plain" in r.stderr
    r = ctl(service, "logout", "plain")
    assert r.returncode == 1 and "server 'plain' does not use OAuth" in r.stderr
    r = ctl(service, "refresh", "demo")
    assert r.returncode == 1 and "'demo'" in r.stderr and "log in" in r.stderr

    # usage errors exit 2
    assert ctl(service, "logout").returncode == 2
    assert ctl(service, "logout", "demo", "--all").returncode == 2
    assert ctl(service, "frobnicate").returncode == 2

    # --url/--api-key and MCPPROXY_URL/MCPPROXY_API_KEY instead of the config
    r = run([CTL, "--url", service.base_url, "--api-key", service.api_key, "status", "demo", "--json"])
    assert r.returncode == 0 and json.loads(r.stdout)["name"] == "demo"
    r = run([CTL, "status"], MCPPROXY_URL=service.base_url, MCPPROXY_API_KEY=service.api_key)
    assert r.returncode == 0 and "demo" in r.stdout
    r = run([CTL, "--url", service.base_url, "--api-key", "wrong-key-0123456789", "status"])
    assert r.returncode == 1 and "refused the API key" in r.stderr


def test_login_no_browser_completes_over_sse_then_refresh_events_logout(
        service: ServiceHandle, auth_server: OAuthServerHandle) -> None:
    code, out, err = login_through_cli([CTL, "--config", str(service.config_path), "login", "demo", "--no-browser",
                                        "--timeout", "60"])
    assert code == 0, err
    assert "Logged in to 'demo'" in out
    assert service.status("demo")["oauth_status"] == "authenticated"

    r = ctl(service, "refresh", "demo")
    assert r.returncode == 0, r.stderr
    assert re.search(r"Refreshed 'demo'; the new token expires (in \d+s|now)", r.stdout)

    # events --json: one object per line; 2 s tokens refresh by themselves
    ev = subprocess.Popen([CTL, "--config", str(service.config_path), "events", "--json", "--server", "demo"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=clean_env())
    try:
        assert ev.stdout is not None
        seen: list[dict[str, object]] = []

        def refreshed() -> bool:
            seen.append(json.loads(ev.stdout.readline()))  # type: ignore[union-attr]
            return seen[-1]["event"] == "oauth.token_refreshed"

        wait_until(refreshed, 20, "an oauth.token_refreshed line")
        assert all(set(x) == {"id", "event", "data"} for x in seen)
        assert all(x["data"]["payload"].get("server_name", x["data"]["payload"].get("name")) == "demo"  # type: ignore[index]
                   for x in seen)
    finally:
        ev.terminate()
        ev.wait(10)

    r = ctl(service, "logout", "demo")
    assert r.returncode == 0, r.stderr
    assert "Logged out of 'demo'" in r.stdout and "revoked" in r.stdout
    assert service.status("demo")["user_logged_out"] is True
    r = ctl(service, "logout", "--all")
    assert r.returncode == 0 and "Logged out of 'demo'" in r.stdout


def test_login_failures_exit_1_with_the_cause(service: ServiceHandle, auth_server: OAuthServerHandle) -> None:
    r = ctl(service, "login", "demo", "--no-browser", "--timeout", "1")
    assert r.returncode == 1 and "server 'demo': no login completed within 1s" in r.stderr

    auth_server.set_config(auto_approve=False)
    proc, url = start_login([CTL, "--config", str(service.config_path), "login", "demo", "--no-browser",
                             "--timeout", "60"])
    try:
        page = requests.get(url, timeout=10)
        request_id = re.search(r'name="request_id" value="([^"]+)"', page.text)
        assert request_id, page.text
        denied = requests.post(auth_server.url("/authorize/deny"), data={"request_id": request_id.group(1)},
                               allow_redirects=False, timeout=10)
        assert denied.status_code == 302
        requests.get(denied.headers["Location"], timeout=30)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert "server 'demo': login failed" in err and "access_denied" in err


def test_service_not_running_says_how_to_start_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["status"], ["login", "demo", "--no-browser"], ["events"], ["logout", "--all"]):
        r = run([CTL, "--url", url, "--api-key", "x" * 20, *args])
        assert r.returncode == 1, (args, r.stderr)
        assert f"not running at {url}" in r.stderr and "mcpproxy serve" in r.stderr and "make run" in r.stderr


def test_events_reconnects_after_a_service_restart_and_misses_nothing(service: ServiceHandle) -> None:
    ev = subprocess.Popen([CTL, "--config", str(service.config_path), "events", "--json", "--server", "demo"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=clean_env())
    try:
        assert ev.stdout is not None
        wait_until(lambda: "mcpproxy_sse_clients 1" in service.api("GET", "/metrics").text, 20,
                   "mcpproxy-ctl events to be subscribed")
        service.stop()
        service.start()
        service.login("demo")  # an event only the new instance can have sent

        def login_seen() -> bool:
            line = ev.stdout.readline()  # type: ignore[union-attr]
            return bool(line) and json.loads(line)["event"] == "oauth.login_completed"

        wait_until(login_seen, 60, "oauth.login_completed after the restart")
        assert ev.poll() is None, "events exited instead of reconnecting"
    finally:
        ev.terminate()
        _, err = ev.communicate(timeout=10)
    assert "reconnected" in err


class _DropsFirst:
    """A loopback server that hangs up on the first request of each method without answering, then answers
    like the service; it counts what reached it."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        server = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.seen.append(self.command)
                if server.seen.count(self.command) == 1:
                    self.close_connection = True  # a kept-alive connection the service has just closed
                    return
                body = json.dumps({"success": True, "data": {"name": "demo"}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.http = LoopbackHTTPServer(Handler)

    def close(self) -> None:
        self.http.close()


def test_a_get_on_a_connection_the_service_closed_is_sent_again_a_post_is_not() -> None:
    up = _DropsFirst()
    try:
        client = ServiceClient(up.http.url)
        assert client.server("demo") == {"name": "demo"}  # the GET, once more on a new connection
        with pytest.raises(ServiceNotRunning):
            client.logout("demo")  # a POST may have acted: never sent twice
        assert up.seen == ["GET", "GET", "POST"]
    finally:
        up.close()
