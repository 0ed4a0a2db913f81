"""Token revocation (RFC 7009)."""

from __future__ import annotations

import requests

from mcpproxy.oauth.http import (
    client_auth,
    error_from_response,
    request,
    require_secure,
    safe_url,
    session_scope,
)


def revoke(
    revocation_endpoint: str,
    *,
    token: str,
    token_type_hint: str,
    client_id: str,
    client_secret: str | None,
    auth_method: str | None = None,
    session: requests.Session | None = None,
) -> None:
    """Ask the server to revoke `token` ("refresh_token" or "access_token" as the hint).

    RFC 7009 §2.2: 200 also for a token that is already invalid; 503 means try later.
    """
    what = f"token revocation at {safe_url(revocation_endpoint)}"
    require_secure(revocation_endpoint, what)
    form = {"token": token}
    if token_type_hint:
        form["token_type_hint"] = token_type_hint
    headers = client_auth(form, client_id, client_secret, auth_method)
    with session_scope(session) as s:
        resp = request(s, "POST", revocation_endpoint, what=what, data=form, headers=headers)
    if not 200 <= resp.status_code < 300:
        raise error_from_response(resp, what)
