"""The token endpoint (RFC 6749 §4.1.3, §6): code exchange with PKCE, refresh, and their answers.

requests-oauthlib's `OAuth2Session.fetch_token` / `refresh_token` build and send both requests and
oauthlib parses the answers (its typed RFC 6749 §5.2 errors, its missing-token check, its scope
splitting). Runs in the OAuth worker only (docs/architecture.md "Processes"): a TokenActor never
imports this path's requests-oauthlib. What mcpproxy adds around the library:

- the transport: `token_session.TokenSession.request` sends through `http.request` — no redirect, the
  answer read streamed and refused past 1 MiB, failures classified —, and plain http only to a loopback
  host (checked by `require_secure`; oauthlib itself is given the URL's https alias);
- client authentication exactly as registered: `client_secret_basic` with RFC 6749 §2.3.1's
  form-encoding (requests' HTTPBasicAuth skips it), `client_secret_post`, or `none` — one at a time;
- the providers' habits, in the `access_token_response` / `refresh_token_response` compliance hooks
  (docs/providers.md): form-encoded answers, errors with HTTP 200, `expires_in` as a string,
  comma-separated scopes; then the bounds oauthlib leaves open (token characters and size, the lifetime).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import requests
from oauthlib.oauth2.rfc6749.errors import MissingTokenError, OAuth2Error
from oauthlib.oauth2.rfc6749.parameters import parse_token_response as oauthlib_parse
from oauthlib.oauth2.rfc6749.utils import scope_to_list

from mcpproxy.oauth.errors import OAuthError, client_unknown
from mcpproxy.oauth.http import (
    answer_document,
    error_fields_of,
    error_from_fields,
    require_secure,
    safe_url,
    session_scope,
)

#: Longer than any real token lifetime: an expires_in beyond it is a broken answer.
MAX_EXPIRES_IN = 10 * 365 * 86400

#: Real tokens (JWTs included) stay well under this; a bigger one would ride on every upstream call.
MAX_TOKEN_CHARS = 16 * 1024

#: RFC 6749 §2.3 / RFC 7591 §2 client authentication methods mcpproxy speaks at the token endpoint.
AuthMethod = Literal["none", "client_secret_basic", "client_secret_post"]
AUTH_METHODS: tuple[str, ...] = ("none", "client_secret_basic", "client_secret_post")

# "3599" or "3599.0": integer-valued numeric strings (Azure AD v1 sends them).
_INTEGER_STRING = re.compile(r"[0-9]{1,12}(\.0*)?")
# RFC 6750 §2.1: b64token, the only characters an access token may put in "Authorization: Bearer".
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 6749 Appendix A.17: refresh-token = 1*VSCHAR (printable ASCII).
_VSCHARS = re.compile(r"[\x20-\x7e]+")
# RFC 7519 §3 / RFC 7515 §7.1: a JWS compact serialization, three base64url parts.
_JWT = re.compile(r"[A-Za-z0-9_-]+\.([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]*")

_REFRESH_REJECTED = "the authorization server no longer accepts this refresh token — log in again"
_CODE_REJECTED = "the authorization server rejected the authorization code — log in again"
_HEADERS = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}


@dataclass(frozen=True)
class TokenResponse:
    access_token: str = field(repr=False)
    token_type: str
    refresh_token: str | None = field(repr=False)
    expires_in: float | None
    scope: tuple[str, ...] | None
    #: The lifetime was read from the access token's JWT `exp` (a hint, never verified), not `expires_in`.
    expires_from_jwt: bool = False


def auth_method_of(client_secret: str | None, registered: str | None = None) -> AuthMethod:
    """The client authentication to use: the registered one when it is known, else by the secret."""
    if registered == "client_secret_post" and client_secret is not None:
        return "client_secret_post"
    if registered == "none" or client_secret is None:
        return "none"
    return "client_secret_basic"


def exchange_code(
    token_endpoint: str,
    *,
    code: str,
    code_verifier: str,
    client_id: str,
    client_secret: str | None,
    redirect_uri: str,
    resource: str | None,
    auth_method: str | None = None,
    session: requests.Session | None = None,
) -> TokenResponse:
    """Trade an authorization code and its PKCE verifier for tokens (RFC 6749 §4.1.3 + RFC 7636 §4.5)."""
    what = f"code exchange at {safe_url(token_endpoint)}"
    require_secure(token_endpoint, what)
    method = auth_method_of(client_secret, auth_method)
    from mcpproxy.oauth.token_session import Basic, TokenSession, alias  # the worker's threads only

    with session_scope(session) as s, TokenSession(s, token_endpoint, what, client_id,
                                                   redirect_uri=redirect_uri) as oauth:
        oauth.on_answer(lambda r: _normalized(r, what, _CODE_REJECTED))
        _parsed(what, _CODE_REJECTED, lambda: oauth.fetch_token(
            alias(token_endpoint),
            code=code,
            code_verifier=code_verifier,
            resource=resource,  # RFC 8707 §2.2; oauthlib leaves out empty values
            include_client_id=method != "client_secret_basic",  # §3.2.1: client_id in the body unless Basic
            client_secret=client_secret if method == "client_secret_post" else None,
            auth=Basic(client_id, client_secret) if method == "client_secret_basic" else None,
            headers=dict(_HEADERS),
        ))
        return _token_from(oauth.answer, what)


def refresh(
    token_endpoint: str,
    *,
    refresh_token: str,
    client_id: str,
    client_secret: str | None,
    resource: str | None,
    scopes: tuple[str, ...] | None = None,
    auth_method: str | None = None,
    session: requests.Session | None = None,
) -> TokenResponse:
    """Use a refresh token (RFC 6749 §6). The answer may carry a rotated refresh token or none."""
    what = f"token refresh at {safe_url(token_endpoint)}"
    require_secure(token_endpoint, what)
    method = auth_method_of(client_secret, auth_method)
    extra: dict[str, Any] = {"resource": resource}
    if method != "client_secret_basic":
        extra["client_id"] = client_id
    if method == "client_secret_post":
        extra["client_secret"] = client_secret  # a confidential client authenticates on every refresh
    from mcpproxy.oauth.token_session import Basic, TokenSession, alias  # the worker's threads only

    with session_scope(session) as s, TokenSession(s, token_endpoint, what, client_id,
                                                   scope=list(scopes) if scopes else None) as oauth:
        oauth.on_answer(lambda r: _normalized(r, what, _REFRESH_REJECTED))
        _parsed(what, _REFRESH_REJECTED, lambda: oauth.refresh_token(
            alias(token_endpoint),
            refresh_token=refresh_token,
            auth=Basic(client_id, client_secret) if method == "client_secret_basic" else None,
            headers=dict(_HEADERS),
            **extra,
        ))
        # From the answer, not requests-oauthlib's token, which puts the old refresh token into an answer
        # that has none: the session core keeps the stored one itself and must not take it for a rotated one.
        return _token_from(oauth.answer, what)


def parse_token_response(resp: requests.Response, *, what: str) -> TokenResponse:
    """A token endpoint answer (RFC 6749 §5.1) checked, or the classified error (§5.2)."""
    doc = _normalized(resp, what, None)
    _parsed(what, None, lambda: oauthlib_parse(json.dumps(doc)))
    return _token_from(doc, what)


# ---- the answer -------------------------------------------------------------------------------------


def _normalized(r: requests.Response, what: str, rejected: str | None) -> dict[str, Any]:
    """A token answer as one JSON shape (docs/providers.md), or the classified OAuthError.

    Errors are classified by their code whatever the status (GitHub answers them with 200), answers
    without a code by their status (an HTML page from a proxy, an empty body).
    """
    status = r.status_code
    doc = answer_document(r)  # JSON, or form-encoded (GitHub without Accept: application/json)
    if doc is not None and "error" in doc or not 200 <= status < 300:
        forgotten = None if 200 <= status < 300 else client_unknown(r, what)  # Supabase's 422, an HTML 500
        if forgotten is not None:
            raise forgotten
        code, desc = error_fields_of(doc) if doc is not None else (None, None)
        if code is None and status == 401:
            # RFC 6749 §5.2: the token endpoint's 401 is a refused client, even as an HTML page or no body.
            raise OAuthError("invalid_client", f"{what}: the authorization server does not accept this client "
                             "(HTTP 401) — check oauth.client_id / client_secret, then log in again", confirm=True)
        raise error_from_fields(status, code, desc, what, retry_after_header=r.headers.get("Retry-After"),
                                invalid_grant_message=rejected)
    if doc is None:
        raise OAuthError("protocol", f"{what}: the answer (HTTP {status}) is not a JSON object")
    doc = dict(doc)
    scope = _scope(doc.get("scope"), what)  # before oauthlib, which fails on a non-string scope
    if scope is not None:
        doc["scope"] = " ".join(scope)
    elif "scope" in doc:
        del doc["scope"]
    expires_in = _expires_in(doc.get("expires_in"), what)  # a number for oauthlib, never a string
    if expires_in is None:
        doc.pop("expires_in", None)
    else:
        doc["expires_in"] = expires_in
    return doc


def _parsed(what: str, rejected: str | None, call: Any) -> None:
    """Runs a requests-oauthlib call (or oauthlib's parser): its typed errors become classified OAuthErrors.
    What it accepted is read from the normalized answer, not from its token."""
    try:
        call()
    except OAuthError:
        raise
    except MissingTokenError:
        raise OAuthError("protocol", f"{what}: the answer has no access_token") from None
    except OAuth2Error as exc:
        raise error_from_fields(400, exc.error, None, what, invalid_grant_message=rejected) from None
    except Warning as w:  # oauthlib: a narrower grant than asked; reported in `scope`, not an error
        if getattr(w, "token", None) is None:
            raise OAuthError("protocol", f"{what}: the answer was refused ({type(w).__name__})") from None
    except (ValueError, TypeError) as exc:
        raise OAuthError("protocol", f"{what}: the answer was refused ({type(exc).__name__})") from None


def _token_from(doc: dict[str, Any], what: str) -> TokenResponse:
    """The checked TokenResponse of a normalized answer that oauthlib has accepted."""
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
    expires_in = _expires_in(doc.get("expires_in"), what)
    from_jwt = False
    if expires_in is None:
        expires_in = _jwt_lifetime(access_token)
        from_jwt = expires_in is not None
    return TokenResponse(
        access_token=access_token,
        token_type="Bearer",
        refresh_token=refresh_token or None,
        expires_in=expires_in,
        scope=_scope(doc.get("scope"), what),
        expires_from_jwt=from_jwt,
    )


def _jwt_lifetime(access_token: str) -> float | None:
    """Seconds until a JWT access token's `exp` (RFC 7519 §4.1.4), read as a hint when the answer has no
    `expires_in`: never verified (mcpproxy is not its audience), ignored when absent, past or absurd."""
    m = _JWT.fullmatch(access_token)
    if m is None:
        return None
    part = m.group(1)
    try:
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        return None
    left = float(exp) - time.time()
    return left if 0 < left <= MAX_EXPIRES_IN else None


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
    """The granted scope (RFC 6749 §3.3, space-delimited), split by oauthlib; None when not sent.

    A list without spaces but with commas is GitHub's comma-separated form ("repo,gist").
    """
    if value is None:
        return None
    if isinstance(value, str) and "," in value and not value.strip().count(" "):
        value = value.replace(",", " ")
    if isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(x, str) for x in value)  # a list: not RFC 6749, but sent
    ):
        return tuple(s for s in scope_to_list(value) if s)
    raise OAuthError("protocol", f"{what}: scope is not a string")
