"""The token endpoint (RFC 6749 §4.1.3, §6): code exchange with PKCE, refresh, and their answers.

oauthlib builds the request bodies and reads the answer (its typed RFC 6749 §5.2 errors, its
missing-token check, its scope splitting); mcpproxy sends the request itself and checks what
oauthlib leaves open. requests-oauthlib's OAuth2Session.fetch_token is not used: it refuses
plain http unless OAUTHLIB_INSECURE_TRANSPORT is set for the whole process (loopback test
servers need http), reads the whole answer before anyone can bound it, follows redirects of the
POST, skips RFC 6749 §2.3.1's form-encoding in client_secret_basic, and logs request bodies at
DEBUG.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import requests
from oauthlib.oauth2 import WebApplicationClient
from oauthlib.oauth2.rfc6749.errors import MissingTokenError, OAuth2Error
from oauthlib.oauth2.rfc6749.parameters import validate_token_parameters
from oauthlib.oauth2.rfc6749.tokens import OAuth2Token
from oauthlib.oauth2.rfc6749.utils import scope_to_list

from mcpproxy.oauth.errors import OAuthError
from mcpproxy.oauth.http import (
    basic_auth,
    error_fields,
    error_from_fields,
    error_from_response,
    json_object,
    request,
    require_secure,
    safe_url,
    session_scope,
)
from mcpproxy.oauth.registration import client_unknown

#: Longer than any real token lifetime: an expires_in beyond it is a broken answer.
MAX_EXPIRES_IN = 10 * 365 * 86400

#: Real tokens (JWTs included) stay well under this; a bigger one would ride on every upstream call.
MAX_TOKEN_CHARS = 16 * 1024

# "3599" or "3599.0": integer-valued numeric strings (Azure AD v1 sends them).
_INTEGER_STRING = re.compile(r"[0-9]{1,12}(\.0*)?")
# RFC 6750 §2.1: b64token, the only characters an access token may put in "Authorization: Bearer".
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 6749 Appendix A.17: refresh-token = 1*VSCHAR (printable ASCII).
_VSCHARS = re.compile(r"[\x20-\x7e]+")

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
    # RFC 6749 §4.1.3 + RFC 7636 §4.5; client_id in the body only for a public client (§3.2.1).
    body = WebApplicationClient(client_id).prepare_request_body(
        code=code,
        redirect_uri=redirect_uri,
        code_verifier=code_verifier,
        include_client_id=client_secret is None,
        resource=resource,  # RFC 8707 §2.2; oauthlib leaves out empty values
    )
    what = f"code exchange at {safe_url(token_endpoint)}"
    return _token_request(token_endpoint, body, client_id, client_secret, session, what, _CODE_REJECTED)


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
    body = WebApplicationClient(client_id).prepare_refresh_body(
        refresh_token=refresh_token,
        scope=list(scopes) if scopes else None,
        client_id=client_id if client_secret is None else None,
        resource=resource,
    )
    what = f"token refresh at {safe_url(token_endpoint)}"
    return _token_request(
        token_endpoint, body, client_id, client_secret, session, what, _REFRESH_REJECTED
    )


def _token_request(
    endpoint: str,
    body: str,
    client_id: str,
    client_secret: str | None,
    session: requests.Session | None,
    what: str,
    rejected: str,
) -> TokenResponse:
    require_secure(endpoint, what)
    headers = basic_auth(client_id, client_secret)
    headers["Accept"] = "application/json"
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    with session_scope(session) as s:
        resp = request(
            s, "POST", endpoint, what=what, data=body.encode("ascii"), headers=headers
        )
    return _parse(resp, what, rejected)


def parse_token_response(resp: requests.Response, *, what: str) -> TokenResponse:
    """A token endpoint answer (RFC 6749 §5.1) checked, or the classified error (§5.2)."""
    return _parse(resp, what, None)


def _parse(resp: requests.Response, what: str, rejected: str | None) -> TokenResponse:
    status = resp.status_code
    if not 200 <= status < 300:
        raise client_unknown(resp, what) or error_from_response(resp, what, invalid_grant_message=rejected)
    doc = json_object(resp)
    if doc is None:
        raise OAuthError("protocol", f"{what}: the answer (HTTP {status}) is not a JSON object")
    scope = _scope(doc.get("scope"), what)  # before oauthlib, which fails on a non-string scope
    try:
        # No old scope is given: a narrower grant is reported, not raised as a Warning.
        validate_token_parameters(OAuth2Token(doc))
    except MissingTokenError:
        raise OAuthError("protocol", f"{what}: the answer has no access_token") from None
    except OAuth2Error as exc:
        if "error" not in doc:
            raise OAuthError("protocol", f"{what}: the answer was refused ({exc.error})") from None
        # An RFC 6749 §5.2 error with HTTP 200 (GitHub): classified as the 400 it stands for.
        code, desc = error_fields(resp)
        raise error_from_fields(400, code, desc, what, invalid_grant_message=rejected) from None
    return _token_from(doc, scope, what)


def _token_from(doc: dict[str, Any], scope: tuple[str, ...] | None, what: str) -> TokenResponse:
    access_token = doc.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise OAuthError("protocol", f"{what}: the answer has no access_token")
    _check_token(access_token, "access_token", _B64TOKEN, "RFC 6750 §2.1 b64token", what)
    token_type = doc.get("token_type", "Bearer")
    if token_type is None:
        token_type = "Bearer"
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        shown = token_type[:40] if isinstance(token_type, str) else type(token_type).__name__
        raise OAuthError("protocol", f"{what}: unsupported token_type {shown!r} (want Bearer)")
    refresh_token = doc.get("refresh_token")
    if refresh_token is not None and not isinstance(refresh_token, str):
        raise OAuthError("protocol", f"{what}: refresh_token is not a string")
    if refresh_token:
        _check_token(refresh_token, "refresh_token", _VSCHARS, "printable ASCII", what)
    return TokenResponse(
        access_token=access_token,
        token_type="Bearer",
        refresh_token=refresh_token or None,
        expires_in=_expires_in(doc.get("expires_in"), what),
        scope=scope,
    )


def _check_token(value: str, name: str, allowed: re.Pattern[str], rule: str, what: str) -> None:
    """A token too long, or with characters that would break a header, is a broken answer.

    The message gives the length only, never the value.
    """
    if len(value) > MAX_TOKEN_CHARS:
        raise OAuthError(
            "protocol",
            f"{what}: the {name} is {len(value)} characters long (at most {MAX_TOKEN_CHARS}); refused",
        )
    if not allowed.fullmatch(value):
        raise OAuthError(
            "protocol", f"{what}: the {name} has characters outside the {rule} set; refused"
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
    """The granted scope (RFC 6749 §3.3, space-delimited), split by oauthlib; None when not sent."""
    if value is None:
        return None
    if isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(x, str) for x in value)  # a list: not RFC 6749, but sent
    ):
        return tuple(s for s in scope_to_list(value) if s)
    raise OAuthError("protocol", f"{what}: scope is not a string")
