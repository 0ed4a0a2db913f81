"""mcpproxy.oauth.authorize: the authorization URL and the callback's iss (RFC 9207)."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mcpproxy.oauth.authorize import authorization_request, check_callback_iss
from mcpproxy.oauth.discovery import AuthServerMetadata
from mcpproxy.oauth.errors import OAuthError

META = AuthServerMetadata(
    issuer="https://as.example.com",
    authorization_endpoint="https://as.example.com/authorize?tenant=t1&client_id=stale",
    token_endpoint="https://as.example.com/token",
    registration_endpoint=None,
    revocation_endpoint=None,
    code_challenge_methods_supported=("plain", "S256"),
    scopes_supported=(),
    iss_parameter_supported=True,
)

ARGS: dict[str, Any] = dict(
    client_id="client-1",
    redirect_uri="http://127.0.0.1:8080/oauth/callback",
    scopes=("mcp:read", "mcp:write"),
    state="st",
    code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    resource="https://mcp.example.com/mcp",
)


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def test_authorization_url() -> None:
    url = authorization_request(META, **ARGS).url()
    assert url.startswith("https://as.example.com/authorize?")
    assert query(url) == {
        "tenant": ["t1"],
        "response_type": ["code"],
        "client_id": ["client-1"],
        "redirect_uri": ["http://127.0.0.1:8080/oauth/callback"],
        "state": ["st"],
        "code_challenge": ["E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"],
        "code_challenge_method": ["S256"],
        "scope": ["mcp:read mcp:write"],
        "resource": ["https://mcp.example.com/mcp"],
    }
    assert "scope=mcp%3Aread%20mcp%3Awrite" in url


def test_no_scope_param_without_scopes() -> None:
    url = authorization_request(META, **{**ARGS, "scopes": ()}).url()
    assert "scope" not in query(url)


def test_extra_params() -> None:
    url = authorization_request(
        META,
        **ARGS,
        extra_params={"audience": "api", "resource": "https://other/x", "prompt": "consent"},
    ).url()
    q = query(url)
    assert q["audience"] == ["api"] and q["prompt"] == ["consent"]
    assert q["resource"] == ["https://other/x"]


@pytest.mark.parametrize(
    "name",
    [
        "state",
        "code_challenge",
        "code_challenge_method",
        "redirect_uri",
        "client_id",
        "response_type",
    ],
)
def test_extra_params_cannot_replace_security_params(name: str) -> None:
    with pytest.raises(OAuthError) as info:
        authorization_request(META, **ARGS, extra_params={name: "x"}).url()
    assert info.value.kind == "config"


@pytest.mark.parametrize("methods", [(), ("plain",)])
def test_refuses_without_s256(methods: tuple[str, ...]) -> None:
    meta = dataclasses.replace(META, code_challenge_methods_supported=methods)
    with pytest.raises(OAuthError) as info:
        authorization_request(meta, **ARGS).url()
    assert info.value.kind == "config"
    assert "S256" in info.value.message


def test_refuses_insecure_endpoint() -> None:
    meta = dataclasses.replace(META, authorization_endpoint="http://as.example.com/authorize")
    with pytest.raises(OAuthError) as info:
        authorization_request(meta, **ARGS).url()
    assert info.value.kind == "config"


def test_check_callback_iss() -> None:
    check_callback_iss(META, "https://as.example.com")
    with pytest.raises(OAuthError) as info:
        check_callback_iss(META, "https://evil.example.com")
    assert info.value.kind == "protocol"
    with pytest.raises(OAuthError) as info:
        check_callback_iss(META, None)
    assert info.value.kind == "protocol"
    quiet = dataclasses.replace(META, iss_parameter_supported=False)
    check_callback_iss(quiet, None)
    check_callback_iss(quiet, "https://as.example.com/")  # a trailing slash alone is forgiven (Google, Auth0)
    with pytest.raises(OAuthError):
        check_callback_iss(quiet, "https://as.example.com/x")


def test_loopback_http_endpoint_through_oauthlib_without_a_process_wide_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    meta = dataclasses.replace(META, authorization_endpoint="http://127.0.0.1:9/authorize#frag")
    url = authorization_request(meta, **ARGS).url()
    assert url.startswith("http://127.0.0.1:9/authorize?") and "#" not in url
    assert query(url)["code_challenge_method"] == ["S256"]
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ


def test_extra_params_may_replace_scope_and_keep_empty_values() -> None:
    url = authorization_request(META, **ARGS, extra_params={"scope": "only", "prompt": "", "uri": "u"}).url()
    q = query(url)
    assert q["scope"] == ["only"] and q["prompt"] == [""] and q["uri"] == ["u"]
    assert q["client_id"] == ["client-1"]  # the endpoint's stale client_id is replaced, not doubled
