"""Finding a server's authorization server: RFC 9728 resource metadata, then RFC 8414 / OIDC metadata.

The order is the MCP authorization spec's (2025-06-18, 2025-11-25): the 401's WWW-Authenticate
`resource_metadata`, else the well-known protected-resource URIs; then the authorization server's
metadata at its well-known URIs. A server without resource metadata is taken to be its own
authorization server (the 2025-03-26 behaviour).

No redirect is followed, at any step: every URL fetched is one the rules above name and
require_secure checked. A redirect would let the server (or whoever answers for it) point the
worker at an address nobody checked, a blind SSRF. RFC 9728 §3 and RFC 8414 §3 name exact
metadata URLs, and the issuer and resource checks would refuse most moved documents anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from mcpproxy import __version__
from mcpproxy.oauth.challenge import bearer_params
from mcpproxy.oauth.errors import OAuthError, clean_server_text
from mcpproxy.oauth.http import (
    error_from_response,
    json_object,
    request,
    require_secure,
    safe_url,
    session_scope,
)

_PRM_WELL_KNOWN = "/.well-known/oauth-protected-resource"
_AS_WELL_KNOWN = "/.well-known/oauth-authorization-server"
_OIDC_WELL_KNOWN = "/.well-known/openid-configuration"

_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "mcpproxy", "version": __version__},
    },
}


@dataclass(frozen=True)
class AuthServerMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    registration_endpoint: str | None
    revocation_endpoint: str | None
    code_challenge_methods_supported: tuple[str, ...]
    scopes_supported: tuple[str, ...]
    iss_parameter_supported: bool  # authorization_response_iss_parameter_supported (RFC 9207 §3)


@dataclass(frozen=True)
class Discovery:
    resource: str  # RFC 8707 resource indicator for the server
    metadata: AuthServerMetadata
    scopes: tuple[str, ...]  # the 401's scope=, else the PRM's scopes_supported, else ()


def canonical_resource(server_url: str) -> str:
    """The server's canonical URI (MCP spec, RFC 8707 §2): lowercase scheme and host, no
    fragment, no user info, no default port, no trailing slash unless the path is just "/"."""
    try:
        parts = urlsplit(server_url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise OAuthError("config", f"{safe_url(server_url)} is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        raise OAuthError("config", f"{safe_url(server_url)} is not an absolute http(s) URL")
    if ":" in host:
        host = f"[{host}]"
    if port is not None and (scheme, port) not in (("https", 443), ("http", 80)):
        host = f"{host}:{port}"
    path = parts.path
    if path != "/":
        path = path.rstrip("/")
    return urlunsplit((scheme, host, path, parts.query, ""))


def discover(server_url: str, session: requests.Session | None = None) -> Discovery:
    """The authorization server, resource indicator and scopes for an MCP server."""
    with session_scope(session) as s:
        return _discover(s, server_url)


def fetch_auth_server_metadata(
    issuer: str, session: requests.Session | None = None
) -> AuthServerMetadata:
    """RFC 8414 / OpenID Connect Discovery metadata for `issuer`, checked against it."""
    where = f"authorization server metadata for {safe_url(issuer)}"
    with session_scope(session) as s:
        metadata = _fetch_metadata(s, issuer, where)
    if metadata is None:
        raise OAuthError("protocol", f"{where}: no metadata at any well-known URI")
    return metadata


def _discover(s: requests.Session, server_url: str) -> Discovery:
    where = f"discovery for {safe_url(server_url)}"
    require_secure(server_url, where)
    resource = canonical_resource(server_url)
    challenge = _challenge(s, server_url, where)
    challenge_scopes = tuple((challenge or {}).get("scope", "").split())

    prm: dict[str, Any] | None = None
    advertised = (challenge or {}).get("resource_metadata")
    tried: list[str] = []
    resource_error: OAuthError | None = None
    if advertised:
        require_secure(advertised, f"{where}: resource_metadata")
        prm = _get_json(s, advertised, f"{where}: resource metadata", probing=False)
    else:
        for url in _prm_urls(server_url):
            tried.append(safe_url(url))
            found = _get_json(s, url, f"{where}: resource metadata", probing=True)
            if found is None:
                continue
            try:
                _check_prm_resource(found, server_url, where)
            except OAuthError as e:  # a document for another resource on this host: look further
                resource_error = resource_error or e
                continue
            prm = found
            break
        if prm is None and resource_error is not None:
            raise resource_error

    if prm is None:
        # 2025-03-26: no resource metadata — the server's origin is its authorization server.
        parts = urlsplit(server_url)
        issuer = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
        metadata = _fetch_metadata(s, issuer, where)
        if metadata is None:
            answered = "answered 401" if challenge is not None else "did not answer 401"
            raise OAuthError(
                "config",
                f"{where}: no OAuth metadata found (the server {answered}; no resource metadata at "
                f"{', '.join(tried)}; no authorization server metadata at {issuer})",
            )
        return Discovery(resource=resource, metadata=metadata, scopes=challenge_scopes)

    resource = _check_prm_resource(prm, server_url, where)
    servers = prm.get("authorization_servers")
    if (
        not isinstance(servers, list)
        or not servers
        or not all(isinstance(x, str) and x for x in servers)
    ):
        raise OAuthError("protocol", f"{where}: resource metadata lists no authorization_servers")
    issuer = servers[0]
    require_secure(issuer, f"{where}: authorization server")
    metadata = _fetch_metadata(s, issuer, where)
    if metadata is None:
        raise OAuthError(
            "protocol",
            f"{where}: authorization server {safe_url(issuer)} publishes no metadata at any "
            "well-known URI",
        )
    scopes = challenge_scopes or _str_tuple(prm.get("scopes_supported"))
    return Discovery(resource=resource, metadata=metadata, scopes=scopes)


def _challenge(s: requests.Session, server_url: str, where: str) -> dict[str, str] | None:
    """The Bearer challenge of the server's 401 to an unauthenticated request; None if no 401."""
    headers = {"Accept": "application/json, text/event-stream"}
    for method in ("POST", "GET"):
        kw: dict[str, Any] = {"headers": headers, "read_body": False}
        if method == "POST":
            kw["json"] = _INITIALIZE
        resp = request(s, method, server_url, what=where, **kw)
        try:
            if resp.status_code == 401:
                return bearer_params(resp.headers.get("WWW-Authenticate", ""))
        finally:
            resp.close()  # an unprotected server may have opened an SSE stream
    return None


def _prm_urls(server_url: str) -> list[str]:
    """RFC 9728 §3.1: the well-known URI with the resource's path inserted; then the path-suffixed
    form some servers publish instead (`/mcp/.well-known/oauth-protected-resource`); then the root one."""
    parts = urlsplit(server_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    urls = [origin + _PRM_WELL_KNOWN + path, origin + path + _PRM_WELL_KNOWN] if path else []
    urls.append(origin + _PRM_WELL_KNOWN)
    return urls


def _metadata_urls(issuer: str) -> list[str]:
    """RFC 8414 §3.1 and OIDC Discovery §4, in the MCP spec's order."""
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if path:
        return [
            origin + _AS_WELL_KNOWN + path,
            origin + _OIDC_WELL_KNOWN + path,
            origin + path + _OIDC_WELL_KNOWN,
        ]
    return [origin + _AS_WELL_KNOWN, origin + _OIDC_WELL_KNOWN]


def _get_json(s: requests.Session, url: str, what: str, *, probing: bool) -> dict[str, Any] | None:
    """GET a JSON document. When probing, a 4xx or a non-JSON answer means "not here" (None)."""
    what = f"{what} {safe_url(url)}"
    resp = request(s, "GET", url, what=what, headers={"Accept": "application/json"})
    status = resp.status_code
    if status >= 500 or status == 429:
        raise error_from_response(resp, what)
    if 300 <= status < 400 and not probing:
        where_to = safe_url(resp.headers.get("Location", "")) or "nowhere"
        raise OAuthError(
            "protocol",
            f"{what}: the server answered HTTP {status} (to {where_to}); discovery follows no "
            "redirects — publish the metadata at this URL",
        )
    if not 200 <= status < 300:
        if probing:
            return None
        raise OAuthError("protocol", f"{what}: the server answered HTTP {status}")
    doc = json_object(resp)
    if doc is None and not probing:
        raise OAuthError("protocol", f"{what}: the answer is not a JSON object")
    return doc


def _fetch_metadata(s: requests.Session, issuer: str, where: str) -> AuthServerMetadata | None:
    require_secure(issuer, where)
    parts = urlsplit(issuer)
    if parts.query or parts.fragment:
        # RFC 8414 §2: an issuer has no query or fragment.
        raise OAuthError("protocol", f"{where}: issuer {safe_url(issuer)} has a query or fragment")
    for url in _metadata_urls(issuer):
        doc = _get_json(s, url, f"{where}: authorization server metadata", probing=True)
        if doc is not None:
            return _parse_metadata(doc, issuer, f"{where}: metadata at {safe_url(url)}")
    return None


def same_issuer(published: str, expected: str) -> bool:
    """RFC 8414 §3.3 wants them identical. A trailing slash alone is forgiven (Google, Auth0 and JumpCloud
    publish "https://host/" where the resource metadata or `iss` says "https://host"): it names the same
    origin and path, so it cannot send the person to another server. Anything else is a mismatch."""
    if published == expected:
        return True
    return published.rstrip("/") == expected.rstrip("/") and published.rstrip("/") != ""


def _parse_metadata(doc: dict[str, Any], issuer: str, where: str) -> AuthServerMetadata:
    published = doc.get("issuer")
    if not isinstance(published, str) or not same_issuer(published, issuer):
        shown = clean_server_text(published, 120) if isinstance(published, str) else "none"
        raise OAuthError(
            "protocol", f"{where}: the metadata names issuer {shown!r}, expected {issuer!r}"
        )

    def endpoint(name: str, required: bool) -> str | None:
        value = doc.get(name)
        if value is None or value == "":
            if required:
                raise OAuthError("protocol", f"{where}: the metadata has no {name}")
            return None
        if not isinstance(value, str):
            raise OAuthError("protocol", f"{where}: {name} is not a string")
        require_secure(value, f"{where}: {name}")
        return value

    authorization_endpoint = endpoint("authorization_endpoint", True)
    token_endpoint = endpoint("token_endpoint", True)
    assert authorization_endpoint is not None and token_endpoint is not None
    return AuthServerMetadata(
        issuer=published,
        authorization_endpoint=authorization_endpoint,
        token_endpoint=token_endpoint,
        registration_endpoint=endpoint("registration_endpoint", False),
        revocation_endpoint=endpoint("revocation_endpoint", False),
        code_challenge_methods_supported=_str_tuple(doc.get("code_challenge_methods_supported")),
        scopes_supported=_str_tuple(doc.get("scopes_supported")),
        iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported") is True,
    )


def _check_prm_resource(prm: dict[str, Any], server_url: str, where: str) -> str:
    """The resource to ask tokens for, after checking the PRM describes this server.

    The MCP spec wants the PRM's `resource` to be the server's canonical URI. A resource whose
    path is a parent of the server's (same origin) is accepted too, as the MCP SDKs do; it is
    then the resource indicator sent.
    """
    ours = canonical_resource(server_url)
    value = prm.get("resource")
    if not isinstance(value, str) or not value:
        raise OAuthError("protocol", f"{where}: resource metadata has no resource")
    try:
        theirs = canonical_resource(value)
    except OAuthError:
        raise OAuthError(
            "protocol", f"{where}: resource metadata names an invalid resource"
        ) from None
    a, b = urlsplit(ours), urlsplit(theirs)
    our_path, their_path = a.path.rstrip("/"), b.path.rstrip("/")
    if (a.scheme, a.netloc, a.query) == (b.scheme, b.netloc, b.query) and our_path == their_path:
        # The same resource, perhaps with a trailing slash the config has not (or the other way round): the
        # indicator sent is the one the server advertised, the one its authorization server knows.
        return value.strip() if urlsplit(value.strip()).path.rstrip("/") == their_path else ours
    if (
        (a.scheme, a.netloc) == (b.scheme, b.netloc)
        and not b.query
        and our_path.startswith(their_path + "/")
    ):
        return theirs
    raise OAuthError(
        "protocol",
        f"{where}: resource metadata is for {clean_server_text(theirs, 200)!r}, not this server",
    )


def _str_tuple(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(x for x in value if isinstance(x, str) and x)
