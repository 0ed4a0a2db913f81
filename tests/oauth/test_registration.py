"""mcpproxy.oauth.registration (RFC 7591) against a canned server."""

from __future__ import annotations

import dataclasses

import pytest

from mcpproxy.oauth.discovery import AuthServerMetadata
from mcpproxy.oauth.errors import OAuthError
from mcpproxy.oauth.registration import ClientRegistration, register_client
from tests.oauth.test_http import Canned, CannedServer, canned_fixture

canned = pytest.fixture(canned_fixture)
REDIRECT = "http://127.0.0.1:8080/oauth/callback"


def meta(server: CannedServer) -> AuthServerMetadata:
    base = server.base_url
    return AuthServerMetadata(
        issuer=base,
        authorization_endpoint=base + "/authorize",
        token_endpoint=base + "/token",
        registration_endpoint=base + "/register",
        revocation_endpoint=None,
        code_challenge_methods_supported=("S256",),
        scopes_supported=(),
        iss_parameter_supported=False,
    )


def test_registers_a_public_client(canned: CannedServer) -> None:
    canned.add("POST", "/register", Canned(201, {"client_id": "c-1", "redirect_uris": [REDIRECT]}))
    reg = register_client(meta(canned), REDIRECT, scopes=("a", "b"))
    assert reg == ClientRegistration("c-1", None, canned.base_url, REDIRECT)
    sent = canned.requests[0].json()
    assert sent == {
        "client_name": "mcpproxy",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "a b",
    }


def test_secret_is_kept_but_not_shown(canned: CannedServer) -> None:
    canned.add("POST", "/register", Canned(200, {"client_id": "c-2", "client_secret": "TOPSECRET"}))
    reg = register_client(meta(canned), REDIRECT, client_name="other")
    assert reg.client_secret == "TOPSECRET"
    assert "TOPSECRET" not in repr(reg)
    assert canned.requests[0].json()["client_name"] == "other"
    assert "scope" not in canned.requests[0].json()


def test_no_registration_endpoint_is_config(canned: CannedServer) -> None:
    with pytest.raises(OAuthError) as info:
        register_client(dataclasses.replace(meta(canned), registration_endpoint=None), REDIRECT)
    assert info.value.kind == "config"
    assert "set oauth.client_id in the config" in info.value.message
    assert "dynamic client registration" in info.value.message


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (
            Canned(400, {"error": "invalid_redirect_uri", "error_description": "no loopback"}),
            "config",
        ),
        (Canned(401, {}), "config"),
        (Canned(403, {}), "config"),
        (Canned(500, {}), "server"),
        (Canned(429, {}, {"Retry-After": "3"}), "server"),
        (Canned(201, "<html>"), "protocol"),
        (Canned(201, {"client_secret": "x"}), "protocol"),
        (
            Canned(201, {"client_id": "c", "redirect_uris": ["http://127.0.0.1:1/other"]}),
            "protocol",
        ),
        (Canned(201, {"client_id": "c", "logo": "x" * (2 << 20)}), "protocol"),  # over 1 MiB
        (Canned(302, b"", {"Location": "https://elsewhere.example/register"}), "protocol"),
    ],
)
def test_failures(canned: CannedServer, answer: Canned, kind: str) -> None:
    canned.add("POST", "/register", answer)
    with pytest.raises(OAuthError) as info:
        register_client(meta(canned), REDIRECT)
    assert info.value.kind == kind
    assert info.value.message.startswith(f"client registration at {canned.base_url}/register: ")
