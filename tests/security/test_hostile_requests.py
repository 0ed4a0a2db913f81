"""A hostile client or page gets a 4xx and nothing else (issue 16, items 2, 6, 7, 9; issue 14, items 1, 6).

Forged log lines, malformed headers, deeply nested JSON, malformed HTTP, and what each answer carries —
all sent to the real `mcpproxy serve` on loopback, most of them over a raw socket so that the bytes are
exactly the hostile ones.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass

import pytest
import requests

from tests.conftest import ServiceFactory
from tests.harness import ServiceHandle, wait_until

#: Nothing listens there: these servers are configured, never called.
NOWHERE = "http://127.0.0.1:9/mcp"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@pytest.fixture
def svc(service_factory: ServiceFactory) -> ServiceHandle:
    return service_factory([
        {"name": "demo", "url": NOWHERE, "protocol": "http", "oauth": {}},
        {"name": "internal-billing", "url": NOWHERE, "protocol": "http", "oauth": None},
    ])


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(svc: ServiceHandle, data: bytes, timeout: float = 10) -> Raw | None:
    """Sends bytes as they are; the parsed answer, or None when the service closed without one."""
    with socket.create_connection(("127.0.0.1", svc.port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    answer = b"".join(chunks)
    if not answer:
        return None
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return Raw(int(lines[0].split()[1]), headers, body)


def get(svc: ServiceHandle, target: bytes, extra: bytes = b"", method: bytes = b"GET") -> Raw:
    host = f"127.0.0.1:{svc.port}".encode()
    answer = raw_request(svc, method + b" " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + extra +
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    assert answer is not None, target
    return answer


def _no_unhandled_errors(svc: ServiceHandle) -> None:
    logs = svc.logs()
    for bad in ("Traceback", "Error handling request", " ERROR "):
        assert bad not in logs, f"{bad!r} in the service's log:\n{logs[-3000:]}"


# ---- item 2: forged log lines --------------------------------------------------------------------


FORGED = "2099-01-01 00:00:00,000 WARNING mcpproxy forged"


def test_request_strings_cannot_forge_log_lines(svc: ServiceHandle) -> None:
    # A newline and a fake log line, a terminal title (OSC 0), a bell and a right-to-left override, URL-encoded.
    evil = ("%0a" + FORGED.replace(" ", "%20") + "%0d%1b]0;pwned%07%e2%80%ae").encode()
    for target in (b"/" + evil, b"/api/v1/" + evil, b"/mcp/" + evil, b"/assets/" + evil):
        r = get(svc, target)
        assert r.status in (401, 404), (target, r.status)

    def logged() -> list[str]:
        return [line for line in svc.logs().splitlines() if "mcpproxy.access" in line and "forged" in line]

    lines = wait_until(lambda: len(logged()) >= 4 and logged(), 10, "four access log lines")
    logs = svc.logs()
    assert not any(line.startswith(FORGED) for line in logs.splitlines()), "a request forged a log line"
    assert "\x1b" not in logs and "\x07" not in logs and "\u202e" not in logs, "control characters reached the log"
    for line in lines:
        assert "\\x0a" + FORGED in line and "\\x1b]0;pwned\\x07" in line and "\\u202e" in line, line


# ---- item 6: malformed headers -------------------------------------------------------------------


MALFORMED_ORIGINS = [b"http://127.0.0.1:%d.evil.example", b"http://[::1", b"http://127.0.0.1:99999",
                     b"http://[::1]:99999", b"http://127.0.0.1:-1", b"http://:%d", b"\xff\xfe://x"]


def test_malformed_origins_are_refused_not_crashed(svc: ServiceHandle) -> None:
    for origin in MALFORMED_ORIGINS:
        if b"%d" in origin:
            origin = origin % svc.port
        for method, target, key in ((b"POST", b"/api/v1/servers/demo/logout", True),
                                    (b"POST", b"/mcp/internal-billing", False),
                                    (b"GET", b"/events", True)):
            extra = b"Origin: " + origin + b"\r\n" + (f"X-API-Key: {svc.api_key}\r\n".encode() if key else b"")
            r = get(svc, target, extra, method)
            assert r.status == 403, (origin, target, r.status, r.body[:300])
            assert r.headers["content-type"].startswith("application/json"), r.headers
            assert json.loads(r.body)["success"] is False
    _no_unhandled_errors(svc)


def test_non_utf8_api_keys_are_refused_not_crashed(svc: ServiceHandle) -> None:
    for header in (b"X-API-Key: \xff\xfe\x80", b"Authorization: Bearer \xc3\x28\xa0\xa1",
                   b"X-API-Key: " + svc.api_key.encode() + b"\xff"):
        for target in (b"/api/v1/status", b"/metrics", b"/events"):
            r = get(svc, target, header + b"\r\n")
            assert r.status == 401, (header, target, r.status, r.body[:300])
            assert json.loads(r.body) == {"success": False, "error": json.loads(r.body)["error"]}
    # A Host of such bytes is not ours either.
    r = raw_request(svc, b"GET /api/v1/status HTTP/1.1\r\nHost: \xff\xfe:1\r\nConnection: close\r\n\r\n")
    assert r is not None and r.status == 421, r
    _no_unhandled_errors(svc)


# ---- item 7: headers on every answer -------------------------------------------------------------


def test_every_answer_carries_its_protective_headers(svc: ServiceHandle) -> None:
    key = svc.headers
    for path, headers in (("/api/v1/status", key), ("/api/v1/servers", key), ("/api/v1/nothing", key),
                          ("/api/v1/servers/nope", key), ("/api/v1/status", {}), ("/api/v1/openapi.json", key)):
        r = requests.get(svc.base_url + path, headers=headers, timeout=10)
        assert r.headers.get("Cache-Control") == "no-store", (path, r.status_code, dict(r.headers))
        assert r.headers.get("X-Content-Type-Options") == "nosniff", (path, dict(r.headers))
    r = requests.post(svc.base_url + "/api/v1/servers/demo/login", data="[", headers=key, timeout=10)
    assert r.status_code == 400 and r.headers.get("Cache-Control") == "no-store", dict(r.headers)

    # The callback page: no framing, no script, nothing cached or sent on.
    r = requests.get(svc.base_url + "/oauth/callback?state=unknown&code=x", timeout=10)
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("text/html")
    csp = r.headers.get("Content-Security-Policy", "")
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, csp
    assert r.headers.get("X-Content-Type-Options") == "nosniff" and r.headers.get("Cache-Control") == "no-store"
    assert r.headers.get("Referrer-Policy") == "no-referrer"

    # The Web UI and each asset it references.
    page = requests.get(svc.base_url + "/", timeout=10)
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
    assert page.status_code == 200 and assets, page.text[:500]
    for path in ("/", *assets, "/assets/missing.js"):
        r = requests.get(svc.base_url + path, timeout=10)
        csp = r.headers.get("Content-Security-Policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, (path, r.status_code, csp)
        assert r.headers.get("X-Content-Type-Options") == "nosniff", (path, dict(r.headers))


# ---- item 9: the pass-through does not list the configured servers -------------------------------


def test_an_unknown_pass_through_name_reveals_no_server_names(svc: ServiceHandle) -> None:
    for method in ("GET", "POST", "DELETE"):
        r = requests.request(method, f"{svc.base_url}/mcp/guess", json={}, timeout=10)
        assert r.status_code == 404, (method, r.status_code)
        body = r.json()
        assert body["error"]["data"]["kind"] == "not_found" and "'guess'" in body["error"]["message"], body
        assert "internal-billing" not in r.text and "demo" not in r.text, r.text


# ---- issue 14, item 1: any body gets a 400 ------------------------------------------------------


NESTED = [b'{"a":' * 5000, b"[" * 100000, b"[" * 100000 + b"]" * 100000, b'{"a":' * 50000 + b"1" + b"}" * 50000,
          b"\xff\xfe{}", b"{" * 300000, b"1e99999", b'"\\ud800"', b"NaN"]


def test_any_request_body_gets_a_4xx_with_the_error_envelope(svc: ServiceHandle) -> None:
    for body in NESTED:
        for path in ("/api/v1/servers/demo/login",):
            r = svc.api("POST", path, data=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 400, (body[:20], r.status_code, r.text[:300])
            doc = r.json()
            assert doc["success"] is False and "JSON" in doc["error"], doc
    _no_unhandled_errors(svc)


# ---- issue 14, item 6: malformed HTTP is one warning line ----------------------------------------


def test_malformed_http_is_one_warning_line_with_the_peer(svc: ServiceHandle) -> None:
    host = f"Host: 127.0.0.1:{svc.port}\r\n".encode()
    secret = svc.api_key.encode()
    garbage = [
        b"GET / HTTP/1.1\r\n" + host + b"X-API-Key: " + secret + b"\x01\r\n\r\n",  # a control character in a value
        b"GET / HTTP/1.1\r\n" + host + b"Content-Length: ten\r\n\r\n",
        b"GET /\x00\x1b]0;pwned\x07 HTTP/1.1\r\n" + host + b"\r\n",
        b"GET / HTTP/1.1\r\n" + host + b"Bad Header" + secret + b"\r\n\r\n",
    ]
    # Non-HTTP bytes (a TLS hello on the HTTP port) are what port scanners send: aiohttp says so at DEBUG.
    tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256))
    for data in [*garbage, tls_hello]:
        answer = raw_request(svc, data)
        assert answer is not None and answer.status == 400, (data[:40], answer)

    def told() -> list[str]:
        return [line for line in svc.logs().splitlines() if "malformed HTTP request from 127.0.0.1: " in line]

    lines = wait_until(lambda: len(told()) > len(garbage) and told(), 10, "one line per malformed request")
    assert len(lines) == len(garbage) + 1, lines
    assert sum(" WARNING aiohttp.server " in line for line in lines) == len(garbage), lines
    assert sum(" DEBUG " in line and "HTTPS traffic" in line for line in lines) == 1, lines
    for line in lines:
        assert not CONTROL.search(line), repr(line)
    logs = svc.logs()
    _no_unhandled_errors(svc)
    assert svc.api_key not in logs, "a malformed request's API key reached the log"
    assert requests.get(svc.base_url + "/readyz", timeout=10).status_code == 200
