"""In-memory state of the test authorization server: clients, grants, tokens, faults, counters.

Every lookup is a dict keyed by the token or id, so each request costs O(1).
Secrets are kept out of reprs (``field(repr=False)``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

AUTH_CODE_TTL = 60.0
PENDING_TTL = 600.0
DEFAULT_SUB = "test-user"

FAULT_MODES = frozenset(
    {
        "none",
        "500",
        "503",
        "429",
        "hang",
        "slow",
        "invalid_grant",
        "invalid_client",
        "lost",
        "malformed_no_access_token",
        "malformed_not_json",
        "malformed_negative_expires",
        "malformed_string_expires",
        "malformed_huge_expires",
        "malformed_crlf_token",
        "malformed_huge_token",
        "oversized_answer",
        "invalid_request",
        "unauthorized_client",
    }
)

#: Provider habits (tests/oauthserver/README.md "Habits"): named behaviours of real authorization
#: servers, any number at once. POST /_test/config {"habits": [...]} or --habit NAME.
HABITS = frozenset(
    {
        # discovery, registration, the authorization request
        "no_registration_endpoint",
        "unrecognized_client_422",
        "unknown_client_html_500",
        "issuer_with_path",
        "openid_configuration_only",
        "issuer_trailing_slash",
        "issuer_mismatch",
        "resource_refused_invalid_target",
        "no_pkce_metadata",
        "fixed_redirect_uri",
        # the token endpoint
        "form_encoded_answers",  # GitHub: form-encoded answers unless Accept: application/json
        "form_encoded_always",  # form-encoded answers even to Accept: application/json
        "errors_with_200",  # GitHub: token errors with HTTP 200; a refused refresh token is bad_refresh_token
        "string_expires_in",  # Entra v1: "expires_in": "3599"
        "no_expires_in",  # no expires_in in token answers
        "jwt_access_token",  # access tokens are JWTs whose exp is the expiry
        "no_refresh_token_on_refresh",  # Google, Auth0 without rotation: refresh answers carry none
        "strict_rotation_reuse_detection",  # Atlassian, Linear: a reused refresh token revokes the grant
        "rotation_grace_window",  # a rotated refresh token stays usable for GRACE_SECONDS
        "dcr_answers_client_secret_basic",  # Notion: registration answers client_secret_basic and a secret
        "dcr_answers_client_secret_post",  # Figma: registration answers client_secret_post and a secret
        "strict_client_auth",  # only the registered client authentication; two at once refused
        "html_errors",  # token errors as text/html pages
        "nonstandard_token_path",  # HubSpot: the token endpoint is /oauth/v1/token; /token answers 404
        "discovery_outage",  # Atlassian: metadata endpoints answer 503
    }
)
#: The tenant path of the `issuer_with_path` habit.
ISSUER_PATH = "/tenant"
GRACE_SECONDS = 10.0
GRANT_TYPES = ("authorization_code", "refresh_token")
AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")

# RFC 7636 §4.1: code_verifier = 43*128unreserved; the S256 challenge has the same alphabet.
_PKCE_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: ``error`` code, human description, HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def jwt_shaped(exp: float, sub: str, iss: str) -> str:
    """An access token in JWT form (RFC 7519) whose `exp` is its expiry; the signature is random bytes:
    a client may read `exp` as a hint, never verify it."""
    def part(doc: dict[str, Any]) -> str:
        raw = json.dumps(doc, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    claims = {"iss": iss, "sub": sub, "exp": int(exp), "jti": secrets.token_hex(8)}
    return f"{part({'alg': 'RS256', 'typ': 'at+jwt'})}.{part(claims)}.{secrets.token_urlsafe(32)}"


def valid_pkce_string(value: str) -> bool:
    return bool(_PKCE_RE.match(value))


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pkce_matches(verifier: str, challenge: str) -> bool:
    return valid_pkce_string(verifier) and hmac.compare_digest(s256(verifier), challenge)


def wire_number(value: float) -> int | float:
    """An int when the value is whole (3600), else the float (2.5)."""
    return int(value) if float(value).is_integer() else float(value)


@dataclass
class Config:
    access_ttl: float = 3600.0
    refresh_ttl: float = 86400.0
    rotate: bool = True
    auto_approve: bool = True
    pkce_metadata: bool = True
    scopes: list[str] = field(default_factory=lambda: ["mcp:read", "mcp:write"])
    habits: list[str] = field(default_factory=list)
    #: The audience of tokens asked for without `resource` (Entra derives it from the app registration).
    default_audience: str | None = None
    #: The one redirect URI the `fixed_redirect_uri` habit accepts (Slack: http://localhost:3118/callback).
    fixed_redirect_uri: str | None = None

    def has(self, habit: str) -> bool:
        return habit in self.habits


@dataclass
class Client:
    client_id: str
    client_secret: str | None = field(repr=False)
    redirect_uris: list[str]
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_public(self) -> bool:
        return self.client_secret is None


@dataclass
class AccessToken:
    token: str = field(repr=False)
    grant_id: str
    client_id: str
    scope: str
    audience: str | None
    sub: str
    issued_at: float
    expires_at: float
    revoked: bool = False


@dataclass
class RefreshToken:
    token: str = field(repr=False)
    grant_id: str
    issued_at: float
    expires_at: float
    # None while usable; else "rotated", "revoked" or "invalidated".
    dead_reason: str | None = None
    rotated_at: float | None = None


@dataclass
class Grant:
    grant_id: str
    client_id: str
    scope: str
    resource: str | None
    sub: str
    refresh_token: str | None = field(default=None, repr=False)
    access_tokens: list[str] = field(default_factory=list, repr=False)
    last_issued_at: float | None = None
    last_expires_at: float | None = None


@dataclass
class AuthCode:
    code: str = field(repr=False)
    client_id: str
    redirect_uri: str
    redirect_uri_given: bool
    code_challenge: str
    scope: str
    resource: str | None
    expires_at: float
    used: bool = False
    grant_id: str | None = None


@dataclass
class PendingAuthorization:
    """An /authorize request waiting on the consent page."""

    request_id: str = field(repr=False)
    client_id: str
    redirect_uri: str
    redirect_uri_given: bool
    state: str | None
    code_challenge: str
    scope: str
    resource: str | None
    expires_at: float


@dataclass
class Fault:
    mode: str
    remaining: int | None = None
    retry_after: float | None = None
    hang_seconds: float = 30.0
    grant_types: tuple[str, ...] = ("refresh_token",)
    resource: str | None = None

    def matches(self, grant_type: str | None, resource: str | None) -> bool:
        if self.mode == "none" or grant_type not in self.grant_types:
            return False
        return self.resource is None or self.resource == resource

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "count": self.remaining,
            "retry_after": self.retry_after,
            "hang_seconds": self.hang_seconds,
            "grant_types": list(self.grant_types),
            "resource": self.resource,
        }


@dataclass
class Counters:
    token_requests: int = 0
    grants: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GRANT_TYPES, 0))
    succeeded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GRANT_TYPES, 0))
    failed: int = 0
    revocations: int = 0
    registrations: int = 0
    introspections: int = 0
    discoveries: int = 0  # metadata requests (RFC 8414 / OIDC)
    answered: dict[str, int] = field(default_factory=lambda: {"json": 0, "form": 0, "html": 0})
    reuse_detected: int = 0  # grants revoked because a spent refresh token came back
    refresh_log: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "token_requests": self.token_requests,
            "grants": dict(self.grants),
            "succeeded": dict(self.succeeded),
            "failed": self.failed,
            "revocations": self.revocations,
            "registrations": self.registrations,
            "introspections": self.introspections,
            "discoveries": self.discoveries,
            "answered": dict(self.answered),
            "reuse_detected": self.reuse_detected,
            "refresh_log": [dict(entry) for entry in self.refresh_log],
        }


@dataclass
class Issued:
    """Every secret ever handed out, so security tests can scan logs for them."""

    access_tokens: list[str] = field(default_factory=list, repr=False)
    refresh_tokens: list[str] = field(default_factory=list, repr=False)
    codes: list[str] = field(default_factory=list, repr=False)
    client_secrets: list[str] = field(default_factory=list, repr=False)

    def as_json(self) -> dict[str, list[str]]:
        return {
            "access_tokens": list(self.access_tokens),
            "refresh_tokens": list(self.refresh_tokens),
            "codes": list(self.codes),
            "client_secrets": list(self.client_secrets),
        }


class ServerState:
    """All server state and the token rules; HTTP handlers only parse and render."""

    def __init__(self, config: Config, issuer: str = "") -> None:
        self.config = config
        self.issuer = issuer
        self.clients: dict[str, Client] = {}
        self.grants: dict[str, Grant] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.codes: dict[str, AuthCode] = {}
        self.pending: dict[str, PendingAuthorization] = {}
        self.fault = Fault("none")
        self.counters = Counters()
        self.issued = Issued()
        self._grant_seq = 0
        self._client_seq = 0

    @property
    def published_issuer(self) -> str:
        """The issuer the metadata and the `iss` parameter name, as the habits bend it."""
        cfg = self.config
        if cfg.has("issuer_mismatch"):
            return self.issuer + "/someone-else"
        iss = self.issuer + (ISSUER_PATH if cfg.has("issuer_with_path") else "")
        return iss + "/" if cfg.has("issuer_trailing_slash") else iss

    def forget_clients(self) -> int:
        """What an authorization server with in-memory clients does on a restart."""
        count = len(self.clients)
        self.clients.clear()
        return count

    # -- clients -----------------------------------------------------------------------------

    def add_client(
        self,
        redirect_uris: list[str],
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Client:
        if client_id is None:
            self._client_seq += 1
            client_id = f"client-{self._client_seq}-{secrets.token_hex(4)}"
        if client_secret is not None:
            self.issued.client_secrets.append(client_secret)
        client = Client(client_id, client_secret, list(redirect_uris), dict(metadata or {}))
        self.clients[client_id] = client
        return client

    def authenticate(self, basic: tuple[str, str] | None, form_id: str | None,
                     form_secret: str | None) -> Client:
        """RFC 6749 §2.3.1: client_secret_basic, client_secret_post, or none (public client)."""
        if self.config.has("strict_client_auth"):
            self._check_method(basic, form_id, form_secret)
        if basic is not None:
            client_id, secret = basic
        else:
            client_id, secret = form_id or "", form_secret or ""
        if not client_id:
            raise OAuthError("invalid_client", "client authentication is required", 401)
        client = self.clients.get(client_id)
        if client is None:
            raise OAuthError("invalid_client", "unknown client", 401)
        if client.client_secret is None:
            if secret:
                raise OAuthError("invalid_client", "public client must not send a secret", 401)
            return client
        if not secret or not hmac.compare_digest(secret, client.client_secret):
            raise OAuthError("invalid_client", "client authentication failed", 401)
        return client

    def _check_method(self, basic: tuple[str, str] | None, form_id: str | None, form_secret: str | None) -> None:
        """The registered method only; RFC 6749 §2.3: never more than one method in a request."""
        used = "client_secret_basic" if basic is not None else "client_secret_post" if form_secret else "none"
        if basic is not None and form_secret:
            raise OAuthError("invalid_request", "more than one client authentication method", 400)
        client_id = basic[0] if basic is not None else form_id or ""
        client = self.clients.get(client_id)
        if client is None:
            return
        registered = client.metadata.get("token_endpoint_auth_method",
                                         "none" if client.is_public else "client_secret_basic")
        if used != registered:
            raise OAuthError("invalid_client", f"this client authenticates with {registered}, not {used}", 401)

    # -- authorization -----------------------------------------------------------------------

    def grant_scope(self, requested: str | None) -> str:
        """The granted scope: the supported ones asked for (all of them when none asked)."""
        supported = self.config.scopes
        if not requested:
            return " ".join(supported)
        wanted = requested.split()
        granted = [s for s in wanted if s in supported] if supported else wanted
        if not granted:
            raise OAuthError("invalid_scope", "none of the requested scopes is supported")
        return " ".join(dict.fromkeys(granted))

    def issue_code(self, p: PendingAuthorization) -> str:
        code = new_secret()
        self.codes[code] = AuthCode(
            code=code,
            client_id=p.client_id,
            redirect_uri=p.redirect_uri,
            redirect_uri_given=p.redirect_uri_given,
            code_challenge=p.code_challenge,
            scope=p.scope,
            resource=p.resource,
            expires_at=time.time() + AUTH_CODE_TTL,
        )
        self.issued.codes.append(code)
        return code

    def add_pending(self, p: PendingAuthorization) -> None:
        now = time.time()
        if len(self.pending) > 1000:  # drop stale consent requests now and then
            for key in [k for k, v in self.pending.items() if v.expires_at < now]:
                del self.pending[key]
        self.pending[p.request_id] = p

    def take_pending(self, request_id: str) -> PendingAuthorization:
        p = self.pending.pop(request_id, None)
        if p is None or p.expires_at < time.time():
            raise OAuthError("invalid_request", "unknown or expired authorization request")
        return p

    # -- token endpoint ----------------------------------------------------------------------

    def fault_resource(self, grant_type: str | None, form_resource: str | None,
                       code: str | None, refresh_token: str | None) -> str | None:
        """The resource a token request is about: the one sent, else the code's or grant's."""
        if form_resource:
            return form_resource
        if grant_type == "refresh_token" and refresh_token:
            rt = self.refresh_tokens.get(refresh_token)
            if rt is not None:
                return self.grants[rt.grant_id].resource
        if grant_type == "authorization_code" and code:
            ac = self.codes.get(code)
            if ac is not None:
                return ac.resource
        return None

    def take_fault(self, grant_type: str | None, resource: str | None) -> Fault | None:
        fault = self.fault
        if not fault.matches(grant_type, resource):
            return None
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self.fault = Fault("none")
        return fault

    def grant_for_refresh(self, refresh_token: str | None) -> Grant | None:
        rt = self.refresh_tokens.get(refresh_token or "")
        return None if rt is None else self.grants.get(rt.grant_id)

    def exchange_code(self, client: Client, code: str, redirect_uri: str | None,
                      verifier: str | None, resource: str | None) -> dict[str, Any]:
        ac = self.codes.get(code)
        if ac is None:
            raise OAuthError("invalid_grant", "unknown authorization code")
        if ac.used:
            # RFC 6749 §4.1.2: a reused code revokes what it produced.
            if ac.grant_id is not None:
                self.revoke_grant(ac.grant_id)
            raise OAuthError("invalid_grant", "authorization code already used")
        ac.used = True  # single use, whatever happens next
        if ac.client_id != client.client_id:
            raise OAuthError("invalid_grant", "authorization code was issued to another client")
        if time.time() >= ac.expires_at:
            raise OAuthError("invalid_grant", "authorization code expired")
        if (redirect_uri or ac.redirect_uri_given) and redirect_uri != ac.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
        if not verifier:
            raise OAuthError("invalid_request", "code_verifier is required")
        if not pkce_matches(verifier, ac.code_challenge):
            raise OAuthError("invalid_grant", "PKCE verification failed")
        if resource and ac.resource and resource != ac.resource:
            raise OAuthError("invalid_target", "resource differs from the authorization request")
        self._grant_seq += 1
        grant = Grant(
            grant_id=f"g{self._grant_seq}",
            client_id=client.client_id,
            scope=ac.scope,
            resource=resource or ac.resource or self.config.default_audience,
            sub=DEFAULT_SUB,
        )
        self.grants[grant.grant_id] = grant
        ac.grant_id = grant.grant_id
        return self._issue(grant, grant.scope, grant.resource, new_refresh=True)

    def refresh(self, client: Client, refresh_token: str | None, scope: str | None,
                resource: str | None, *, rotate: bool | None = None) -> dict[str, Any]:
        if not refresh_token:
            raise OAuthError("invalid_request", "refresh_token is required")
        rt = self.refresh_tokens.get(refresh_token)
        if rt is None:
            raise OAuthError("invalid_grant", "unknown refresh token")
        grant = self.grants[rt.grant_id]
        if grant.client_id != client.client_id:
            raise OAuthError("invalid_grant", "refresh token was issued to another client")
        if rt.dead_reason == "rotated" and self.config.has("rotation_grace_window") and \
                rt.rotated_at is not None and time.time() - rt.rotated_at <= GRACE_SECONDS:
            pass  # within the grace window a rotated refresh token still works
        elif rt.dead_reason == "rotated" and self.config.has("strict_rotation_reuse_detection"):
            # Reuse detection: a spent refresh token coming back revokes the whole grant.
            self.counters.reuse_detected += 1
            self.revoke_grant(grant.grant_id)
            raise OAuthError("invalid_grant", "refresh token reuse detected; the grant is revoked")
        elif rt.dead_reason is not None:
            raise OAuthError("invalid_grant", f"refresh token was {rt.dead_reason}")
        if time.time() >= rt.expires_at:
            raise OAuthError("invalid_grant", "refresh token expired")
        granted = grant.scope.split()
        if scope:
            asked = scope.split()
            if any(s not in granted for s in asked):
                raise OAuthError("invalid_scope", "scope exceeds the original grant")
            new_scope = " ".join(dict.fromkeys(asked))
        else:
            new_scope = grant.scope
        if resource and grant.resource and resource != grant.resource:
            raise OAuthError("invalid_target", "resource differs from the original grant")
        do_rotate = self.config.rotate if rotate is None else rotate
        if self.config.has("no_refresh_token_on_refresh"):
            do_rotate = False
        body = self._issue(grant, new_scope, resource or grant.resource, new_refresh=do_rotate)
        if do_rotate and rt.dead_reason is None:
            rt.dead_reason = "rotated"
            rt.rotated_at = time.time()
        return body

    def _issue(self, grant: Grant, scope: str, audience: str | None,
               *, new_refresh: bool) -> dict[str, Any]:
        now = time.time()
        ttl = self.config.access_ttl
        token = jwt_shaped(now + ttl, grant.sub, self.issuer) if self.config.has("jwt_access_token") else new_secret()
        self.access_tokens[token] = AccessToken(
            token=token,
            grant_id=grant.grant_id,
            client_id=grant.client_id,
            scope=scope,
            audience=audience,
            sub=grant.sub,
            issued_at=now,
            expires_at=now + ttl,
        )
        self.issued.access_tokens.append(token)
        grant.access_tokens.append(token)
        grant.last_issued_at, grant.last_expires_at = now, now + ttl
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": wire_number(ttl),
            "scope": scope,
        }
        if new_refresh:
            refresh = new_secret()
            self.refresh_tokens[refresh] = RefreshToken(
                token=refresh,
                grant_id=grant.grant_id,
                issued_at=now,
                expires_at=now + self.config.refresh_ttl,
            )
            self.issued.refresh_tokens.append(refresh)
            grant.refresh_token = refresh
            body["refresh_token"] = refresh
        return body

    # -- revocation and introspection --------------------------------------------------------

    def revoke_grant(self, grant_id: str) -> None:
        grant = self.grants.get(grant_id)
        if grant is None:
            return
        for token in grant.access_tokens:
            self.access_tokens[token].revoked = True
        if grant.refresh_token is not None:
            rt = self.refresh_tokens[grant.refresh_token]
            if rt.dead_reason is None:
                rt.dead_reason = "revoked"

    def revoke(self, client: Client, token: str) -> None:
        """RFC 7009 §2.1: only the owner may revoke; unknown tokens are silently fine."""
        at = self.access_tokens.get(token)
        if at is not None and at.client_id == client.client_id:
            at.revoked = True
            return
        rt = self.refresh_tokens.get(token)
        if rt is not None and self.grants[rt.grant_id].client_id == client.client_id:
            if rt.dead_reason is None:
                rt.dead_reason = "revoked"
            grant = self.grants[rt.grant_id]
            for access in grant.access_tokens:
                self.access_tokens[access].revoked = True

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 §2.2, plus a test-only ``reason`` when inactive."""
        at = self.access_tokens.get(token)
        if at is None:
            return {"active": False, "reason": "unknown"}
        if at.revoked:
            return {"active": False, "reason": "revoked"}
        if time.time() >= at.expires_at:
            return {"active": False, "reason": "expired"}
        return {
            "active": True,
            "client_id": at.client_id,
            "scope": at.scope,
            "exp": at.expires_at,
            "iat": at.issued_at,
            "aud": at.audience,
            "sub": at.sub,
            "iss": self.issuer,
            "token_type": "Bearer",
        }

    def invalidate_refresh_tokens(self) -> int:
        count = 0
        for rt in self.refresh_tokens.values():
            if rt.dead_reason is None:
                rt.dead_reason = "invalidated"
                count += 1
        return count

    def grants_summary(self) -> list[dict[str, Any]]:
        now = time.time()
        out = []
        for grant in self.grants.values():
            rt = self.refresh_tokens.get(grant.refresh_token or "")
            active = rt is not None and rt.dead_reason is None and now < rt.expires_at
            out.append(
                {
                    "grant_id": grant.grant_id,
                    "client_id": grant.client_id,
                    "resource": grant.resource,
                    "scope": grant.scope,
                    "active_refresh": active,
                    "last_issued_at": grant.last_issued_at,
                    "last_expires_at": grant.last_expires_at,
                }
            )
        return out
