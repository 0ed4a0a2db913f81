"""Start and stop the test MCP server from tests, and get real tokens from the test AS.

    with start_mcp_server(as_handle.base_url) as mcp:
        token = obtain_token(as_handle.base_url, mcp.url, "mcp:read")["access_token"]
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
REDIRECT_URI = "http://127.0.0.1:9/cb"


class MCPServerError(RuntimeError):
    """The test MCP server did not start, or the token dance with the test AS failed."""


class MCPServerHandle:
    """A running `python -m tests.mcpserver` subprocess."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self.base_url = url.rsplit("/mcp", 1)[0]
        self.pid = process.pid
        self.metadata_url = f"{self.base_url}/.well-known/oauth-protected-resource/mcp"

    def __repr__(self) -> str:
        return f"MCPServerHandle(url={self.url!r}, pid={self.pid})"

    def stop(self) -> None:
        """SIGTERM, wait up to 5 s, then SIGKILL."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def counters(self) -> dict[str, Any]:
        response = requests.get(f"{self.base_url}/_test/counters", timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def reset_counters(self) -> None:
        requests.post(f"{self.base_url}/_test/reset_counters", timeout=10).raise_for_status()

    def __enter__(self) -> MCPServerHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_mcp_server(
    as_url: str,
    scopes: str = "mcp:read",
    required_scope: str | None = None,
    name: str = "test",
    timeout: float = 20,
    issuer: str | None = None,
    habits: tuple[str, ...] = (),
) -> MCPServerHandle:
    """Launch the server on a free loopback port and wait (up to `timeout` s) for its READY line."""
    cmd = [sys.executable, "-m", "tests.mcpserver", "--port", "0", "--as-url", as_url, "--scopes", scopes]
    cmd += ["--name", name]
    if required_scope:
        cmd += ["--required-scope", required_scope]
    if issuer:
        cmd += ["--issuer", issuer]
    for habit in habits:
        cmd += ["--habit", habit]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    lines: list[str] = []

    def read_first_line() -> None:
        assert process.stdout is not None
        lines.append(process.stdout.readline())

    reader = threading.Thread(target=read_first_line, daemon=True)
    reader.start()
    reader.join(timeout)
    line = lines[0].strip() if lines else ""
    if not line.startswith("READY "):
        MCPServerHandle(process, "http://127.0.0.1:0/mcp").stop()
        why = f"it exited with code {process.returncode}" if lines else f"no READY line within {timeout} s"
        raise MCPServerError(f"test MCP server {name!r} did not start: {why}")
    return MCPServerHandle(process, line.split(" ", 1)[1])


def _pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def obtain_token(as_url: str, resource: str, scope: str = "mcp:read", timeout: float = 10) -> dict[str, Any]:
    """Register a public client, authorize with PKCE S256 (auto-approved), exchange the code.

    Returns the AS's token response (access_token, refresh_token, expires_in, …) with the
    registered `client_id` added under `"client_id"` when the response lacks it.
    """
    as_url = as_url.rstrip("/")
    with requests.Session() as http:
        meta = http.get(f"{as_url}/.well-known/oauth-authorization-server", timeout=timeout)
        meta.raise_for_status()
        endpoints = meta.json()
        registration = http.post(
            endpoints.get("registration_endpoint", f"{as_url}/register"),
            json={
                "client_name": "mcpserver-tests",
                "redirect_uris": [REDIRECT_URI],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "scope": scope,
            },
            timeout=timeout,
        )
        if registration.status_code not in (200, 201):
            raise MCPServerError(f"client registration answered HTTP {registration.status_code}")
        client_id = registration.json()["client_id"]
        verifier, challenge = _pkce_pair()
        state = secrets.token_urlsafe(16)
        authorize = http.get(
            endpoints.get("authorization_endpoint", f"{as_url}/authorize"),
            params={
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT_URI,
                "scope": scope,
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "resource": resource,
            },
            allow_redirects=False,
            timeout=timeout,
        )
        if authorize.status_code not in (302, 303):
            raise MCPServerError(f"authorization answered HTTP {authorize.status_code}, not a redirect")
        query = parse_qs(urlsplit(authorize.headers["Location"]).query)
        if query.get("state") != [state] or "code" not in query:
            raise MCPServerError("authorization redirect lacks the code or carries another state")
        token = http.post(
            endpoints.get("token_endpoint", f"{as_url}/token"),
            data={
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": REDIRECT_URI,
                "client_id": client_id,
                "code_verifier": verifier,
                "resource": resource,
            },
            timeout=timeout,
        )
        if token.status_code != 200:
            raise MCPServerError(f"token endpoint answered HTTP {token.status_code}")
        result: dict[str, Any] = token.json()
        result.setdefault("client_id", client_id)
        return result


def wait_until(condition: Any, timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `condition()` until it returns something truthy; raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met within {timeout} s")
        time.sleep(interval)
