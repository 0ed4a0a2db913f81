"""The authorization request (RFC 6749 §4.1.1 with PKCE, RFC 8707) and its response's `iss` (RFC 9207)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

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


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked authorization request; `url()` writes it out.

    The TokenActor decides and checks it (authorization_request); whoever sends the browser there — the
    gateway — writes the URL. Writing it runs urllib.parse's query code, whose first run in a process
    copies ~0.15 MB of inherited pages, once in the gateway instead of once in every TokenActor
    (docs/architecture.md "Processes")."""

    endpoint: str
    params: tuple[tuple[str, str], ...] = field(repr=False)  # carries the state
    replaced: frozenset[str] = frozenset()  # the endpoint's own query parameters that ours replace

    def url(self) -> str:
        parts = urlsplit(self.endpoint)
        # RFC 6749 §3.1: keep the endpoint's own query (ours replace same-named ones), drop a fragment.
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in self.replaced]
        query.extend(self.params)
        # RFC 3986 percent-encoding ("%20", not the form-style "+") reads the same everywhere.
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, quote_via=quote), ""))


def authorization_request(
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
) -> AuthorizationRequest:
    """Where to send the person's browser, checked. Refuses a server that does not advertise S256, unless
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
    # RFC 6749 §4.1.1 and RFC 7636 §4.3, in the order oauthlib's prepare_grant_uri writes them.
    params = [*ours.items(), ("response_type", "code"), ("client_id", client_id), ("redirect_uri", redirect_uri)]
    if "scope" not in ours and scopes:
        params.append(("scope", " ".join(scopes)))
    params += [("state", state), ("code_challenge", code_challenge), ("code_challenge_method", "S256")]
    return AuthorizationRequest(endpoint, tuple(params), _PROTECTED | {"scope"} | ours.keys())


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
