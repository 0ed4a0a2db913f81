"""mcpproxy.oauth.discovery: canonical URIs, RFC 9728 → RFC 8414 discovery."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from mcpproxy.oauth.discovery import (
    canonical_resource,
    discover,
    fetch_auth_server_metadata,
)
from mcpproxy.oauth.errors import OAuthError
from tests.oauth.test_http import Canned, CannedServer, canned_fixture

canned = pytest.fixture(canned_fixture)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp"),
        ("https://mcp.example.com", "https://mcp.example.com"),
        ("https://mcp.example.com/", "https://mcp.example.com/"),
        ("https://mcp.example.com:8443", "https://mcp.example.com:8443"),
        ("https://mcp.example.com/server/mcp", "https://mcp.example.com/server/mcp"),
        ("HTTPS://MCP.Example.COM/MCP/", "https://mcp.example.com/MCP"),
        ("https://mcp.example.com/mcp#frag", "https://mcp.example.com/mcp"),
        ("https://mcp.example.com:443/mcp", "https://mcp.example.com/mcp"),
        ("http://127.0.0.1:80/mcp", "http://127.0.0.1/mcp"),
        ("http://127.0.0.1:8080/mcp", "http://127.0.0.1:8080/mcp"),
        ("https://user:pw@mcp.example.com/mcp", "https://mcp.example.com/mcp"),
        ("https://mcp.example.com/mcp?tenant=a", "https://mcp.example.com/mcp?tenant=a"),
        ("http://[::1]:9000/mcp/", "http://[::1]:9000/mcp"),
    ],
)
def test_canonical_resource(url: str, canonical: str) -> None:
    assert canonical_resource(url) == canonical


@pytest.mark.parametrize("url", ["mcp.example.com", "ftp://x/y", "https://", "https://x:bad/"])
def test_canonical_resource_refuses(url: str) -> None:
    with pytest.raises(OAuthError) as info:
        canonical_resource(url)
    assert info.value.kind == "config"


# -- discovery against a canned server -------------------------------------------------------


def as_metadata(issuer: str, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": issuer + "/authorize",
        "token_endpoint": issuer + "/token",
        "registration_endpoint": issuer + "/register",
        "revocation_endpoint": issuer + "/revoke",
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["mcp:read", "mcp:write"],
        "response_types_supported": ["code"],
        "authorization_response_iss_parameter_supported": True,
    }
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not None}


@pytest.fixture
def mcp(canned: CannedServer) -> Iterator[CannedServer]:
    """A protected MCP server at /mcp that is its own authorization server's neighbour."""
    base = canned.base_url
    prm_url = base + "/.well-known/oauth-protected-resource/mcp"
    canned.add(
        "POST",
        "/mcp",
        Canned(
            401,
            {"error": "unauthorized"},
            {"WWW-Authenticate": f'Bearer resource_metadata="{prm_url}", scope="mcp:read"'},
        ),
    )
    canned.add(
        "GET",
        "/.well-known/oauth-protected-resource/mcp",
        Canned(
            200,
            {
                "resource": base + "/mcp",
                "authorization_servers": [base + "/as"],
                "scopes_supported": ["mcp:read", "mcp:write"],
            },
        ),
    )
    canned.add(
        "GET", "/.well-known/oauth-authorization-server/as", Canned(200, as_metadata(base + "/as"))
    )
    yield canned


def paths(server: CannedServer) -> list[str]:
    return [f"{r.method} {r.path}" for r in server.requests]


def test_discover_follows_the_challenge(mcp: CannedServer) -> None:
    d = discover(mcp.url("/mcp"))
    base = mcp.base_url
    assert d.resource == base + "/mcp"
    assert d.scopes == ("mcp:read",)
    m = d.metadata
    assert m.issuer == base + "/as"
    assert m.token_endpoint == base + "/as/token"
    assert m.authorization_endpoint == base + "/as/authorize"
    assert m.registration_endpoint == base + "/as/register"
    assert m.revocation_endpoint == base + "/as/revoke"
    assert m.code_challenge_methods_supported == ("S256",)
    assert m.iss_parameter_supported is True
    assert paths(mcp) == [
        "POST /mcp",
        "GET /.well-known/oauth-protected-resource/mcp",
        "GET /.well-known/oauth-authorization-server/as",
    ]
    probe = mcp.requests[0]
    assert probe.json()["method"] == "initialize"
    assert "text/event-stream" in probe.headers["accept"]
    assert "authorization" not in probe.headers


def test_scopes_fall_back_to_prm(mcp: CannedServer) -> None:
    mcp.add(
        "POST",
        "/mcp",
        Canned(
            401,
            {},
            {
                "WWW-Authenticate": f'Bearer resource_metadata="{mcp.url("/.well-known/oauth-protected-resource/mcp")}"'
            },
        ),
    )
    assert discover(mcp.url("/mcp")).scopes == ("mcp:read", "mcp:write")


def test_get_probe_when_post_is_not_401(mcp: CannedServer) -> None:
    challenge = mcp.routes[("POST", "/mcp")]
    mcp.add("POST", "/mcp", Canned(405, ""))
    mcp.add("GET", "/mcp", challenge)
    d = discover(mcp.url("/mcp"))
    assert d.scopes == ("mcp:read",)
    assert paths(mcp)[:2] == ["POST /mcp", "GET /mcp"]


def test_well_known_prm_without_challenge_param(mcp: CannedServer) -> None:
    mcp.add("POST", "/mcp", Canned(401, {}, {"WWW-Authenticate": 'Bearer realm="x"'}))
    prm = mcp.routes.pop(("GET", "/.well-known/oauth-protected-resource/mcp"))
    mcp.add("GET", "/.well-known/oauth-protected-resource", prm)
    d = discover(mcp.url("/mcp"))
    assert d.metadata.issuer == mcp.base_url + "/as"
    assert paths(mcp)[:5] == [
        "POST /mcp",
        "GET /.well-known/oauth-protected-resource/mcp",
        "GET /mcp/.well-known/oauth-protected-resource",  # the path-suffixed form some servers publish
        "GET /.well-known/oauth-protected-resource",
        "GET /.well-known/oauth-authorization-server/as",
    ]


def test_issuer_with_path_tries_the_spec_order(mcp: CannedServer) -> None:
    doc = mcp.routes.pop(("GET", "/.well-known/oauth-authorization-server/as"))
    mcp.add("GET", "/as/.well-known/openid-configuration", doc)
    mcp.add("GET", "/.well-known/openid-configuration/as", Canned(200, "<html>spa</html>"))
    discover(mcp.url("/mcp"))
    assert paths(mcp)[2:] == [
        "GET /.well-known/oauth-authorization-server/as",
        "GET /.well-known/openid-configuration/as",
        "GET /as/.well-known/openid-configuration",
    ]


def test_issuer_without_path(mcp: CannedServer) -> None:
    base = mcp.base_url
    mcp.add(
        "GET",
        "/.well-known/oauth-protected-resource/mcp",
        Canned(200, {"resource": base + "/mcp", "authorization_servers": [base + "/"]}),
    )
    mcp.add("GET", "/.well-known/openid-configuration", Canned(200, as_metadata(base)))
    d = discover(mcp.url("/mcp"))
    assert d.metadata.issuer == base  # "https://x/" and "https://x" are the same URI
    assert paths(mcp)[2:] == [
        "GET /.well-known/oauth-authorization-server",
        "GET /.well-known/openid-configuration",
    ]


def test_issuer_mismatch_is_protocol(mcp: CannedServer) -> None:
    mcp.add(
        "GET",
        "/.well-known/oauth-authorization-server/as",
        Canned(200, as_metadata("https://evil.example.com/as")),
    )
    with pytest.raises(OAuthError) as info:
        discover(mcp.url("/mcp"))
    assert info.value.kind == "protocol"
    assert "issuer" in info.value.message
    assert mcp.url("/mcp") in info.value.message


@pytest.mark.parametrize("missing", ["authorization_endpoint", "token_endpoint"])
def test_required_endpoints(mcp: CannedServer, missing: str) -> None:
    doc = as_metadata(mcp.base_url + "/as", **{missing: None})
    mcp.add("GET", "/.well-known/oauth-authorization-server/as", Canned(200, doc))
    with pytest.raises(OAuthError) as info:
        discover(mcp.url("/mcp"))
    assert info.value.kind == "protocol"
    assert missing in info.value.message


def test_insecure_endpoint_is_config(mcp: CannedServer) -> None:
    doc = as_metadata(mcp.base_url + "/as", token_endpoint="http://as.example.com/token")
    mcp.add("GET", "/.well-known/oauth-authorization-server/as", Canned(200, doc))
    with pytest.raises(OAuthError) as info:
        discover(mcp.url("/mcp"))
    assert info.value.kind == "config"
    assert "https" in info.value.message


def test_optional_fields(mcp: CannedServer) -> None:
    doc = as_metadata(
        mcp.base_url + "/as",
        registration_endpoint=None,
        revocation_endpoint=None,
        code_challenge_methods_supported=None,
        scopes_supported="not a list",
        authorization_response_iss_parameter_supported=None,
    )
    mcp.add("GET", "/.well-known/oauth-authorization-server/as", Canned(200, doc))
    m = discover(mcp.url("/mcp")).metadata
    assert (m.registration_endpoint, m.revocation_endpoint) == (None, None)
    assert m.code_challenge_methods_supported == () and m.scopes_supported == ()
    assert m.iss_parameter_supported is False


def test_prm_resource_mismatch_is_protocol(mcp: CannedServer) -> None:
    mcp.add(
        "GET",
        "/.well-known/oauth-protected-resource/mcp",
        Canned(
            200,
            {
                "resource": "https://other.example.com/mcp",
                "authorization_servers": [mcp.base_url + "/as"],
            },
        ),
    )
    with pytest.raises(OAuthError) as info:
        discover(mcp.url("/mcp"))
    assert info.value.kind == "protocol"
    assert "resource" in info.value.message


@pytest.mark.parametrize("published", ["/mcp/", "/MCP-not", "/mcpx"])
def test_prm_resource_trailing_slash_and_lookalikes(mcp: CannedServer, published: str) -> None:
    mcp.add(
        "GET",
        "/.well-known/oauth-protected-resource/mcp",
        Canned(
            200,
            {"resource": mcp.base_url + published, "authorization_servers": [mcp.base_url + "/as"]},
        ),
    )
    if published == "/mcp/":
        # The same resource: the indicator sent is the one the server advertised (its AS knows that one).
        assert discover(mcp.url("/mcp")).resource == mcp.base_url + "/mcp/"
    else:
        with pytest.raises(OAuthError):
            discover(mcp.url("/mcp"))


def test_prm_resource_parent_path_is_accepted(canned: CannedServer) -> None:
    base = canned.base_url
    canned.add("POST", "/api/mcp", Canned(401, {}, {"WWW-Authenticate": "Bearer"}))
    canned.add(
        "GET",
        "/.well-known/oauth-protected-resource/api/mcp",
        Canned(200, {"resource": base + "/api", "authorization_servers": [base]}),
    )
    canned.add("GET", "/.well-known/oauth-authorization-server", Canned(200, as_metadata(base)))
    assert discover(canned.url("/api/mcp")).resource == base + "/api"


def test_prm_without_authorization_servers(mcp: CannedServer) -> None:
    mcp.add(
        "GET",
        "/.well-known/oauth-protected-resource/mcp",
        Canned(200, {"resource": mcp.url("/mcp")}),
    )
    with pytest.raises(OAuthError) as info:
        discover(mcp.url("/mcp"))
    assert info.value.kind == "protocol"
    assert "authorization_servers" in info.value.message


def test_advertised_prm_failures(mcp: CannedServer) -> None:
    mcp.add(
        "GET", "/.well-known/oauth-protected-resource/mcp", Canned(503, {}, {"Retry-After": "4"})
    )
    with pytest.raises(OAuthError) as info:
        discover(mcp.url("/mcp"))
    assert (info.value.kind, info.value.retry_after) == ("server", 4.0)
    mcp.add("GET", "/.well-known/oauth-protected-resource/mcp", Canned(404, "nope"))
    with pytest.raises(OAuthError) as info:
        discover(mcp.url("/mcp"))
    assert info.value.kind == "protocol"
    mcp.add("GET", "/.well-known/oauth-protected-resource/mcp", Canned(200, "<html></html>"))
    with pytest.raises(OAuthError) as info:
        discover(mcp.url("/mcp"))
    assert info.value.kind == "protocol"


def test_insecure_resource_metadata_url_is_refused(mcp: CannedServer) -> None:
    mcp.add(
        "POST",
        "/mcp",
        Canned(
            401, {}, {"WWW-Authenticate": 'Bearer resource_metadata="http://evil.example.com/prm"'}
        ),
    )
    with pytest.raises(OAuthError) as info:
        discover(mcp.url("/mcp"))
    assert info.value.kind == "config"


def test_no_prm_falls_back_to_origin_as_issuer(canned: CannedServer) -> None:
    canned.add("POST", "/mcp", Canned(401, {}, {"WWW-Authenticate": 'Bearer realm="old"'}))
    canned.add(
        "GET", "/.well-known/oauth-authorization-server", Canned(200, as_metadata(canned.base_url))
    )
    d = discover(canned.url("/mcp/"))
    assert d.resource == canned.base_url + "/mcp"
    assert d.metadata.issuer == canned.base_url
    assert d.scopes == ()


def test_nothing_found_is_config(canned: CannedServer) -> None:
    canned.add("POST", "/mcp", Canned(200, {"jsonrpc": "2.0", "id": 0, "result": {}}))
    canned.add("GET", "/mcp", Canned(200, ""))
    with pytest.raises(OAuthError) as info:
        discover(canned.url("/mcp"))
    assert info.value.kind == "config"
    assert "no OAuth metadata" in info.value.message
    assert "did not answer 401" in info.value.message


def test_unreachable_server_is_network() -> None:
    from tests.oauth.test_http import refused_url

    with pytest.raises(OAuthError) as info:
        discover(refused_url("/mcp"))
    assert info.value.kind == "network"
    assert info.value.message.startswith("discovery for http://127.0.0.1:")


def test_insecure_server_url_is_config() -> None:
    with pytest.raises(OAuthError) as info:
        discover("http://mcp.example.com/mcp")
    assert info.value.kind == "config"


def test_fetch_auth_server_metadata(canned: CannedServer) -> None:
    canned.add(
        "GET",
        "/.well-known/oauth-authorization-server/t1",
        Canned(200, as_metadata(canned.base_url + "/t1")),
    )
    assert (
        fetch_auth_server_metadata(canned.base_url + "/t1").token_endpoint
        == canned.base_url + "/t1/token"
    )
    with pytest.raises(OAuthError) as info:
        fetch_auth_server_metadata(canned.base_url + "/t2")
    assert info.value.kind == "protocol"
    with pytest.raises(OAuthError) as info:
        fetch_auth_server_metadata(canned.base_url + "/t1?x=1")
    assert info.value.kind == "protocol"


def test_results_pickle(mcp: CannedServer) -> None:
    d = discover(mcp.url("/mcp"))
    assert pickle.loads(pickle.dumps(d)) == d


# -- no redirects, bounded answers (issue 16 items 4 and 5) ------------------------------------


@pytest.fixture
def elsewhere() -> Iterator[CannedServer]:
    """Another address: every request reaching it is one discovery should not have made."""
    server = CannedServer()
    server.add("GET", "/prm", Canned(200, {}))
    server.add("GET", "/meta", Canned(200, {}))
    server.add("POST", "/mcp", Canned(401, {}, {"WWW-Authenticate": "Bearer"}))
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirecting_resource_metadata_url_is_not_followed(
    mcp: CannedServer, elsewhere: CannedServer, status: int
) -> None:
    mcp.add(
        "GET",
        "/.well-known/oauth-protected-resource/mcp",
        Canned(status, b"", {"Location": elsewhere.url("/prm?x=secret")}),
    )
    with pytest.raises(OAuthError) as info:
        discover(mcp.url("/mcp"))
    assert info.value.kind == "protocol"
    assert f"HTTP {status} (to {elsewhere.url('/prm')})" in info.value.message
    assert "follows no redirects" in info.value.message
    assert "secret" not in info.value.message
    assert elsewhere.requests == []


def test_redirecting_well_known_uris_are_not_followed(
    canned: CannedServer, elsewhere: CannedServer
) -> None:
    canned.add("POST", "/mcp", Canned(401, {}, {"WWW-Authenticate": 'Bearer realm="x"'}))
    moved = Canned(307, b"", {"Location": elsewhere.url("/meta")})
    for path in (
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ):
        canned.add("GET", path, moved)
    with pytest.raises(OAuthError) as info:
        discover(canned.url("/mcp"))
    assert info.value.kind == "config" and "no OAuth metadata" in info.value.message
    assert elsewhere.requests == []


def test_redirecting_authorization_server_metadata_is_not_followed(
    mcp: CannedServer, elsewhere: CannedServer
) -> None:
    mcp.add(
        "GET",
        "/.well-known/oauth-authorization-server/as",
        Canned(302, b"", {"Location": elsewhere.url("/meta")}),
    )
    with pytest.raises(OAuthError) as info:
        discover(mcp.url("/mcp"))
    assert info.value.kind == "protocol" and "publishes no metadata" in info.value.message
    assert elsewhere.requests == []


def test_the_unauthenticated_probe_is_not_redirected(
    canned: CannedServer, elsewhere: CannedServer
) -> None:
    canned.add("POST", "/mcp", Canned(307, b"", {"Location": elsewhere.url("/mcp")}))
    canned.add("GET", "/mcp", Canned(302, b"", {"Location": elsewhere.url("/mcp")}))
    with pytest.raises(OAuthError):
        discover(canned.url("/mcp"))
    assert elsewhere.requests == []


def test_huge_resource_metadata_is_refused(mcp: CannedServer) -> None:
    def endless() -> Iterator[bytes]:
        yield b'{"resource": "'
        for _ in range(50 * 16):  # 50 MiB, no Content-Length
            yield b"x" * 65536

    mcp.add("GET", "/.well-known/oauth-protected-resource/mcp", Canned(200, b"", {}, endless))
    with pytest.raises(OAuthError) as info:
        discover(mcp.url("/mcp"))
    assert info.value.kind == "protocol"
    assert "resource metadata" in info.value.message
    assert "larger than 1 MiB" in info.value.message


def test_huge_authorization_server_metadata_is_refused(mcp: CannedServer) -> None:
    big = as_metadata(mcp.base_url + "/as", padding="x" * (2 * 1024 * 1024))
    mcp.add("GET", "/.well-known/oauth-authorization-server/as", Canned(200, big))
    with pytest.raises(OAuthError) as info:
        discover(mcp.url("/mcp"))
    assert info.value.kind == "protocol" and "larger than 1 MiB" in info.value.message
