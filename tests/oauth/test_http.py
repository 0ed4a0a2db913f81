"""mcpproxy.oauth.http: URL checks, transport failures, answer classification.

Also home of CannedServer, the tiny loopback HTTP server the other tests/oauth files use.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from mcpproxy import __version__
from mcpproxy.oauth.errors import OAuthError
from mcpproxy.oauth.http import (
    MAX_ANSWER_BYTES,
    _short_reason,
    client_auth,
    error_from_response,
    is_loopback_host,
    new_session,
    request,
    require_secure,
    safe_url,
)

# -- CannedServer ----------------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Canned:
    status: int = 200
    body: Any = b""  # bytes, str, or anything JSON-encodable
    headers: dict[str, str] = field(default_factory=dict)
    # When set, the body is these chunks, sent without Content-Length until the client hangs up.
    stream: Callable[[], Iterator[bytes]] | None = None

    def encode(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            return self.body, headers
        if isinstance(self.body, str):
            headers.setdefault("Content-Type", "text/plain")
            return self.body.encode(), headers
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(self.body).encode(), headers


Route = Canned | Callable[[Recorded], Canned]


class CannedServer:
    """Answers canned responses per (method, path) on 127.0.0.1, port 0; records every request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[Recorded] = []
        self.streamed = 0  # bytes of streamed bodies the server got to write
        self.release = threading.Event()  # set at stop: lets hanging handlers finish
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                rec = Recorded(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                owner.requests.append(rec)
                route = owner.routes.get((self.command, parts.path))
                if route is None:
                    canned = Canned(404, "not found")
                elif isinstance(route, Canned):
                    canned = route
                else:
                    canned = route(rec)
                body, headers = canned.encode()
                if canned.stream is not None:
                    self._stream(canned, headers)
                    return
                try:
                    self.send_response(canned.status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout tests)

            def _stream(self, canned: Canned, headers: dict[str, str]) -> None:
                assert canned.stream is not None
                try:
                    self.send_response(canned.status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for chunk in canned.stream():
                        self.wfile.write(chunk)
                        owner.streamed += len(chunk)
                except OSError:
                    pass  # the client stopped reading and closed: what the bound is for

            do_GET = do_POST = do_HEAD = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def add(self, method: str, path: str, route: Route) -> None:
        self.routes[(method, path)] = route

    def hang(self, method: str, path: str) -> None:
        """The route answers only when the server stops (for read timeouts)."""

        def wait(_: Recorded) -> Canned:
            self.release.wait(30)
            return Canned(200, {})

        self.add(method, path, wait)

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def canned_fixture() -> Iterator[CannedServer]:
    server = CannedServer()
    try:
        yield server
    finally:
        server.stop()


canned = pytest.fixture(canned_fixture)


def refused_url(path: str = "/") -> str:
    """A loopback URL nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# -- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "[::1]",
        "localhost",
        "LOCALHOST",
        "localhost.",
        "::ffff:127.0.0.1",
    ],
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host", ["example.com", "10.0.0.1", "0.0.0.0", "128.0.0.1", "localhost.example.com", "::2", ""]
)
def test_non_loopback_hosts(host: str) -> None:
    assert not is_loopback_host(host)


@pytest.mark.parametrize(
    "url",
    [
        "https://as.example.com/token",
        "http://127.0.0.1:8080/x",
        "http://localhost/x",
        "http://[::1]:9/",
    ],
)
def test_require_secure_accepts(url: str) -> None:
    require_secure(url, "token endpoint")


@pytest.mark.parametrize(
    "url",
    [
        "http://as.example.com/token?secret=1",
        "ftp://127.0.0.1/x",
        "/relative",
        "https://",
        "http://x:99999/",
    ],
)
def test_require_secure_refuses(url: str) -> None:
    with pytest.raises(OAuthError) as info:
        require_secure(url, "token endpoint")
    assert info.value.kind == "config"
    assert info.value.message.startswith("token endpoint: ")
    assert "secret" not in info.value.message


def test_safe_url_drops_userinfo_query_fragment() -> None:
    assert (
        safe_url("https://u:pw@AS.example.com:8443/p?code=abc#frag")
        == "https://as.example.com:8443/p"
    )


def test_new_session_shape() -> None:
    session = new_session()
    try:
        assert session.trust_env is False
        assert session.headers["User-Agent"] == f"mcpproxy/{__version__}"
    finally:
        session.close()


def test_oauthlib_loggers_kept_at_warning() -> None:
    assert logging.getLogger("requests_oauthlib").level == logging.WARNING
    assert logging.getLogger("oauthlib").level == logging.WARNING


def test_connection_refused_is_network() -> None:
    session = new_session()
    url = refused_url("/token?code=SECRETCODE")
    with pytest.raises(OAuthError) as info:
        request(session, "POST", url, what="code exchange", data={"code": "SECRETCODE"})
    session.close()
    err = info.value
    assert err.kind == "network"
    assert err.message.startswith("code exchange: cannot reach 127.0.0.1: ")
    assert "refused" in err.message
    assert "SECRETCODE" not in err.message
    assert err.__cause__ is None and err.__suppress_context__


def test_read_timeout_is_network(canned: CannedServer) -> None:
    canned.hang("POST", "/token")
    session = new_session()
    with pytest.raises(OAuthError) as info:
        request(session, "POST", canned.url("/token"), what="refresh", timeout=(2.0, 0.3))
    session.close()
    assert info.value.kind == "network"
    assert "no answer in time" in info.value.message


def test_short_reasons_from_exception_chains() -> None:
    def wrapped(inner: BaseException, outer: type[requests.RequestException]) -> BaseException:
        try:
            try:
                raise inner
            except BaseException as exc:
                raise outer(
                    "HTTPSConnectionPool: Max retries exceeded with url: /token?code=SECRET"
                ) from exc
        except requests.RequestException as exc:
            return exc

    assert _short_reason(
        wrapped(socket.gaierror(-2, "Name or service not known"), requests.ConnectionError)
    ) == ("host name not resolved")
    assert (
        _short_reason(wrapped(ConnectionResetError(104, "reset"), requests.ConnectionError))
        == "connection reset"
    )
    assert (
        _short_reason(wrapped(ssl.SSLError(1, "bad"), requests.exceptions.SSLError))
        == "TLS handshake failed"
    )
    assert _short_reason(requests.exceptions.ConnectTimeout("x")) == "connection timed out"
    assert _short_reason(requests.exceptions.ChunkedEncodingError("x")) == "answer cut off"
    assert "SECRET" not in _short_reason(wrapped(OSError("SECRET"), requests.ConnectionError))


def test_request_applies_default_timeout_and_no_redirect_for_post(canned: CannedServer) -> None:
    canned.add("POST", "/a", Canned(302, b"", {"Location": "/b"}))
    canned.add("GET", "/b", Canned(200, {}))
    session = new_session()
    resp = request(session, "POST", canned.url("/a"), what="x")
    session.close()
    assert resp.status_code == 302
    assert [r.path for r in canned.requests] == ["/a"]


def test_client_auth_basic_rfc6749_example() -> None:
    form: dict[str, str] = {}
    headers = client_auth(form, "s6BhdRkqt3", "7Fjfp0ZBr1KtDRbnfVdmIw")
    assert headers == {"Authorization": "Basic czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3"}
    assert form == {}


def test_client_auth_basic_form_encodes_before_base64() -> None:
    headers = client_auth({}, "id:with space", "p@ss/wörd")
    raw = base64.b64decode(headers["Authorization"].split(" ", 1)[1]).decode()
    assert raw == "id%3Awith+space:p%40ss%2Fw%C3%B6rd"


def test_client_auth_public_client_puts_id_in_form() -> None:
    form: dict[str, str] = {"grant_type": "refresh_token"}
    assert client_auth(form, "abc", None) == {}
    assert form["client_id"] == "abc"


def _answer(
    canned: CannedServer, status: int, body: Any, headers: dict[str, str] | None = None
) -> requests.Response:
    canned.add("POST", "/t", Canned(status, body, headers or {}))
    with requests.Session() as s:
        return s.post(canned.url("/t"), timeout=5)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (500, {"error": "server_error"}, "server"),
        (502, "bad gateway", "server"),
        (503, {"error": "temporarily_unavailable"}, "server"),
        (429, {"error": "invalid_grant"}, "server"),  # status first
        (400, {"error": "invalid_grant"}, "invalid_grant"),
        (401, {"error": "invalid_grant"}, "invalid_grant"),
        (401, {"error": "invalid_client"}, "invalid_client"),
        (400, {"error": "unauthorized_client"}, "invalid_client"),
        (400, {"error": "invalid_request"}, "protocol"),
        (400, {"error": "invalid_scope"}, "protocol"),
        (400, {"error": "unsupported_grant_type"}, "protocol"),
        (404, "<html>nope</html>", "protocol"),
        (400, "invalid_grant", "protocol"),  # not JSON: never by substring
        (400, {"error_description": "invalid_grant"}, "protocol"),
        (302, b"", "protocol"),
    ],
)
def test_classification(canned: CannedServer, status: int, body: Any, kind: str) -> None:
    err = error_from_response(_answer(canned, status, body), "token refresh")
    assert err.kind == kind
    assert err.message.startswith("token refresh: ")


def test_protocol_message_names_code_and_truncated_description(canned: CannedServer) -> None:
    desc = "x" * 500 + "\nforged log line"
    err = error_from_response(
        _answer(canned, 400, {"error": "invalid_scope", "error_description": desc}), "w"
    )
    assert err.kind == "protocol"
    assert "invalid_scope" in err.message
    assert "\n" not in err.message
    assert "x" * 199 in err.message and "x" * 201 not in err.message


def test_invalid_grant_message(canned: CannedServer) -> None:
    err = error_from_response(
        _answer(canned, 400, {"error": "invalid_grant"}),
        "token refresh",
        invalid_grant_message="the authorization server no longer accepts this refresh token — log in again",
    )
    assert "no longer accepts this refresh token — log in again" in err.message
    assert err.permanent


def test_retry_after_seconds(canned: CannedServer) -> None:
    err = error_from_response(_answer(canned, 503, {}, {"Retry-After": "7"}), "w")
    assert (err.kind, err.retry_after) == ("server", 7.0)
    assert not err.permanent


def test_retry_after_http_date(canned: CannedServer) -> None:
    err = error_from_response(
        _answer(canned, 429, {}, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), "w"
    )
    assert (err.kind, err.retry_after) == ("server", 0.0)  # in the past: now


def test_server_error_without_retry_after(canned: CannedServer) -> None:
    err = error_from_response(_answer(canned, 500, {"error": "server_error"}), "w")
    assert err.retry_after is None


# -- bounded answers, no redirects (issue 16 items 4 and 5) ------------------------------------


def zeros(total: int, chunk: int = 64 * 1024) -> Callable[[], Iterator[bytes]]:
    def gen() -> Iterator[bytes]:
        for _ in range(total // chunk):
            yield b"0" * chunk

    return gen


def test_request_never_follows_a_redirect_even_for_get(canned: CannedServer) -> None:
    canned.add("GET", "/a", Canned(302, b"", {"Location": "/b"}))
    canned.add("GET", "/b", Canned(200, {}))
    with new_session() as session:
        resp = request(session, "GET", canned.url("/a"), what="x", allow_redirects=True)
    assert resp.status_code == 302
    assert [r.path for r in canned.requests] == ["/a"]


def test_an_answer_at_the_bound_is_read(canned: CannedServer) -> None:
    canned.add("GET", "/m", Canned(200, b"x" * MAX_ANSWER_BYTES))
    with new_session() as session:
        resp = request(session, "GET", canned.url("/m"), what="metadata")
    assert len(resp.content) == MAX_ANSWER_BYTES


def test_a_declared_length_past_the_bound_is_refused_unread(canned: CannedServer) -> None:
    canned.add("GET", "/m", Canned(200, b"x" * (MAX_ANSWER_BYTES + 1)))
    with new_session() as session, pytest.raises(OAuthError) as info:
        request(session, "GET", canned.url("/m"), what="metadata at https://as/x")
    assert info.value.kind == "protocol"
    assert info.value.message == (
        "metadata at https://as/x: the answer is larger than 1 MiB; refused (HTTP 200)"
    )


def test_a_streamed_answer_is_cut_at_the_bound(canned: CannedServer) -> None:
    # No Content-Length: 200 MB streamed until the client hangs up.
    total = 200 * 1024 * 1024
    canned.add("GET", "/m", Canned(200, b"", {"Content-Type": "application/json"}, zeros(total)))
    with new_session() as session, pytest.raises(OAuthError) as info:
        request(session, "GET", canned.url("/m"), what="metadata")
    assert info.value.kind == "protocol" and "larger than 1 MiB" in info.value.message
    wait_until_quiet(canned)
    # The server got to write the bound plus what socket buffers hold, not the 200 MB.
    assert canned.streamed < 32 * 1024 * 1024


def test_a_small_gzip_answer_cannot_inflate_past_the_bound(canned: CannedServer) -> None:
    import gzip

    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 MiB in about 64 KB
    canned.add("GET", "/m", Canned(200, bomb, {"Content-Encoding": "gzip"}))
    with new_session() as session, pytest.raises(OAuthError) as info:
        request(session, "GET", canned.url("/m"), what="metadata")
    assert info.value.kind == "protocol"


def test_read_body_false_leaves_the_stream_to_the_caller(canned: CannedServer) -> None:
    canned.add("GET", "/sse", Canned(200, b"", {}, zeros(8 * 1024 * 1024)))
    with new_session() as session:
        resp = request(session, "GET", canned.url("/sse"), what="probe", read_body=False)
        assert resp.status_code == 200
        resp.close()


def wait_until_quiet(canned: CannedServer) -> None:
    import time

    last, deadline = -1, time.monotonic() + 5
    while canned.streamed != last and time.monotonic() < deadline:
        last = canned.streamed
        time.sleep(0.2)
