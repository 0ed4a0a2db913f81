"""The authorization request (RFC 6749 §4.1.1 with PKCE, RFC 8707) and its response's `iss` (RFC 9207)."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from oauthlib.oauth2 import WebApplicationClient

from mcpproxy.oauth.discovery import AuthServerMetadata, same_issuer
from mcpproxy.oauth.errors import OAuthError, clean_server_text
from mcpproxy.oauth.http import require_secure, safe_url

# Parameters that carry the flow's security; config extra_params cannot replace them.
_PROTECTED = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "code_challenge",
        "code_challenge_method",
    }
)


def authorization_url(
    metadata: AuthServerMetadata,
    *,
    client_id: str,
    redirect_uri: str,
    scopes: tuple[str, ...],
    state: str,
    code_challenge: str,
    resource: str,
    extra_params: dict[str, str] | None = None,
    assume_s256: bool = False,
    server: str = "",
) -> str:
    """The URL to send the person's browser to. Refuses a server that does not advertise S256, unless
    `assume_s256` (the per-server setting oauth.assume_pkce_s256) says to send S256 anyway."""
    endpoint = metadata.authorization_endpoint
    what = f"authorization request to {safe_url(endpoint)}"
    require_secure(endpoint, what)
    advertised = metadata.code_challenge_methods_supported
    if "S256" not in advertised and (advertised or not assume_s256):
        # MCP spec: clients MUST refuse when PKCE support is not advertised. A server that lists other
        # methods only is refused whatever the setting: it says it does not do S256.
        named = f" of server '{server}'" if server else ""
        hint = (f"; if you know it supports S256 (Entra ID does), set oauth.assume_pkce_s256 to true{named} "
                "in the config" if not advertised else "")
        raise OAuthError(
            "config",
            f"{what}: authorization server {safe_url(metadata.issuer)} does not advertise PKCE "
            f"S256 (code_challenge_methods_supported); mcpproxy refuses to log in without it{hint}",
        )
    ours: dict[str, str] = {"resource": resource} if resource else {}  # RFC 8707 §2.1
    for name, value in (extra_params or {}).items():
        if name in _PROTECTED:
            raise OAuthError("config", f"oauth.extra_params may not set {name!r}")
        ours[name] = value  # extra_params win over resource and scope
    parts = urlsplit(endpoint)
    # RFC 6749 §3.1: keep the endpoint's own query (ours replace same-named ones), drop a fragment.
    replaced = _PROTECTED | {"scope"} | ours.keys()
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in replaced]
    query.extend(ours.items())
    # oauthlib accepts only an "https://" prefix unless OAUTHLIB_INSECURE_TRANSPORT is set for the
    # whole process; require_secure above has already allowed plain http for loopback hosts only.
    base = urlunsplit(("https", parts.netloc, parts.path, urlencode(query), ""))
    built = WebApplicationClient(client_id).prepare_request_uri(
        base,
        redirect_uri=redirect_uri,
        scope=None if "scope" in ours else list(scopes) or None,
        state=state,
        code_challenge=code_challenge,  # RFC 7636 §4.3
        code_challenge_method="S256",
    )
    # RFC 3986 percent-encoding ("%20", not the form-style "+" oauthlib writes) reads the same everywhere.
    params = parse_qsl(urlsplit(built).query, keep_blank_values=True)
    return urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urlencode(params, quote_via=quote), "")
    )


def check_callback_iss(metadata: AuthServerMetadata, iss: str | None) -> None:
    """RFC 9207 §2.4: the callback's `iss` must be the issuer we sent the person to."""
    if iss is not None:
        if not same_issuer(iss, metadata.issuer):
            raise OAuthError(
                "protocol",
                f"authorization response names issuer {clean_server_text(iss, 120)!r}, "
                f"expected {metadata.issuer!r} (possible mix-up attack)",
            )
        return
    if metadata.iss_parameter_supported:
        raise OAuthError(
            "protocol",
            f"authorization response from {safe_url(metadata.issuer)} lacks the iss parameter "
            "its metadata promises (RFC 9207)",
        )
