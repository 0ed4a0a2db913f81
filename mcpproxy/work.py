"""Typed work for the OAuth worker (docs/architecture.md "Who owns what"): one frozen value per operation.

The session core decides what to do and sends one of these; the worker runs `op.run(session)` on a
thread and sends back its result, or the OAuthError it raised. Each op names where it goes (`where`),
so the worker can bound the requests in flight to one authorization server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import requests

from mcpproxy.oauth import discovery, registration, revocation, tokens
from mcpproxy.oauth.discovery import AuthServerMetadata, Discovery
from mcpproxy.oauth.errors import OAuthError
from mcpproxy.oauth.registration import ClientRegistration
from mcpproxy.oauth.tokens import TokenResponse

log = logging.getLogger("mcpproxy.worker")


@dataclass(frozen=True)
class Discover:
    server_url: str

    @property
    def where(self) -> str:
        return self.server_url

    def run(self, s: requests.Session) -> Discovery:
        return discovery.discover(self.server_url, s)


@dataclass(frozen=True)
class Register:
    metadata: AuthServerMetadata
    redirect_uri: str
    scopes: tuple[str, ...]

    @property
    def where(self) -> str:
        return self.metadata.issuer

    def run(self, s: requests.Session) -> ClientRegistration:
        return registration.register_client(self.metadata, self.redirect_uri, scopes=self.scopes, session=s)


@dataclass(frozen=True)
class Exchange:
    token_endpoint: str
    code: str = field(repr=False)
    code_verifier: str = field(repr=False)
    client_id: str
    client_secret: str | None = field(repr=False)
    redirect_uri: str
    resource: str | None
    auth_method: str | None = None  # None: by the secret

    @property
    def where(self) -> str:
        return self.token_endpoint

    def run(self, s: requests.Session) -> TokenResponse:
        return tokens.exchange_code(
            self.token_endpoint, code=self.code, code_verifier=self.code_verifier, client_id=self.client_id,
            client_secret=self.client_secret, redirect_uri=self.redirect_uri, resource=self.resource,
            auth_method=self.auth_method, session=s)


@dataclass(frozen=True)
class Refresh:
    token_endpoint: str
    refresh_token: str = field(repr=False)
    client_id: str
    client_secret: str | None = field(repr=False)
    resource: str | None
    scopes: tuple[str, ...] | None
    auth_method: str | None = None  # None: by the secret

    @property
    def where(self) -> str:
        return self.token_endpoint

    def run(self, s: requests.Session) -> TokenResponse:
        return tokens.refresh(
            self.token_endpoint, refresh_token=self.refresh_token, client_id=self.client_id,
            client_secret=self.client_secret, resource=self.resource, scopes=self.scopes,
            auth_method=self.auth_method, session=s)


@dataclass(frozen=True)
class Revoked:
    """Every token of a Revoke was revoked."""


@dataclass(frozen=True)
class Revoke:
    endpoint: str
    tokens: tuple[tuple[str, str], ...] = field(repr=False)  # (token, type hint), refresh token first
    client_id: str
    client_secret: str | None = field(repr=False)
    auth_method: str | None = None

    @property
    def where(self) -> str:
        return self.endpoint

    def run(self, s: requests.Session) -> Revoked:
        """RFC 7009 §2: tries every token; the first failure is raised after the others were tried."""
        errors = []
        for token, hint in self.tokens:
            try:
                revocation.revoke(self.endpoint, token=token, token_type_hint=hint, client_id=self.client_id,
                                  client_secret=self.client_secret, auth_method=self.auth_method, session=s)
            except OAuthError as e:
                errors.append(e)
        if errors:
            raise errors[0]
        return Revoked()


@dataclass(frozen=True)
class Probed:
    connected: bool
    detail: str


@dataclass(frozen=True)
class Probe:
    """An MCP `initialize` with the new token, so the status can say `connected`."""

    url: str
    token: str = field(repr=False)

    @property
    def where(self) -> str:
        return self.url

    def run(self, s: requests.Session) -> Probed:
        return probe_mcp(self.url, self.token, s)


Op = Discover | Register | Exchange | Refresh | Revoke | Probe
Result = Discovery | ClientRegistration | TokenResponse | Revoked | Probed

PROBE_PROTOCOL = "2025-06-18"
PROBE_TIMEOUT = (5.0, 10.0)


def probe_mcp(url: str, token: str, session: Any) -> Probed:
    """An MCP `initialize` with the token; the session it opens is deleted again."""
    auth = {"Authorization": f"Bearer {token}"}
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": PROBE_PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "mcpproxy-probe", "version": "1"}}}
    try:
        r = session.post(url, json=body, timeout=PROBE_TIMEOUT, allow_redirects=False,
                         headers={**auth, "Accept": "application/json, text/event-stream"})
        r.content  # noqa: B018 — an SSE answer ends after the initialize result; read it whole
    except Exception as e:  # noqa: BLE001 — every failure is an answer: not connected, and why
        return Probed(False, f"the MCP server is unreachable: {type(e).__name__}")
    sid = r.headers.get("Mcp-Session-Id")
    if sid:
        try:
            session.delete(url, timeout=PROBE_TIMEOUT, allow_redirects=False,
                           headers={**auth, "Mcp-Session-Id": sid, "MCP-Protocol-Version": PROBE_PROTOCOL}).close()
        except Exception as e:  # noqa: BLE001 — a session left behind expires on the server's side
            log.info("probe could not close its MCP session: %s", type(e).__name__)
    if r.status_code == 200:
        return Probed(True, "initialize answered HTTP 200")
    return Probed(False, f"initialize answered HTTP {r.status_code}")
