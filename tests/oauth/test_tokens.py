"""mcpproxy.oauth.tokens: code exchange, refresh and the checks on token answers."""

from __future__ import annotations

import base64
import json
import pickle
import time
from typing import Any

import pytest
import requests

from mcpproxy.oauth.errors import OAuthError
from mcpproxy.oauth.tokens import TokenResponse, exchange_code, parse_token_response, refresh
from tests.oauth.test_http import Canned, CannedServer, canned_fixture, refused_url

canned = pytest.fixture(canned_fixture)
GOOD = {
    "access_token": "AT-SECRET",
    "token_type": "bearer",
    "refresh_token": "RT-SECRET",
    "expires_in": 3600,
    "scope": "a b",
}
SECRETS = ("AT-SECRET", "RT-SECRET", "CODE-SECRET", "VERIFIER-SECRET", "CLIENT-SECRET")


def no_secrets(text: str) -> None:
    for s in SECRETS:
        assert s not in text


def do_refresh(server: CannedServer, **kw: Any) -> TokenResponse:
    args: dict[str, Any] = dict(
        refresh_token="RT-SECRET",
        client_id="cid",
        client_secret=None,
        resource="https://mcp.example.com/mcp",
    )
    args.update(kw)
    return refresh(server.url("/token"), **args)


def test_exchange_code_public_client(canned: CannedServer) -> None:
    canned.add("POST", "/token", Canned(200, GOOD))
    tok = exchange_code(
        canned.url("/token"),
        code="CODE-SECRET",
        code_verifier="VERIFIER-SECRET",
        client_id="cid",
        client_secret=None,
        redirect_uri="http://127.0.0.1:1/cb",
        resource="https://mcp.example.com/mcp",
    )
    assert tok == TokenResponse("AT-SECRET", "Bearer", "RT-SECRET", 3600.0, ("a", "b"))
    no_secrets(repr(tok))
    sent = canned.requests[0]
    assert sent.form() == {
        "grant_type": "authorization_code",
        "code": "CODE-SECRET",
        "redirect_uri": "http://127.0.0.1:1/cb",
        "code_verifier": "VERIFIER-SECRET",
        "resource": "https://mcp.example.com/mcp",
        "client_id": "cid",
    }
    assert "authorization" not in sent.headers
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"


def test_refresh_confidential_client_uses_basic(canned: CannedServer) -> None:
    canned.add("POST", "/token", Canned(200, {"access_token": "AT2", "expires_in": "3599"}))
    tok = do_refresh(
        canned, client_id="c id", client_secret="CLIENT-SECRET", scopes=("a",), resource=None
    )
    assert (tok.access_token, tok.token_type, tok.refresh_token, tok.expires_in, tok.scope) == (
        "AT2",
        "Bearer",
        None,
        3599.0,
        None,
    )
    sent = canned.requests[0]
    assert sent.form() == {
        "grant_type": "refresh_token",
        "refresh_token": "RT-SECRET",
        "scope": "a",
    }
    scheme, value = sent.headers["authorization"].split(" ", 1)
    assert scheme == "Basic"
    assert base64.b64decode(value).decode() == "c+id:CLIENT-SECRET"


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (Canned(500, {"error": "server_error"}), "server"),
        (Canned(503, {}, {"Retry-After": "12"}), "server"),
        (Canned(429, ""), "server"),
        (
            Canned(400, {"error": "invalid_grant", "error_description": "refresh token revoked"}),
            "invalid_grant",
        ),
        (Canned(401, {"error": "invalid_client"}), "invalid_client"),
        (Canned(400, {"error": "unauthorized_client"}), "invalid_client"),
        (Canned(400, {"error": "invalid_scope"}), "protocol"),
        (Canned(400, {"error": "unsupported_grant_type"}), "protocol"),
        (Canned(403, "<html>forbidden</html>"), "protocol"),
        (Canned(200, {"error": "invalid_grant"}), "invalid_grant"),  # GitHub style
        (Canned(200, "<html>proxy</html>"), "protocol"),
        (Canned(200, ["AT-SECRET"]), "protocol"),
        (Canned(200, {"token_type": "Bearer", "expires_in": 3600}), "protocol"),
        (Canned(200, {"access_token": "", "expires_in": 3600}), "protocol"),
        (Canned(200, {**GOOD, "token_type": "mac"}), "protocol"),
        (Canned(200, {**GOOD, "token_type": "DPoP"}), "protocol"),
        (Canned(200, {**GOOD, "expires_in": -1}), "protocol"),
        (Canned(200, {**GOOD, "expires_in": 0}), "protocol"),
        (Canned(200, {**GOOD, "expires_in": "soon"}), "protocol"),
        (Canned(200, {**GOOD, "expires_in": "3599.9"}), "protocol"),
        (Canned(200, {**GOOD, "expires_in": "-5"}), "protocol"),
        (Canned(200, {**GOOD, "expires_in": "1e3"}), "protocol"),
        (Canned(200, {**GOOD, "expires_in": "NaN"}), "protocol"),
        (Canned(200, {**GOOD, "expires_in": float("inf")}), "protocol"),
        (Canned(200, {**GOOD, "expires_in": 1e12}), "protocol"),
        (Canned(200, {**GOOD, "expires_in": True}), "protocol"),
        (Canned(200, {**GOOD, "expires_in": [3600]}), "protocol"),
        (Canned(200, {**GOOD, "refresh_token": 5}), "protocol"),
        (Canned(200, {**GOOD, "scope": 5}), "protocol"),
        (Canned(302, b"", {"Location": "https://elsewhere.example.com/token"}), "protocol"),
    ],
)
def test_refresh_failures(canned: CannedServer, answer: Canned, kind: str) -> None:
    canned.add("POST", "/token", answer)
    with pytest.raises(OAuthError) as info:
        do_refresh(canned, client_secret="CLIENT-SECRET")
    err = info.value
    assert err.kind == kind
    assert err.message.startswith(f"token refresh at {canned.url('/token')}: ")
    no_secrets(err.message)
    no_secrets(repr(err))
    assert len(canned.requests) == 1  # no redirect followed


def test_invalid_grant_sentences(canned: CannedServer) -> None:
    canned.add("POST", "/token", Canned(400, {"error": "invalid_grant"}))
    with pytest.raises(OAuthError) as info:
        do_refresh(canned)
    assert (
        "the authorization server no longer accepts this refresh token — log in again"
        in info.value.message
    )
    assert info.value.permanent
    with pytest.raises(OAuthError) as info:
        exchange_code(
            canned.url("/token"),
            code="CODE-SECRET",
            code_verifier="VERIFIER-SECRET",
            client_id="cid",
            client_secret=None,
            redirect_uri="http://127.0.0.1:1/cb",
            resource=None,
        )
    assert info.value.kind == "invalid_grant"
    assert "authorization code" in info.value.message


def test_retry_after_is_carried(canned: CannedServer) -> None:
    canned.add("POST", "/token", Canned(503, {}, {"Retry-After": "12"}))
    with pytest.raises(OAuthError) as info:
        do_refresh(canned)
    assert info.value.retry_after == 12.0


@pytest.mark.parametrize(
    ("extra", "expires_in", "scope"),
    [
        ({}, None, None),
        ({"expires_in": 1.5}, 1.5, None),
        ({"expires_in": "60"}, 60.0, None),
        ({"expires_in": " 3599.0"}, 3599.0, None),
        ({"expires_in": None, "scope": ""}, None, ()),
        ({"scope": ["a", "b"]}, None, ("a", "b")),
        ({"expires_in": 10 * 365 * 86400}, 315360000.0, None),
    ],
)
def test_accepted_answers(
    canned: CannedServer, extra: dict[str, Any], expires_in: float | None, scope: Any
) -> None:
    canned.add("POST", "/token", Canned(200, {"access_token": "AT", **extra}))
    tok = do_refresh(canned)
    assert (tok.token_type, tok.expires_in, tok.scope) == ("Bearer", expires_in, scope)


def test_parse_token_response_directly(canned: CannedServer) -> None:
    canned.add("POST", "/token", Canned(200, GOOD))
    with requests.Session() as s:
        resp = s.post(canned.url("/token"), timeout=5)
    assert parse_token_response(resp, what="x").refresh_token == "RT-SECRET"


def test_network_and_insecure_endpoints() -> None:
    with pytest.raises(OAuthError) as info:
        refresh(
            refused_url("/token"),
            refresh_token="RT-SECRET",
            client_id="c",
            client_secret=None,
            resource=None,
        )
    assert info.value.kind == "network"
    with pytest.raises(OAuthError) as info:
        refresh(
            "http://as.example.com/token",
            refresh_token="RT-SECRET",
            client_id="c",
            client_secret=None,
            resource=None,
        )
    assert info.value.kind == "config"


def test_timeout_on_a_hanging_endpoint(
    canned: CannedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mcpproxy.oauth.http as oauth_http

    monkeypatch.setattr(oauth_http, "DEFAULT_TIMEOUT", (2.0, 0.3))
    canned.hang("POST", "/token")
    with pytest.raises(OAuthError) as info:
        do_refresh(canned)
    assert info.value.kind == "network"


def test_token_response_pickles_and_hides_secrets() -> None:
    tok = TokenResponse("AT-SECRET", "Bearer", "RT-SECRET", 60.0, ("a",))
    assert pickle.loads(pickle.dumps(tok)) == tok
    no_secrets(repr(tok))
    no_secrets(str(tok))


# -- what oauthlib reads, and the token bounds (issue 10 item 6, issue 16 item 4) --------------


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("ok\r\nX-Injected: 1", "characters outside the RFC 6750 §2.1 b64token set"),
        ("ok\n", "characters outside the RFC 6750 §2.1 b64token set"),
        ("two words", "characters outside the RFC 6750 §2.1 b64token set"),
        ('quote"d', "characters outside the RFC 6750 §2.1 b64token set"),
        ("caf\u00e9", "characters outside the RFC 6750 §2.1 b64token set"),
        ("=abc", "characters outside the RFC 6750 §2.1 b64token set"),
        ("ab=c", "characters outside the RFC 6750 §2.1 b64token set"),
        ("A" * (16 * 1024 + 1), "access_token is 16385 characters long (at most 16384)"),
    ],
)
def test_unusable_access_tokens_are_protocol_errors(
    canned: CannedServer, token: str, problem: str
) -> None:
    canned.add("POST", "/token", Canned(200, {**GOOD, "access_token": token}))
    with pytest.raises(OAuthError) as info:
        do_refresh(canned)
    assert info.value.kind == "protocol"
    assert problem in info.value.message
    assert token not in info.value.message and "RT-SECRET" not in info.value.message


@pytest.mark.parametrize(
    "token",
    [
        "A" * (16 * 1024),
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_",  # a JWT
        "abc+/~.-_==",
        "gho_16C7e42F292c6912E7710c838347Ae178B4a",
    ],
)
def test_rfc6750_access_tokens_are_accepted(canned: CannedServer, token: str) -> None:
    canned.add("POST", "/token", Canned(200, {**GOOD, "access_token": token}))
    assert do_refresh(canned).access_token == token


@pytest.mark.parametrize(
    ("token", "accepted"),
    [
        ("rt with spaces and !#$%&'()*+,/:;<=>?@[]^`{|}~", True),  # RFC 6749 A.17: VSCHAR
        ("R" * (16 * 1024), True),
        ("R" * (16 * 1024 + 1), False),
        ("rt\r\nX: 1", False),
        ("rt\x00", False),
        ("rt\u00e9", False),
    ],
)
def test_refresh_token_bounds(canned: CannedServer, token: str, accepted: bool) -> None:
    canned.add("POST", "/token", Canned(200, {**GOOD, "refresh_token": token}))
    if accepted:
        assert do_refresh(canned).refresh_token == token
        return
    with pytest.raises(OAuthError) as info:
        do_refresh(canned)
    assert info.value.kind == "protocol" and "refresh_token" in info.value.message
    assert token not in info.value.message


def test_an_oversized_token_answer_is_refused(canned: CannedServer) -> None:
    canned.add("POST", "/token", Canned(200, {**GOOD, "padding": "x" * (2 * 1024 * 1024)}))
    with pytest.raises(OAuthError) as info:
        do_refresh(canned)
    assert info.value.kind == "protocol"
    assert info.value.message == (
        f"token refresh at {canned.url('/token')}: the answer is larger than 1 MiB; refused (HTTP 200)"
    )


def test_an_oversized_error_answer_is_refused(canned: CannedServer) -> None:
    canned.add("POST", "/token", Canned(400, {"error": "invalid_grant", "x": "y" * (2 << 20)}))
    with pytest.raises(OAuthError) as info:
        do_refresh(canned)
    assert info.value.kind == "protocol"


@pytest.mark.parametrize(
    ("scope", "parsed"),
    [
        ("a b", ("a", "b")),
        ("  a   b  ", ("a", "b")),  # oauthlib splits on single spaces; the empty pieces go
        ("a,b c", ("a,b", "c")),  # RFC 6749 §3.3: a comma belongs to the scope token
        ("", ()),
        (["x", "y"], ("x", "y")),
        ([], ()),
    ],
)
def test_scope_parsing(canned: CannedServer, scope: Any, parsed: tuple[str, ...]) -> None:
    canned.add("POST", "/token", Canned(200, {**GOOD, "scope": scope}))
    assert do_refresh(canned).scope == parsed


def test_a_narrower_grant_is_reported_not_raised(canned: CannedServer) -> None:
    # requests-oauthlib would raise Warning("Scope has changed") unless OAUTHLIB_RELAX_TOKEN_SCOPE.
    canned.add("POST", "/token", Canned(200, {**GOOD, "scope": "a"}))
    assert do_refresh(canned, scopes=("a", "b")).scope == ("a",)
    assert canned.requests[0].form()["scope"] == "a b"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        # oauthlib reads `error` first: a 200 naming an error is that error, token or not.
        ({"error": "invalid_grant", "access_token": "AT"}, "invalid_grant"),
        ({"error": "unauthorized_client"}, "invalid_client"),
        ({"error": "invalid_client", "error_description": "bad\nline"}, "invalid_client"),
        ({"error": "slow_down"}, "protocol"),
        ({"error": 5}, "protocol"),
        ({"error": "bad\r\ncode"}, "protocol"),
    ],
)
def test_error_answers_with_200(canned: CannedServer, body: dict[str, Any], kind: str) -> None:
    canned.add("POST", "/token", Canned(200, body))
    with pytest.raises(OAuthError) as info:
        do_refresh(canned)
    assert info.value.kind == kind
    assert "\n" not in info.value.message and "\r" not in info.value.message


def test_the_form_oauthlib_builds_for_a_confidential_code_exchange(canned: CannedServer) -> None:
    canned.add("POST", "/token", Canned(200, GOOD))
    exchange_code(
        canned.url("/token"),
        code="CODE-SECRET",
        code_verifier="VERIFIER-SECRET",
        client_id="cid",
        client_secret="CLIENT-SECRET",
        redirect_uri="http://127.0.0.1:1/cb",
        resource=None,
    )
    sent = canned.requests[0]
    assert sent.form() == {
        "grant_type": "authorization_code",
        "code": "CODE-SECRET",
        "redirect_uri": "http://127.0.0.1:1/cb",
        "code_verifier": "VERIFIER-SECRET",
    }
    assert base64.b64decode(sent.headers["authorization"].split()[1]) == b"cid:CLIENT-SECRET"
    assert sent.headers["accept"] == "application/json"


def test_plain_http_to_loopback_needs_no_process_wide_switch(
    canned: CannedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    canned.add("POST", "/token", Canned(200, GOOD))
    assert do_refresh(canned).access_token == "AT-SECRET"
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ


# ---- provider habits in the compliance hooks (docs/providers.md) ------------------------------------


def test_a_form_encoded_answer_with_comma_scopes_is_read(canned: CannedServer) -> None:
    """GitHub without Accept: application/json: form-encoded, comma-separated scope, lowercase bearer."""
    body = "access_token=AT-SECRET&token_type=bearer&scope=repo%2Cgist&refresh_token=RT-SECRET&expires_in=28800"
    canned.add("POST", "/token", Canned(200, body.encode(), {"Content-Type": "application/x-www-form-urlencoded"}))
    tok = do_refresh(canned)
    assert tok == TokenResponse("AT-SECRET", "Bearer", "RT-SECRET", 28800.0, ("repo", "gist"))
    assert canned.requests[0].headers["accept"] == "application/json"


def test_a_form_encoded_error_with_200_is_classified_by_its_code(canned: CannedServer) -> None:
    body = b"error=bad_refresh_token&error_description=The+refresh+token+passed+is+incorrect+or+expired."
    canned.add("POST", "/token", Canned(200, body, {"Content-Type": "application/x-www-form-urlencoded"}))
    with pytest.raises(OAuthError) as info:
        do_refresh(canned)
    assert info.value.kind == "invalid_grant" and info.value.permanent
    assert "bad_refresh_token" in info.value.message


def jwt(claims: dict[str, Any]) -> str:
    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def test_without_expires_in_a_jwt_exp_is_the_lifetime_hint(canned: CannedServer) -> None:
    canned.add("POST", "/token", Canned(200, {"access_token": jwt({"exp": int(time.time()) + 600}),
                                              "token_type": "Bearer"}))
    tok = do_refresh(canned)
    assert tok.expires_from_jwt and tok.expires_in is not None and 590 < tok.expires_in <= 600


@pytest.mark.parametrize("token", ["opaque-token", jwt({"exp": 1}), jwt({"exp": "soon"}), jwt({"sub": "x"}),
                                   "a.b.c"])
def test_without_expires_in_or_a_usable_exp_the_expiry_is_unknown(canned: CannedServer, token: str) -> None:
    canned.add("POST", "/token", Canned(200, {"access_token": token, "token_type": "Bearer"}))
    tok = do_refresh(canned)
    assert tok.expires_in is None and not tok.expires_from_jwt


def test_client_secret_post_sends_the_secret_in_the_form_only(canned: CannedServer) -> None:
    canned.add("POST", "/token", Canned(200, GOOD))
    do_refresh(canned, client_secret="CLIENT-SECRET", auth_method="client_secret_post")
    sent = canned.requests[0]
    assert "authorization" not in sent.headers  # never two methods at once (RFC 6749 §2.3)
    assert sent.form()["client_id"] == "cid" and sent.form()["client_secret"] == "CLIENT-SECRET"


@pytest.mark.parametrize(("answer", "kind"), [
    (Canned(400, {"error": "invalid_request"}), "protocol"),
    (Canned(400, {"error": "unauthorized_client"}), "invalid_client"),
    (Canned(401, "<html>denied</html>", {"Content-Type": "text/html"}), "invalid_client"),
    (Canned(401, b""), "invalid_client"),
])
def test_refusals_a_glitch_could_explain_need_confirming(canned: CannedServer, answer: Canned, kind: str) -> None:
    canned.add("POST", "/token", answer)
    with pytest.raises(OAuthError) as info:
        do_refresh(canned)
    assert info.value.kind == kind and info.value.confirm and not info.value.permanent
    assert pickle.loads(pickle.dumps(info.value)).confirm
