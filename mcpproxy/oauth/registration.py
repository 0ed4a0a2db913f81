"""Dynamic client registration (RFC 7591) of mcpproxy as a public client, and knowing when it was forgotten."""

from __future__ import annotations

from dataclasses import dataclass, field

import requests

from mcpproxy.oauth.discovery import AuthServerMetadata
from mcpproxy.oauth.errors import ClientUnknown, OAuthError, clean_server_text, client_unknown
from mcpproxy.oauth.http import (
    error_fields,
    error_from_response,
    json_object,
    request,
    require_secure,
    safe_url,
    session_scope,
)
from mcpproxy.oauth.tokens import AUTH_METHODS

__all__ = ["ClientRegistration", "ClientUnknown", "client_unknown", "no_registration_message", "register_client"]


def no_registration_message(issuer: str, server: str, redirect_uri: str) -> str:
    """What to do when the authorization server offers no registration endpoint (GitHub, Slack, Entra, …)."""
    return (f"authorization server {safe_url(issuer)} offers no dynamic client registration (RFC 7591): "
            f"register an OAuth client there with the redirect URI {redirect_uri}, then set its client_id "
            f"(and client_secret, if it issued one) in the config: the field oauth.client_id of server '{server}'")


@dataclass(frozen=True)
class ClientRegistration:
    client_id: str
    client_secret: str | None = field(repr=False)
    issuer: str
    redirect_uri: str
    #: The token endpoint authentication the server registered (RFC 7591 §2), which may not be the `none`
    #: asked for: Notion answers client_secret_basic with a secret, Figma client_secret_post.
    auth_method: str = "none"


def register_client(
    metadata: AuthServerMetadata,
    redirect_uri: str,
    *,
    client_name: str = "mcpproxy",
    scopes: tuple[str, ...] = (),
    session: requests.Session | None = None,
) -> ClientRegistration:
    """Register a public client (PKCE, no secret) for `redirect_uri` at the authorization server."""
    endpoint = metadata.registration_endpoint
    if not endpoint:
        raise OAuthError(
            "config",
            f"authorization server {safe_url(metadata.issuer)} does not support dynamic client "
            "registration; set oauth.client_id in the config",
        )
    what = f"client registration at {safe_url(endpoint)}"
    require_secure(endpoint, what)
    # RFC 7591 §2: client metadata.
    body: dict[str, object] = {
        "client_name": client_name,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    if scopes:
        body["scope"] = " ".join(scopes)
    with session_scope(session) as s:
        resp = request(s, "POST", endpoint, what=what, json=body)
    status = resp.status_code
    if status in (401, 403):
        raise OAuthError(
            "config",
            f"{what}: the authorization server requires an initial access token (HTTP {status}); "
            "set oauth.client_id in the config",
        )
    if 400 <= status < 500 and status != 429:
        # RFC 7591 §3.2.2: invalid_redirect_uri, invalid_client_metadata, … — retrying cannot help.
        code, desc = error_fields(resp)
        detail = f" {code}" if code else ""
        detail += f" ({desc})" if desc else ""
        raise OAuthError(
            "config", f"{what}: the server refused the registration: HTTP {status}{detail}"
        )
    if not 200 <= status < 300:
        raise error_from_response(resp, what)
    doc = json_object(resp)
    if doc is None:
        raise OAuthError("protocol", f"{what}: the answer is not a JSON object")
    client_id = doc.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise OAuthError("protocol", f"{what}: the answer has no client_id")
    secret = doc.get("client_secret")
    if secret is not None and not isinstance(secret, str):
        raise OAuthError("protocol", f"{what}: client_secret is not a string")
    method = doc.get("token_endpoint_auth_method")
    if method is None:
        method = "client_secret_basic" if secret else "none"  # RFC 7591 §2's default, when a secret came
    if method not in AUTH_METHODS or (method != "none" and not secret):
        shown = clean_server_text(method, 40) if isinstance(method, str) else type(method).__name__
        raise OAuthError("protocol", f"{what}: unsupported token_endpoint_auth_method {shown!r}"
                         + ("" if secret or method == "none" else " without a client_secret"))
    uris = doc.get("redirect_uris")
    if isinstance(uris, list) and redirect_uri not in uris:
        raise OAuthError("protocol", f"{what}: the server registered other redirect URIs")
    return ClientRegistration(
        client_id=client_id,
        client_secret=secret or None,
        issuer=metadata.issuer,
        redirect_uri=redirect_uri,
        auth_method=method if secret else "none",
    )
