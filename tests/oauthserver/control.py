"""Start the test authorization server as a subprocess and drive its /_test/ control API.

    with start_oauth_server(access_ttl=2) as auth:
        auth.set_fault("503", count=1, retry_after=1)
        ...
        assert auth.counters()["grants"]["refresh_token"] == 2
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
_CONTROL_TIMEOUT = 10.0


def pkce_pair() -> tuple[str, str]:
    """A fresh (code_verifier, S256 code_challenge) pair (RFC 7636 §4.1-4.2)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OAuthServerError(RuntimeError):
    """The test server could not start or a control call failed."""


class OAuthServerHandle:
    """A running test authorization server process. Secrets never appear in its repr."""

    def __init__(self, process: subprocess.Popen[bytes], base_url: str) -> None:
        self._process = process
        self.base_url = base_url
        self.pid = process.pid
        self._session = requests.Session()

    def __repr__(self) -> str:
        return f"OAuthServerHandle(base_url={self.base_url!r}, pid={self.pid})"

    def __enter__(self) -> OAuthServerHandle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- process -----------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return self.base_url

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/.well-known/oauth-authorization-server"

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def running(self) -> bool:
        return self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code once stopped (0 after a clean SIGTERM), else None."""
        return self._process.poll()

    def stop(self) -> None:
        """SIGTERM, wait up to 5 s, then SIGKILL. Safe to call twice."""
        self._session.close()
        proc = self._process
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()

    # -- control API -------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        resp = self._session.request(method, self.url(path), json=body,
                                     timeout=_CONTROL_TIMEOUT)
        if resp.status_code >= 400:
            raise OAuthServerError(f"{method} {path} answered {resp.status_code}: {resp.text}")
        return resp.json()

    def set_config(self, **kw: Any) -> None:
        """access_ttl=, refresh_ttl=, rotate=, auto_approve=, habits= (applies to tokens issued later)."""
        self._call("POST", "/_test/config", kw)

    def set_habits(self, *habits: str) -> None:
        """The provider habits in force from now on (README.md "Habits"); none restores the spec-exact server."""
        self._call("POST", "/_test/config", {"habits": list(habits)})

    def config(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_test/config"))

    def set_fault(self, mode: str, **kw: Any) -> None:
        """count=, retry_after=, hang_seconds=, grant_types=, resource= (see README.md)."""
        self._call("POST", "/_test/fault", {"mode": mode, **kw})

    def fault(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_test/fault"))

    def clear_fault(self) -> None:
        self._call("POST", "/_test/fault", {"mode": "none"})

    def forget_clients(self) -> None:
        """Forget every registered client, as a server with in-memory clients does on a restart."""
        self._call("POST", "/_test/forget_clients")

    def invalidate_refresh_tokens(self) -> None:
        self._call("POST", "/_test/invalidate")

    def counters(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_test/counters"))

    def reset_counters(self) -> None:
        self._call("POST", "/_test/reset_counters")

    def issued(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_test/issued"))

    def grants(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/_test/grants"))

    def add_client(self, client_id: str, client_secret: str | None,
                   redirect_uris: list[str]) -> None:
        """Pre-register a client; client_secret=None makes it public."""
        self._call("POST", "/_test/clients", {"client_id": client_id,
                                              "client_secret": client_secret,
                                              "redirect_uris": redirect_uris})

    # -- OAuth conveniences for tests --------------------------------------------------------

    def register_client(self, redirect_uris: list[str],
                        token_endpoint_auth_method: str = "none", **metadata: Any) -> dict[str, Any]:
        """RFC 7591 dynamic registration; returns the server's answer."""
        body = {"redirect_uris": redirect_uris,
                "token_endpoint_auth_method": token_endpoint_auth_method, **metadata}
        resp = self._session.post(self.url("/register"), json=body, timeout=_CONTROL_TIMEOUT)
        if resp.status_code != 201:
            raise OAuthServerError(f"registration answered {resp.status_code}: {resp.text}")
        return dict(resp.json())

    def login(self, client_id: str, redirect_uri: str, *, client_secret: str | None = None,
              scope: str | None = None, resource: str | None = None) -> dict[str, Any]:
        """Run the whole code + PKCE flow without a browser (auto-approve); return the tokens."""
        verifier, challenge = pkce_pair()
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                  "code_challenge": challenge, "code_challenge_method": "S256",
                  "state": secrets.token_urlsafe(8)}
        if scope is not None:
            params["scope"] = scope
        if resource is not None:
            params["resource"] = resource
        resp = self._session.get(self.url("/authorize"), params=params, allow_redirects=False,
                                 timeout=_CONTROL_TIMEOUT)
        if resp.status_code != 302:
            raise OAuthServerError(f"authorize answered {resp.status_code} (consent on?)")
        query = parse_qs(urlsplit(resp.headers["Location"]).query)
        if "code" not in query:
            raise OAuthServerError(f"authorize redirected with error {query.get('error')}")
        form = {"grant_type": "authorization_code", "code": query["code"][0],
                "redirect_uri": redirect_uri, "code_verifier": verifier, "client_id": client_id}
        if resource is not None:
            form["resource"] = resource
        auth = (client_id, client_secret) if client_secret is not None else None
        resp = self._session.post(self.url("/token"), data=form, auth=auth,
                                  timeout=_CONTROL_TIMEOUT)
        if resp.status_code != 200:
            raise OAuthServerError(f"token exchange answered {resp.status_code}")
        return dict(resp.json())


def _read_ready_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OAuthServerError(f"test OAuth server gave no READY line within {timeout} s")
            if not sel.select(timeout=left):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise OAuthServerError(
                    f"test OAuth server exited before READY (code {proc.wait(timeout=5)})")
            buf += chunk
    line = buf.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if not line.startswith("READY "):
        raise OAuthServerError(f"unexpected first line from test OAuth server: {line!r}")
    return line[len("READY "):]


def start_oauth_server(access_ttl: float = 3600, refresh_ttl: float = 86400, rotate: bool = True,
                       consent: bool = False, pkce_metadata: bool = True,
                       scopes: str = "mcp:read mcp:write", timeout: float = 15,
                       verbose: bool = False, port: int = 0,
                       habits: tuple[str, ...] = ()) -> OAuthServerHandle:
    """Launch ``python -m tests.oauthserver --port PORT`` (0: a free one) and wait for its READY line."""
    cmd = [sys.executable, "-m", "tests.oauthserver", "--host", "127.0.0.1", "--port", str(port),
           "--access-ttl", str(access_ttl), "--refresh-ttl", str(refresh_ttl),
           "--scopes", scopes]
    if not rotate:
        cmd.append("--no-rotate")
    if consent:
        cmd.append("--consent")
    if not pkce_metadata:
        cmd.append("--no-pkce-metadata")
    if verbose:
        cmd.append("--verbose")
    for habit in habits:
        cmd += ["--habit", habit]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=env)
    try:
        base_url = _read_ready_line(proc, timeout)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        raise
    return OAuthServerHandle(proc, base_url)
