"""The token endpoint (RFC 6749 §4.1.3, §6): code exchange with PKCE, refresh, and their answers."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import requests

from mcpproxy.oauth.errors import OAuthError
from mcpproxy.oauth.http import (
    client_auth,
    error_fields,
    error_from_fields,
    error_from_response,
    json_object,
    request,
    require_secure,
    safe_url,
    session_scope,
)

#: Longer than any real token lifetime: an expires_in beyond it is a broken answer.
MAX_EXPIRES_IN = 10 * 365 * 86400

# "3599" or "3599.0": integer-valued numeric strings (Azure AD v1 sends them).
_INTEGER_STRING = re.compile(r"[0-9]{1,12}(\.0*)?")

_REFRESH_REJECTED = "the authorization server no longer accepts this refresh token — log in again"
_CODE_REJECTED = "the authorization server rejected the authorization code — log in again"


@dataclass(frozen=True)
class TokenResponse:
    access_token: str = field(repr=False)
    token_type: str
    refresh_token: str | None = field(repr=False)
    expires_in: float | None
    scope: tuple[str, ...] | None


def exchange_code(
    token_endpoint: str,
    *,
    code: str,
    code_verifier: str,
    client_id: str,
    client_secret: str | None,
    redirect_uri: str,
    resource: str | None,
    session: requests.Session | None = None,
) -> TokenResponse:
    """Trade an authorization code and its PKCE verifier for tokens."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    if resource:
        form["resource"] = resource  # RFC 8707 §2.2
    what = f"code exchange at {safe_url(token_endpoint)}"
    return _token_request(
        token_endpoint, form, client_id, client_secret, session, what, _CODE_REJECTED
    )


def refresh(
    token_endpoint: str,
    *,
    refresh_token: str,
    client_id: str,
    client_secret: str | None,
    resource: str | None,
    scopes: tuple[str, ...] | None = None,
    session: requests.Session | None = None,
) -> TokenResponse:
    """Use a refresh token (RFC 6749 §6). The answer may carry a rotated refresh token or none."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if scopes:
        form["scope"] = " ".join(scopes)
    if resource:
        form["resource"] = resource
    what = f"token refresh at {safe_url(token_endpoint)}"
    return _token_request(
        token_endpoint, form, client_id, client_secret, session, what, _REFRESH_REJECTED
    )


def _token_request(
    endpoint: str,
    form: dict[str, str],
    client_id: str,
    client_secret: str | None,
    session: requests.Session | None,
    what: str,
    rejected: str,
) -> TokenResponse:
    require_secure(endpoint, what)
    headers = client_auth(form, client_id, client_secret)
    headers["Accept"] = "application/json"
    with session_scope(session) as s:
        resp = request(s, "POST", endpoint, what=what, data=form, headers=headers)
    return _parse(resp, what, rejected)


def parse_token_response(resp: requests.Response, *, what: str) -> TokenResponse:
    """A token endpoint answer (RFC 6749 §5.1) checked, or the classified error (§5.2)."""
    return _parse(resp, what, None)


def _parse(resp: requests.Response, what: str, rejected: str | None) -> TokenResponse:
    status = resp.status_code
    if not 200 <= status < 300:
        raise error_from_response(resp, what, invalid_grant_message=rejected)
    doc = json_object(resp)
    if doc is None:
        raise OAuthError("protocol", f"{what}: the answer (HTTP {status}) is not a JSON object")
    if "access_token" not in doc and isinstance(doc.get("error"), str):
        # Some servers (GitHub) answer errors with 200.
        code, desc = error_fields(resp)
        raise error_from_fields(400, code, desc, what, invalid_grant_message=rejected)
    return _token_from(doc, what)


def _token_from(doc: dict[str, Any], what: str) -> TokenResponse:
    access_token = doc.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise OAuthError("protocol", f"{what}: the answer has no access_token")
    token_type = doc.get("token_type", "Bearer")
    if token_type is None:
        token_type = "Bearer"
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        shown = token_type[:40] if isinstance(token_type, str) else type(token_type).__name__
        raise OAuthError("protocol", f"{what}: unsupported token_type {shown!r} (want Bearer)")
    refresh_token = doc.get("refresh_token")
    if refresh_token is not None and not isinstance(refresh_token, str):
        raise OAuthError("protocol", f"{what}: refresh_token is not a string")
    return TokenResponse(
        access_token=access_token,
        token_type="Bearer",
        refresh_token=refresh_token or None,
        expires_in=_expires_in(doc.get("expires_in"), what),
        scope=_scope(doc.get("scope"), what),
    )


def _expires_in(value: Any, what: str) -> float | None:
    """Seconds of lifetime; a number, or an integer-valued numeric string (Azure AD v1)."""
    if value is None:
        return None
    seconds: float | None = None
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _INTEGER_STRING.fullmatch(value.strip()):
        seconds = float(value)
    if seconds is None or not math.isfinite(seconds) or not 0 < seconds <= MAX_EXPIRES_IN:
        shown = value[:40] if isinstance(value, str) else value
        raise OAuthError("protocol", f"{what}: invalid expires_in {shown!r}")
    return seconds


def _scope(value: Any, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return tuple(value)  # not RFC 6749, but some servers send a list
    raise OAuthError("protocol", f"{what}: scope is not a string")
