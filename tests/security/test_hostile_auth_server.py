"""Terminal escapes from an authorization server reach no terminal (issue 16, item 3).

An authorization server chooses the `error` and `error_description` it redirects the browser back with. Here
the test plays that hostile server: it sends the browser to the real service's callback with an OSC title,
a screen clear and an OSC 52 clipboard write. Then the CLI is run against a hostile stand-in for the
service (the test's own HTTP server) to show that whatever the service sends, no escape is printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from tests.harness import ServiceHandle, wait_until
from tests.loopback import LoopbackHTTPServer, QuietHandler

CTL = str(Path(sys.executable).parent / "mcpproxy-ctl")
# OSC 0 (window title), CSI 2J (clear screen), OSC 52 (clipboard write), C1 CSI, BEL, a bidi override, CR/LF.
TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J\x1b[H"
CLIPBOARD = "\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07"
ESCAPES = TITLE + CLEAR + CLIPBOARD + "\x9b31m\u202e\r\nFAKE LINE"
FORBIDDEN = ("\x1b", "\x07", "\x9b", "\u202e", "\r")


def _assert_clean(text: str, where: str) -> None:
    found = [repr(c) for c in FORBIDDEN if c in text]
    assert not found, f"{where} carries {found}: {text!r}"
    assert not any(line.startswith("FAKE LINE") for line in text.split("\n")), f"{where} starts a line: {text!r}"


class Done:
    """A finished CLI run, its output decoded as it was written (no newline translation hides a CR)."""

    def __init__(self, proc: subprocess.CompletedProcess[bytes]) -> None:
        self.returncode = proc.returncode
        self.stdout = proc.stdout.decode("utf-8", "replace")
        self.stderr = proc.stderr.decode("utf-8", "replace")


def _state(auth_url: str) -> str:
    return parse_qs(urlsplit(auth_url).query)["state"][0]


def _ctl(svc_url: str, key: str, *args: str, timeout: float = 30) -> Done:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPPROXY_")}
    return Done(subprocess.run([CTL, "--url", svc_url, "--api-key", key, *args], capture_output=True,
                               timeout=timeout, env=env))


def test_the_callback_keeps_no_escape_from_the_authorization_server(service: ServiceHandle) -> None:
    cases = [
        # An error code outside RFC 6749's characters is not kept at all.
        ({"error": "access_denied" + TITLE, "error_description": "fine"}, "malformed"),
        # A valid code with a hostile, very long description: kept without control characters, cut short.
        ({"error": "access_denied", "error_description": ESCAPES + "A" * 5000}, "access_denied"),
    ]
    for params, expect in cases:
        state = _state(service.start_login("demo"))
        page = requests.get(f"{service.base_url}/oauth/callback?" + urlencode({"state": state, **params}),
                            timeout=30)
        assert page.status_code == 400, page.text
        _assert_clean(page.text, "the callback page")
        status = service.wait_status("demo", lambda s: bool(s.get("last_error")), 10, "the login's error")
        message = status["last_error"]["message"]
        assert expect in message, message
        _assert_clean(message, "last_error")
        assert len(message) < 400, len(message)
        # And so the CLI prints nothing hostile either, even with the table and the JSON.
        for args in (("status",), ("status", "demo"), ("status", "--json")):
            done = _ctl(service.base_url, service.api_key, *args)
            assert done.returncode == 0, done.stderr
            assert expect in done.stdout, done.stdout
            _assert_clean(done.stdout + done.stderr, f"mcpproxy-ctl {' '.join(args)}")


# ---- the CLI against a hostile service -----------------------------------------------------------


def _status(name: str) -> dict[str, Any]:
    return {"name": name, "url": "http://127.0.0.1:9/mcp" + TITLE, "protocol": "http", "enabled": True,
            "is_oauth": True, "oauth_status": "error", "refresh_state": "failed", "action": "login",
            "user_logged_out": False, "token_expires_at": None, "next_refresh_at": None,
            "last_error": {"kind": "protocol", "message": "refused " + ESCAPES}}


class HostileService(LoopbackHTTPServer):
    """Answers the REST API like mcpproxy would, with escapes in every string it can put one in."""

    def __init__(self) -> None:
        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, doc: Any) -> None:
                body = json.dumps(doc, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 — http.server's name
                path = urlsplit(self.path).path
                if path == "/api/v1/servers":
                    self._send(200, {"success": True, "data": {"servers": [_status("demo" + TITLE)], "stats": {}}})
                elif path == "/api/v1/servers/demo":  # login asks first whether it is logged in already
                    self._send(200, {"success": True, "data": _status("demo")})
                elif path == "/api/v1/status":  # the at-rest line and the config's problems under the table
                    self._send(200, {"success": True, "data": {
                        "at_rest": "keyring" + TITLE, "config_differs": True, "config_problems": ["typo " + ESCAPES],
                        "config_warnings": ["unknown " + CLEAR]}})
                elif path == "/events":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    payload = {**_status("demo"), "reason": "login_failed"}
                    for name, data in (("servers.changed", payload),
                                       ("oauth.refresh_failed", {"server_name": "demo", "error": ESCAPES,
                                                                 "action": "login" + TITLE})):
                        frame = json.dumps({"payload": data, "timestamp": time.time()}, ensure_ascii=False)
                        self.wfile.write(f"id: 1\nevent: {name}\ndata: {frame}\n\n".encode())
                        self.wfile.flush()
                else:
                    self._send(404, {"success": False, "error": "server not found " + ESCAPES})

            def do_POST(self) -> None:  # noqa: N802 — http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = urlsplit(self.path).path
                if path == "/api/v1/servers/logout":
                    self._send(200, {"success": True, "data": {
                        "results": [{"server": "a" + TITLE, "action": "logout", "success": False, "error": ESCAPES},
                                    {"server": "b" + CLEAR, "action": "logout", "success": True, "revoked": True}],
                        "count": 2, "failed": 1}})
                elif path.endswith("/login"):
                    self._send(200, {"success": True, "data": {"server": "demo", "auth_url": "http://x/" + CLIPBOARD,
                                                               "browser_opened": False}})
                else:
                    self._send(502, {"success": False, "error": "upstream said " + ESCAPES, "kind": "server"})

        super().__init__(Handler)


@pytest.fixture
def hostile_service() -> Iterator[HostileService]:
    svc = HostileService()
    yield svc
    svc.close()


def test_the_cli_prints_no_escape_the_service_sends(hostile_service: HostileService) -> None:
    url = hostile_service.url
    for args, code, expect in ((("status",), 0, "refused"), (("status", "nope"), 1, "server not found"),
                               (("logout", "--all"), 1, "Could not log out"), (("refresh", "demo"), 1, "upstream"),
                               (("login", "demo", "--no-browser", "--timeout", "10"), 1, "login failed")):
        done = _ctl(url, "key", *args)
        out = done.stdout + done.stderr
        assert done.returncode == code and expect in out, (args, done.returncode, out)
        _assert_clean(out, f"mcpproxy-ctl {' '.join(args)}")

    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPPROXY_")}
    proc = subprocess.Popen([CTL, "--url", url, "--api-key", "key", "events"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.decode("utf-8", "replace"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("refresh failed" in line for line in lines), 15, "the events printed")
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(5)
    _assert_clean("".join(lines), "mcpproxy-ctl events")


@pytest.mark.parametrize("fault", ["malformed_crlf_token", "malformed_huge_token", "oversized_answer"])
def test_a_hostile_token_answer_is_refused_and_the_old_token_kept(service: ServiceHandle, auth_server: Any,
                                                                  fault: str) -> None:
    # Issue 16, item 4 (the OAuth half), through the real service: a CR/LF access token (which made every
    # pass-through call a 500), a 20 KiB one (which was stored and sent on every call) and a 2 MiB answer.
    service.login("demo")
    held = service.wait_status("demo", lambda s: s["refresh_count"] >= 1, 10, "a first refresh")
    events = service.events()
    auth_server.set_fault(fault)
    st = service.wait_status("demo", lambda s: (s["last_error"] or {}).get("kind") == "protocol", 15,
                             f"the {fault} answer refused")
    assert st["refresh_count"] == held["refresh_count"] and st["refresh_state"] in ("retrying", "refreshing"), st
    assert len(st["last_error"]["message"]) <= 300, st["last_error"]
    auth_server.clear_fault()
    st = service.wait_status("demo", lambda s: s["refresh_count"] > held["refresh_count"] and not s["last_error"],
                             30, "a good refresh after the fault")
    assert st["oauth_status"] == "authenticated", st
    r = requests.post(f"{service.base_url}/mcp/demo", timeout=30,
                      json={"jsonrpc": "2.0", "id": 1, "method": "initialize",
                            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                       "clientInfo": {"name": "t", "version": "0"}}},
                      headers={"Accept": "application/json, text/event-stream"})
    assert r.status_code == 200, r.text[:300]
    assert not events.failed_for_good("demo"), "a hostile answer cost the session"
    assert "X-Injected" not in service.logs()
