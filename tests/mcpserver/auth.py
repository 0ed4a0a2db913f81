"""Bearer-token gate for the test MCP endpoint: RFC 6750 challenges, RFC 7662 introspection.

Every request is introspected at the authorization server (no cache), so an expired or
revoked token is refused on the very next request.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.mcpserver.counters import Counters, token_fingerprint

log = logging.getLogger("tests.mcpserver.auth")


@dataclass(frozen=True)
class Verdict:
    """What to do with one request: `outcome` is the counter it increments."""

    outcome: str
    status: int = 200
    error: str | None = None
    description: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200


def _same_resource(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def judge(
    introspection: Mapping[str, Any], *, resource: str, required_scope: str | None, now: float
) -> Verdict:
    """Classify an RFC 7662 introspection answer for this resource (pure; unit-testable)."""
    if not introspection.get("active"):
        if introspection.get("reason") == "expired":
            return Verdict("rejected_expired", 401, "invalid_token", "the access token expired")
        return Verdict("rejected_invalid", 401, "invalid_token", "the access token is not active")
    exp = introspection.get("exp")
    if isinstance(exp, int | float) and exp <= now:
        return Verdict("rejected_expired", 401, "invalid_token", "the access token expired")
    aud = introspection.get("aud")
    audiences = [aud] if isinstance(aud, str) else list(aud or [])
    # RFC 8707 / MCP authorization: a token issued for another resource must be refused.
    if not any(isinstance(a, str) and _same_resource(a, resource) for a in audiences):
        return Verdict("rejected_audience", 401, "invalid_token", "the access token is for another resource")
    scopes = str(introspection.get("scope") or "").split()
    if required_scope and required_scope not in scopes:
        return Verdict("rejected_scope", 403, "insufficient_scope", f"scope {required_scope} is required")
    return Verdict("authorized")


def challenge(
    *, metadata_url: str | None, scope: str, error: str | None = None
) -> str:
    """RFC 6750 §3 / RFC 9728 §5.1 WWW-Authenticate value; no resource_metadata when metadata_url is None."""
    named = f', resource_metadata="{metadata_url}"' if metadata_url else ""
    if error == "insufficient_scope":
        return f'Bearer error="insufficient_scope", scope="{scope}"{named}'
    params = [f'resource_metadata="{metadata_url}"'] if metadata_url else []
    params.append(f'scope="{scope}"')
    if error:
        params.insert(0, f'error="{error}"')
    return "Bearer " + ", ".join(params)


def bearer_token(scope: Scope) -> str | None:
    """The token of an `Authorization: Bearer …` header (RFC 6750 §2.1), else None."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class IntrospectionError(Exception):
    """The authorization server could not answer an introspection request."""


class Introspector:
    """RFC 7662 client over one pooled httpx.AsyncClient; open it with `async with`."""

    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Introspector:
        self._client = httpx.AsyncClient(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def introspect(self, token: str) -> dict[str, Any]:
        if self._client is None:
            raise IntrospectionError("the introspection client is not open")
        try:
            response = await self._client.post(self.endpoint, data={"token": token})
        except httpx.HTTPError as exc:
            raise IntrospectionError(f"introspection request failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise IntrospectionError(f"introspection answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise IntrospectionError("introspection answered something that is not JSON") from None
        if not isinstance(body, dict):
            raise IntrospectionError("introspection answered a JSON value that is not an object")
        return body


class BearerGate:
    """ASGI middleware in front of the MCP endpoint: only introspected, in-audience tokens pass."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        introspector: Introspector,
        counters: Counters,
        resource: str,
        metadata_url: str | None,
        scope_hint: str,
        required_scope: str | None,
    ) -> None:
        self.app = app
        self.introspector = introspector
        self.counters = counters
        self.resource = resource
        self.metadata_url = metadata_url
        self.scope_hint = scope_hint
        self.required_scope = required_scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.counters.requests += 1
        token = bearer_token(scope)
        if token is None:
            self.counters.record("rejected_missing", None)
            await self._refuse(send, Verdict("rejected_missing", 401, None, "a bearer token is required"))
            return
        fingerprint = token_fingerprint(token)
        try:
            answer = await self.introspector.introspect(token)
        except IntrospectionError as exc:
            self.counters.record("introspection_errors", fingerprint)
            log.warning("introspection failed: %s", exc)
            await _send_json(send, 503, {"error": "temporarily_unavailable", "error_description": str(exc)})
            return
        verdict = judge(answer, resource=self.resource, required_scope=self.required_scope, now=time.time())
        self.counters.record(verdict.outcome, fingerprint)
        log.info("%s %s token=%s -> %s", scope.get("method"), scope.get("path"), fingerprint, verdict.outcome)
        if not verdict.allowed:
            await self._refuse(send, verdict)
            return
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send, verdict: Verdict) -> None:
        scope_value = self.required_scope if verdict.status == 403 and self.required_scope else self.scope_hint
        header = challenge(metadata_url=self.metadata_url, scope=scope_value, error=verdict.error)
        body = {"error": verdict.error or "unauthorized", "error_description": verdict.description}
        await _send_json(send, verdict.status, body, [(b"www-authenticate", header.encode())])


async def _send_json(
    send: Send, status: int, body: Mapping[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
