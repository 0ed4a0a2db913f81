"""HTTP face of the test authorization server (aiohttp): the OAuth endpoints and /_test/ control.

OAuth 2.1 with RFC 8414 metadata, RFC 7591 registration, RFC 7636 PKCE (S256 only),
RFC 8707 resource indicators, RFC 9207 ``iss``, RFC 7009 revocation, RFC 7662 introspection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import json
import logging
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_plus, urlencode

from aiohttp import web
from yarl import URL

from .state import (
    AUTH_METHODS,
    FAULT_MODES,
    GRANT_TYPES,
    HABITS,
    ISSUER_PATH,
    PENDING_TTL,
    Client,
    Config,
    Fault,
    OAuthError,
    PendingAuthorization,
    ServerState,
    valid_pkce_string,
    wire_number,
)

log = logging.getLogger("tests.oauthserver")

STATE = web.AppKey("state", ServerState)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Faults answered without touching any state.
_STATELESS_FAULTS = frozenset(
    {"500", "503", "429", "invalid_grant", "invalid_client", "invalid_request", "unauthorized_client",
     "malformed_no_access_token", "malformed_not_json", "malformed_crlf_token",
     "malformed_huge_token", "oversized_answer"}
)
#: Sizes of the hostile answers: past mcpproxy's 16 KiB token and 1 MiB answer bounds.
HUGE_TOKEN_CHARS = 20 * 1024
OVERSIZED_ANSWER_BYTES = 2 * 1024 * 1024
# Faults that issue a real access token (no rotation) but send a bad expires_in.
_BAD_EXPIRES: dict[str, Any] = {
    "malformed_negative_expires": -3600,
    "malformed_string_expires": "soon",
    "malformed_huge_expires": 1e12,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Entra ID's words when a request carries `resource` (RFC 8707) it does not accept.
_ENTRA_RESOURCE = ("AADSTS9010010: The resource parameter provided in the request doesn't match with the "
                   "requested scopes.")


# -- helpers ---------------------------------------------------------------------------------

def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _oauth_error(err: OAuthError) -> web.Response:
    """RFC 6749 §5.2 error answer."""
    headers = dict(NO_STORE)
    if err.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="oauth"'
    body = {"error": err.error, "error_description": err.description}
    return _json(body, status=err.status, headers=headers)


def _error_page(status: int, error: str, description: str) -> web.Response:
    text = (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorization error</title>"
        f"</head><body><h1>{html.escape(error)}</h1><p>{html.escape(description)}</p>"
        "</body></html>"
    )
    return web.Response(status=status, text=text, content_type="text/html")


def _redirect(redirect_uri: str, params: dict[str, str | None]) -> web.Response:
    url = URL(redirect_uri).extend_query({k: v for k, v in params.items() if v is not None})
    return web.Response(status=302, headers={"Location": str(url), **NO_STORE})


def _basic_credentials(request: web.Request, *, decode: bool = True) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: form-urlencoded id and secret inside HTTP Basic."""
    header = request.headers.get("Authorization", "")
    if not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise OAuthError("invalid_client", "malformed Basic credentials", 401) from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise OAuthError("invalid_client", "malformed Basic credentials", 401)
    if not decode:
        return client_id, secret
    return unquote_plus(client_id), unquote_plus(secret)


def _authenticate(st: ServerState, request: web.Request, form: Any) -> Client:
    basic = _basic_credentials(request)
    try:
        return st.authenticate(basic, form.get("client_id"), form.get("client_secret"))
    except OAuthError:
        # Many clients (requests' HTTPBasicAuth) send the secret without form-encoding it.
        raw = _basic_credentials(request, decode=False)
        if raw is None or raw == basic:
            raise
        return st.authenticate(raw, None, None)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json() if request.can_read_body else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "invalid_request", "error_description": "malformed JSON"}),
            content_type="application/json",
        ) from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "invalid_request", "error_description": "expected an object"}),
            content_type="application/json",
        )
    return body


def _fault_response(fault: Fault) -> web.Response:
    mode = fault.mode
    headers = dict(NO_STORE)
    if mode in ("503", "429") and fault.retry_after is not None:
        headers["Retry-After"] = str(wire_number(fault.retry_after))
    description = f"injected fault {mode}"
    if mode == "500":
        return _json({"error": "server_error", "error_description": description}, 500, headers)
    if mode == "503":
        return _json({"error": "temporarily_unavailable", "error_description": description},
                     503, headers)
    if mode == "429":
        return _json({"error": "temporarily_unavailable", "error_description": "rate limited"},
                     429, headers)
    if mode == "invalid_grant":
        return _oauth_error(OAuthError("invalid_grant", description))
    if mode == "invalid_client":
        return _oauth_error(OAuthError("invalid_client", description, 401))
    if mode in ("invalid_request", "unauthorized_client"):
        return _oauth_error(OAuthError(mode, description))
    if mode == "malformed_no_access_token":
        return _json({"token_type": "Bearer", "expires_in": 3600, "scope": ""}, 200, headers)
    if mode == "malformed_crlf_token":
        # A header injection if sent as it is: "Authorization: Bearer ok\r\nX-Injected: 1".
        return _json({"access_token": "ok\r\nX-Injected: 1", "token_type": "Bearer",
                      "expires_in": 3600}, 200, headers)
    if mode == "malformed_huge_token":
        return _json({"access_token": "A" * HUGE_TOKEN_CHARS, "token_type": "Bearer",
                      "expires_in": 3600}, 200, headers)
    if mode == "oversized_answer":
        return _json({"access_token": "fine", "token_type": "Bearer", "expires_in": 3600,
                      "padding": "x" * OVERSIZED_ANSWER_BYTES}, 200, headers)
    # malformed_not_json
    return web.Response(status=200, text="<html><body>upstream proxy error</body></html>",
                        content_type="text/html", headers=headers)


def _shaped(st: ServerState, request: web.Request, response: web.Response) -> web.Response:
    """A token endpoint answer in the habits' shape (README.md "Habits"); JSON bodies only."""
    cfg = st.config
    counters = st.counters
    if response.content_type != "application/json" or not isinstance(response.body, bytes):
        counters.answered["html" if response.content_type == "text/html" else "json"] += 1
        return response
    doc = json.loads(response.body)
    status = response.status
    headers = {k: v for k, v in response.headers.items() if k.lower() in ("cache-control", "pragma", "retry-after",
                                                                          "www-authenticate")}
    is_error = isinstance(doc, dict) and "error" in doc
    if isinstance(doc, dict) and not is_error:
        if cfg.has("form_encoded_answers") or cfg.has("form_encoded_always"):
            # GitHub: comma-separated scopes and a lowercase token type in either form.
            if isinstance(doc.get("scope"), str):
                doc["scope"] = ",".join(doc["scope"].split())
            doc["token_type"] = "bearer"
        if cfg.has("string_expires_in") and "expires_in" in doc:
            doc["expires_in"] = str(doc["expires_in"])
        if cfg.has("no_expires_in"):
            doc.pop("expires_in", None)
    if is_error and cfg.has("errors_with_200"):
        if doc["error"] == "invalid_grant" and request.get("grant_type") == "refresh_token":
            doc["error"] = "bad_refresh_token"  # GitHub's name for it
        status = 200
    if is_error and cfg.has("html_errors"):
        counters.answered["html"] += 1
        # A gateway's page: the status is all a client can go by.
        return web.Response(status=status, text=f"<html><body><h1>Error {status}</h1></body></html>",
                            content_type="text/html", headers=headers)
    accept = request.headers.get("Accept", "")
    if cfg.has("form_encoded_always") or (cfg.has("form_encoded_answers") and "application/json" not in accept):
        counters.answered["form"] += 1
        return web.Response(status=status, text=urlencode({k: str(v) for k, v in doc.items()}),
                            content_type="application/x-www-form-urlencoded", headers=headers)
    counters.answered["json"] += 1
    return _json(doc, status, headers)


# -- middleware ------------------------------------------------------------------------------

@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _json({"error": "server_error", "error_description": "internal error"}, 500)
    finally:
        if log.isEnabledFor(logging.INFO):
            # The path only: query strings may carry state and challenges.
            log.info("%s %s %d %.1fms", request.method, request.path, status,
                     (time.perf_counter() - start) * 1000)


# -- discovery (RFC 8414) --------------------------------------------------------------------

async def metadata(request: web.Request) -> web.Response:
    st = request.app[STATE]
    cfg = st.config
    st.counters.discoveries += 1
    if cfg.has("discovery_outage"):
        return _json({"error": "temporarily_unavailable", "error_description": "discovery outage"}, 503)
    # RFC 8414 §3.1: an issuer with a path has its metadata at the well-known URI with that path inserted.
    wanted_tail = ISSUER_PATH if cfg.has("issuer_with_path") else ""
    if "/" + request.match_info.get("tail", "").strip("/") != (wanted_tail or "/"):
        raise web.HTTPNotFound()
    if cfg.has("openid_configuration_only") and "openid-configuration" not in request.path:
        raise web.HTTPNotFound()
    iss = st.issuer  # the endpoints stay at the root, as a real tenant's may
    body: dict[str, Any] = {
        "issuer": st.published_issuer,
        "authorization_endpoint": f"{iss}/authorize",
        "token_endpoint": f"{iss}/oauth/v1/token" if st.config.has("nonstandard_token_path") else f"{iss}/token",
        "registration_endpoint": f"{iss}/register",
        "revocation_endpoint": f"{iss}/revoke",
        "introspection_endpoint": f"{iss}/introspect",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": list(st.config.scopes),
        "authorization_response_iss_parameter_supported": True,
    }
    if st.config.pkce_metadata and not cfg.has("no_pkce_metadata"):
        body["code_challenge_methods_supported"] = ["S256"]
    if cfg.has("no_registration_endpoint"):
        del body["registration_endpoint"]
    return _json(body)


# -- registration (RFC 7591) -----------------------------------------------------------------

async def register(request: web.Request) -> web.Response:
    st = request.app[STATE]
    if st.config.has("no_registration_endpoint"):
        raise web.HTTPNotFound()
    body = await _json_object(request)
    uris = body.get("redirect_uris")
    if (not isinstance(uris, list) or not uris
            or not all(isinstance(u, str) and URL(u).is_absolute() for u in uris)):
        return _json({"error": "invalid_redirect_uri",
                      "error_description": "redirect_uris must be a list of absolute URIs"}, 400)
    fixed = st.config.fixed_redirect_uri
    if st.config.has("fixed_redirect_uri") and any(u != fixed for u in uris):
        return _json({"error": "invalid_redirect_uri",
                      "error_description": f"the only redirect URI allowed is {fixed}"}, 400)
    method = body.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        return _json({"error": "invalid_client_metadata",
                      "error_description": "unsupported token_endpoint_auth_method"}, 400)
    # Notion and Figma register a confidential client whatever was asked.
    if st.config.has("dcr_answers_client_secret_basic"):
        method = "client_secret_basic"
    elif st.config.has("dcr_answers_client_secret_post"):
        method = "client_secret_post"
    grant_types = body.get("grant_types", list(GRANT_TYPES))
    if not isinstance(grant_types, list) or any(g not in GRANT_TYPES for g in grant_types):
        return _json({"error": "invalid_client_metadata",
                      "error_description": "unsupported grant_types"}, 400)
    metadata = {**body, "token_endpoint_auth_method": method, "grant_types": grant_types,
                "response_types": body.get("response_types", ["code"])}
    secret = None if method == "none" else secrets.token_urlsafe(32)
    client = st.add_client(uris, client_secret=secret, metadata=metadata)
    st.counters.registrations += 1
    answer = {**metadata, "client_id": client.client_id, "client_id_issued_at": int(time.time())}
    if secret is not None:
        answer["client_secret"] = secret
        answer["client_secret_expires_at"] = 0
    return _json(answer, 201, NO_STORE)


# -- authorization endpoint ------------------------------------------------------------------

async def authorize(request: web.Request) -> web.Response:
    st = request.app[STATE]
    q = request.query
    client = st.clients.get(q.get("client_id", ""))
    if client is None:
        if st.config.has("unrecognized_client_422"):
            return _json({"message": "Unrecognized client_id"}, 422)  # Supabase's answer, shown to the person
        return _error_page(400, "invalid_client", "Unknown client_id.")
    redirect_uri = q.get("redirect_uri")
    given = redirect_uri is not None
    if redirect_uri is None:
        if len(client.redirect_uris) != 1:
            return _error_page(400, "invalid_request", "redirect_uri is required.")
        redirect_uri = client.redirect_uris[0]
    elif redirect_uri not in client.redirect_uris:
        return _error_page(400, "invalid_request", "redirect_uri is not registered.")
    if q.get("response_type") != "code":
        return _error_page(400, "unsupported_response_type", "response_type must be code.")
    challenge = q.get("code_challenge", "")
    if not challenge or q.get("code_challenge_method") != "S256":
        return _error_page(400, "invalid_request",
                           "PKCE is required: code_challenge with code_challenge_method=S256.")
    if not valid_pkce_string(challenge):
        return _error_page(400, "invalid_request", "code_challenge is malformed.")
    state = q.get("state")
    try:
        scope = st.grant_scope(q.get("scope"))
    except OAuthError as err:
        return _redirect(redirect_uri, {"error": err.error, "error_description": err.description,
                                        "state": state, "iss": st.issuer})
    resource = q.get("resource")
    if resource is not None and (not URL(resource).is_absolute() or URL(resource).fragment):
        # RFC 8707 §2: an absolute URI without a fragment.
        return _redirect(redirect_uri, {"error": "invalid_target", "state": state,
                                        "iss": st.published_issuer})
    if resource is not None and st.config.has("resource_refused_invalid_target"):
        return _redirect(redirect_uri, {"error": "invalid_target", "state": state, "iss": st.published_issuer,
                                        "error_description": _ENTRA_RESOURCE})
    pending = PendingAuthorization(
        request_id=secrets.token_urlsafe(16),
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        redirect_uri_given=given,
        state=state,
        code_challenge=challenge,
        scope=scope,
        resource=resource,
        expires_at=time.time() + PENDING_TTL,
    )
    if st.config.auto_approve:
        code = st.issue_code(pending)
        return _redirect(redirect_uri, {"code": code, "state": state, "iss": st.published_issuer})
    st.add_pending(pending)
    name = str(client.metadata.get("client_name") or client.client_id)
    text = (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorize access</title>"
        "</head><body><h1>Authorize access</h1>"
        f"<p><b id=\"client\">{html.escape(name)}</b> asks for "
        f"<code id=\"scope\">{html.escape(scope)}</code>"
        f" on <code id=\"resource\">{html.escape(resource or '(any)')}</code>.</p>"
        "<form method=\"post\" action=\"/authorize/approve\">"
        f"<input type=\"hidden\" name=\"request_id\" value=\"{html.escape(pending.request_id)}\">"
        "<button type=\"submit\" id=\"approve\">Approve</button> "
        "<button type=\"submit\" id=\"deny\" formaction=\"/authorize/deny\">Deny</button>"
        "</form></body></html>"
    )
    return web.Response(text=text, content_type="text/html", headers=NO_STORE)


async def approve(request: web.Request) -> web.Response:
    st = request.app[STATE]
    form = await request.post()
    try:
        pending = st.take_pending(str(form.get("request_id", "")))
    except OAuthError as err:
        return _error_page(400, err.error, err.description)
    code = st.issue_code(pending)
    return _redirect(pending.redirect_uri, {"code": code, "state": pending.state,
                                            "iss": st.published_issuer})


async def deny(request: web.Request) -> web.Response:
    st = request.app[STATE]
    form = await request.post()
    try:
        pending = st.take_pending(str(form.get("request_id", "")))
    except OAuthError as err:
        return _error_page(400, err.error, err.description)
    return _redirect(pending.redirect_uri, {"error": "access_denied",
                                            "error_description": "the user denied access",
                                            "state": pending.state, "iss": st.published_issuer})


# -- token endpoint (RFC 6749 §3.2) ----------------------------------------------------------

def _claimed_client_id(request: web.Request, form: Any) -> str | None:
    try:
        basic = _basic_credentials(request)
    except OAuthError:
        return None
    return basic[0] if basic else form.get("client_id")


async def token(request: web.Request) -> web.Response:
    st = request.app[STATE]
    nonstandard = request.path != "/token"
    if nonstandard != st.config.has("nonstandard_token_path"):
        return web.Response(status=404, text="not found")
    return _shaped(st, request, await _token(request))


async def _token(request: web.Request) -> web.Response:
    st = request.app[STATE]
    form = await request.post()
    counters = st.counters
    counters.token_requests += 1
    grant_type = form.get("grant_type")
    if isinstance(grant_type, str) and grant_type in counters.grants:
        counters.grants[grant_type] += 1
    refresh_token = form.get("refresh_token")
    refresh_token = refresh_token if isinstance(refresh_token, str) else None
    form_resource = form.get("resource")
    form_resource = form_resource if isinstance(form_resource, str) else None
    code = form.get("code")
    code = code if isinstance(code, str) else None
    gt = grant_type if isinstance(grant_type, str) else None
    request["grant_type"] = gt
    resource = st.fault_resource(gt, form_resource, code, refresh_token)
    fault = st.take_fault(gt, resource)

    entry: dict[str, Any] | None = None
    if gt == "refresh_token":
        grant = st.grant_for_refresh(refresh_token)
        entry = {
            "at": time.time(),
            "resource": resource,
            "client_id": grant.client_id if grant else _claimed_client_id(request, form),
            "prev_issued_at": grant.last_issued_at if grant else None,
            "prev_expires_at": grant.last_expires_at if grant else None,
            "result": fault.mode if fault else "pending",
            "client_auth": _auth_used(request, form),
        }
        counters.refresh_log.append(entry)

    def done(result: str, response: web.Response, ok: bool) -> web.Response:
        if entry is not None:
            entry["result"] = result
        if ok and gt in counters.succeeded:
            counters.succeeded[gt] += 1
        elif not ok:
            counters.failed += 1
        return response

    if fault is not None and fault.mode == "hang":
        await asyncio.sleep(fault.hang_seconds)
        return done("hang", _json({"error": "temporarily_unavailable",
                                   "error_description": "injected fault hang"}, 504, NO_STORE),
                    False)
    if fault is not None and fault.mode == "slow":
        # Answers for real, hang_seconds late: a refresh still in flight when the client changes its mind.
        await asyncio.sleep(fault.hang_seconds)
    if fault is not None and fault.mode in _STATELESS_FAULTS:
        return done(fault.mode, _fault_response(fault), False)

    claimed = _claimed_client_id(request, form)
    if claimed and claimed not in st.clients:
        if st.config.has("unrecognized_client_422"):
            return done("unrecognized_client", _json({"message": "Unrecognized client_id"}, 422), False)
        if st.config.has("unknown_client_html_500"):
            return done("html_500", _error_page(500, "Internal Server Error", "Something went wrong."), False)
    if form_resource and st.config.has("resource_refused_invalid_target"):
        return done("invalid_target", _oauth_error(OAuthError("invalid_target", _ENTRA_RESOURCE)), False)
    try:
        client = _authenticate(st, request, form)
        bad_expires = fault is not None and fault.mode in _BAD_EXPIRES
        if gt == "authorization_code":
            body = st.exchange_code(client, code or "", _str(form.get("redirect_uri")),
                                    _str(form.get("code_verifier")), form_resource)
        elif gt == "refresh_token":
            # A malformed answer must not cost the client its refresh token: no rotation.
            body = st.refresh(client, refresh_token, _str(form.get("scope")), form_resource,
                              rotate=False if bad_expires else None)
        else:
            raise OAuthError("unsupported_grant_type", "grant_type is not supported")
    except OAuthError as err:
        return done(err.error, _oauth_error(err), False)

    if fault is not None and fault.mode == "lost":
        return done("lost", _json({"error": "bad_gateway",
                                   "error_description": "injected fault lost"}, 502, NO_STORE),
                    False)
    if fault is not None and bad_expires:
        body["expires_in"] = _BAD_EXPIRES[fault.mode]
        return done(fault.mode, _json(body, 200, NO_STORE), False)
    return done("ok", _json(body, 200, NO_STORE), True)


def _auth_used(request: web.Request, form: Any) -> str:
    """Which client authentication a token request carried (several when it broke RFC 6749 §2.3)."""
    used = []
    if request.headers.get("Authorization", "")[:6].lower() == "basic ":
        used.append("client_secret_basic")
    if form.get("client_secret"):
        used.append("client_secret_post")
    return "+".join(used) or "none"


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# -- revocation (RFC 7009) and introspection (RFC 7662) --------------------------------------

async def revoke(request: web.Request) -> web.Response:
    st = request.app[STATE]
    form = await request.post()
    st.counters.revocations += 1
    try:
        client = _authenticate(st, request, form)
        token_value = _str(form.get("token"))
        if token_value is None:
            raise OAuthError("invalid_request", "token is required")
    except OAuthError as err:
        return _oauth_error(err)
    st.revoke(client, token_value)
    return web.Response(status=200, headers=NO_STORE)


async def introspect(request: web.Request) -> web.Response:
    st = request.app[STATE]
    form = await request.post()
    st.counters.introspections += 1
    token_value = _str(form.get("token"))
    if token_value is None:
        return _oauth_error(OAuthError("invalid_request", "token is required"))
    return _json(st.introspect(token_value), 200, NO_STORE)


# -- /_test/ control API ---------------------------------------------------------------------

def _bad(description: str) -> web.Response:
    return _json({"error": "invalid_request", "error_description": description}, 400)


async def test_config(request: web.Request) -> web.Response:
    st = request.app[STATE]
    body = await _json_object(request)
    cfg = st.config
    for key in ("access_ttl", "refresh_ttl"):
        if key in body:
            value = body[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                return _bad(f"{key} must be a positive number")
            setattr(cfg, key, float(value))
    for key in ("rotate", "auto_approve"):
        if key in body:
            if not isinstance(body[key], bool):
                return _bad(f"{key} must be a boolean")
            setattr(cfg, key, body[key])
    if "habits" in body:
        habits = body["habits"]
        if not isinstance(habits, list) or any(h not in HABITS for h in habits):
            return _bad(f"habits must be a list drawn from {sorted(HABITS)}")
        cfg.habits = list(dict.fromkeys(habits))
    for key in ("default_audience", "fixed_redirect_uri"):
        if key in body:
            if body[key] is not None and not isinstance(body[key], str):
                return _bad(f"{key} must be a string or null")
            setattr(cfg, key, body[key])
    return _json(_config_json(cfg))


def _config_json(cfg: Config) -> dict[str, Any]:
    return {"access_ttl": cfg.access_ttl, "refresh_ttl": cfg.refresh_ttl, "rotate": cfg.rotate,
            "auto_approve": cfg.auto_approve, "pkce_metadata": cfg.pkce_metadata,
            "scopes": list(cfg.scopes), "habits": list(cfg.habits), "default_audience": cfg.default_audience,
            "fixed_redirect_uri": cfg.fixed_redirect_uri}


async def test_get_config(request: web.Request) -> web.Response:
    return _json(_config_json(request.app[STATE].config))


async def test_fault(request: web.Request) -> web.Response:
    st = request.app[STATE]
    body = await _json_object(request)
    mode = body.get("mode", "none")
    if mode not in FAULT_MODES:
        return _bad(f"unknown fault mode; expected one of {sorted(FAULT_MODES)}")
    count = body.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        return _bad("count must be a positive integer or null")
    retry_after = body.get("retry_after")
    if retry_after is not None and (isinstance(retry_after, bool)
                                    or not isinstance(retry_after, int | float)):
        return _bad("retry_after must be a number or null")
    hang = body.get("hang_seconds", 30.0)
    if isinstance(hang, bool) or not isinstance(hang, int | float) or hang < 0:
        return _bad("hang_seconds must be a non-negative number")
    grant_types = body.get("grant_types") or ["refresh_token"]
    if not isinstance(grant_types, list) or any(g not in GRANT_TYPES for g in grant_types):
        return _bad(f"grant_types must be a list drawn from {list(GRANT_TYPES)}")
    resource = body.get("resource")
    if resource is not None and not isinstance(resource, str):
        return _bad("resource must be a string or null")
    st.fault = Fault(mode, count, retry_after, float(hang), tuple(grant_types), resource)
    return _json(st.fault.describe())


async def test_get_fault(request: web.Request) -> web.Response:
    return _json(request.app[STATE].fault.describe())


async def test_forget_clients(request: web.Request) -> web.Response:
    return _json({"forgotten": request.app[STATE].forget_clients()})


async def test_invalidate(request: web.Request) -> web.Response:
    return _json({"invalidated": request.app[STATE].invalidate_refresh_tokens()})


async def test_clients(request: web.Request) -> web.Response:
    st = request.app[STATE]
    body = await _json_object(request)
    client_id = body.get("client_id")
    secret = body.get("client_secret")
    uris = body.get("redirect_uris")
    if not isinstance(client_id, str) or not client_id:
        return _bad("client_id must be a non-empty string")
    if secret is not None and (not isinstance(secret, str) or not secret):
        return _bad("client_secret must be a non-empty string or null (public client)")
    if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
        return _bad("redirect_uris must be a non-empty list of strings")
    method = "none" if secret is None else "client_secret_basic"
    st.add_client(uris, client_id=client_id, client_secret=secret,
                  metadata={"redirect_uris": uris, "token_endpoint_auth_method": method})
    return _json({"client_id": client_id, "token_endpoint_auth_method": method}, 201)


async def test_counters(request: web.Request) -> web.Response:
    return _json(request.app[STATE].counters.as_json())


async def test_reset_counters(request: web.Request) -> web.Response:
    st = request.app[STATE]
    st.counters = type(st.counters)()
    return _json({"reset": True})


async def test_issued(request: web.Request) -> web.Response:
    return _json(request.app[STATE].issued.as_json())


async def test_grants(request: web.Request) -> web.Response:
    return _json(request.app[STATE].grants_summary())


# -- app and process -------------------------------------------------------------------------

def create_app(config: Config, issuer: str = "") -> web.Application:
    app = web.Application(middlewares=[_middleware])
    app[STATE] = ServerState(config, issuer)
    app.router.add_routes(
        [
            web.get("/.well-known/oauth-authorization-server", metadata),
            web.get("/.well-known/openid-configuration", metadata),
            web.get("/.well-known/oauth-authorization-server/{tail:.*}", metadata),
            web.get("/.well-known/openid-configuration/{tail:.*}", metadata),
            web.post("/register", register),
            web.get("/authorize", authorize),
            web.post("/authorize/approve", approve),
            web.post("/authorize/deny", deny),
            web.post("/token", token),
            web.post("/oauth/v1/token", token),  # the nonstandard_token_path habit (HubSpot)
            web.post("/revoke", revoke),
            web.post("/introspect", introspect),
            web.get("/_test/config", test_get_config),
            web.post("/_test/config", test_config),
            web.get("/_test/fault", test_get_fault),
            web.post("/_test/fault", test_fault),
            web.post("/_test/invalidate", test_invalidate),
            web.post("/_test/forget_clients", test_forget_clients),
            web.post("/_test/clients", test_clients),
            web.get("/_test/counters", test_counters),
            web.post("/_test/reset_counters", test_reset_counters),
            web.get("/_test/issued", test_issued),
            web.get("/_test/grants", test_grants),
        ]
    )
    return app


def _issuer(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve(host: str, port: int, config: Config) -> None:
    """Bind, print ``READY <issuer>`` on stdout, serve until SIGTERM or SIGINT."""
    app = create_app(config)
    # Short shutdown grace: a "hang" fault must not hold up SIGTERM.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound_port = int(runner.addresses[0][1])
    issuer = _issuer(host, bound_port)
    app[STATE].issuer = issuer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(f"READY {issuer}\n")
    sys.stdout.flush()
    log.info("test authorization server ready at %s", issuer)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
