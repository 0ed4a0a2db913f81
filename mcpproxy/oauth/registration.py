"""Dynamic client registration (RFC 7591) of mcpproxy as a public client, and knowing when it was forgotten."""

from __future__ import annotations

from dataclasses import dataclass, field

import requests

from mcpproxy.oauth.discovery import AuthServerMetadata
from mcpproxy.oauth.errors import OAuthError
from mcpproxy.oauth.http import (
    error_fields,
    error_from_response,
    json_object,
    request,
    require_secure,
    safe_url,
    session_scope,
)


class ClientUnknown(OAuthError):
    """The authorization server does not know our client (any more): RFC 6749 §5.2 `invalid_client`, or a
    provider's own way of saying so. `certain` is False for an HTML 500, which may also be a plain outage."""

    def __init__(self, message: str, certain: bool = True) -> None:
        super().__init__("invalid_client" if certain else "server", message)
        self.certain = certain

    def __reduce__(self) -> tuple[type[ClientUnknown], tuple[str, bool]]:  # type: ignore[override]
        return (ClientUnknown, (self.message, self.certain))


def client_unknown(resp: requests.Response, what: str) -> ClientUnknown | None:
    """A token endpoint's non-2xx answer that says it does not know the client: Supabase's 422
    `{"message": "Unrecognized client_id"}`, or an HTML 500 (servers that crash on an unknown client)."""
    status = resp.status_code
    kind = resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if status == 422 and b"unrecognized client" in resp.content[:4096].lower():
        return ClientUnknown(f"{what}: the authorization server answered HTTP 422 \"Unrecognized client_id\"")
    if status == 500 and kind in ("text/html", "application/xhtml+xml"):
        return ClientUnknown(f"{what}: the authorization server answered HTTP 500 with an HTML page", certain=False)
    return None


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
    uris = doc.get("redirect_uris")
    if isinstance(uris, list) and redirect_uri not in uris:
        raise OAuthError("protocol", f"{what}: the server registered other redirect URIs")
    return ClientRegistration(
        client_id=client_id,
        client_secret=secret or None,
        issuer=metadata.issuer,
        redirect_uri=redirect_uri,
    )
