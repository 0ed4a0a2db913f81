"""The OAuth functions end to end against the project's test authorization and MCP servers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

import mcpproxy.oauth.http as oauth_http
from mcpproxy.oauth.authorize import authorization_request, check_callback_iss
from mcpproxy.oauth.discovery import Discovery, canonical_resource, discover
from mcpproxy.oauth.errors import OAuthError
from mcpproxy.oauth.pkce import new_state, new_verifier, s256_challenge
from mcpproxy.oauth.registration import ClientRegistration, register_client
from mcpproxy.oauth.revocation import revoke
from mcpproxy.oauth.tokens import TokenResponse, exchange_code, refresh
from tests.mcpserver.control import MCPServerHandle, start_mcp_server
from tests.oauthserver.control import OAuthServerHandle, start_oauth_server

REDIRECT = "http://127.0.0.1:9/oauth/callback"


@pytest.fixture(scope="module")
def auth() -> Iterator[OAuthServerHandle]:
    handle = start_oauth_server()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def mcp(auth: OAuthServerHandle) -> Iterator[MCPServerHandle]:
    handle = start_mcp_server(auth.base_url, scopes="mcp:read mcp:write")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    s = oauth_http.new_session()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(autouse=True)
def no_fault(auth: OAuthServerHandle) -> Iterator[None]:
    auth.clear_fault()
    yield
    auth.clear_fault()


@dataclass
class Login:
    discovery: Discovery
    client: ClientRegistration
    tokens: TokenResponse


def login(
    mcp: MCPServerHandle, session: requests.Session, client_secret: str | None = None
) -> Login:
    d = discover(mcp.url, session)
    client = register_client(d.metadata, REDIRECT, scopes=d.scopes, session=session)
    verifier, state = new_verifier(), new_state()
    url = authorization_request(
        d.metadata,
        client_id=client.client_id,
        redirect_uri=REDIRECT,
        scopes=d.scopes,
        state=state,
        code_challenge=s256_challenge(verifier),
        resource=d.resource,
    ).url()
    answer = session.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["state"] == state
    check_callback_iss(d.metadata, query.get("iss"))
    tokens = exchange_code(
        d.metadata.token_endpoint,
        code=query["code"],
        code_verifier=verifier,
        client_id=client.client_id,
        client_secret=client.client_secret,
        redirect_uri=REDIRECT,
        resource=d.resource,
        session=session,
    )
    return Login(d, client, tokens)


def do_refresh(
    lg: Login, session: requests.Session, refresh_token: str | None = None
) -> TokenResponse:
    rt = refresh_token or lg.tokens.refresh_token
    assert rt is not None
    return refresh(
        lg.discovery.metadata.token_endpoint,
        refresh_token=rt,
        client_id=lg.client.client_id,
        client_secret=lg.client.client_secret,
        resource=lg.discovery.resource,
        session=session,
    )


def mcp_accepts(mcp: MCPServerHandle, access_token: str) -> int:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    headers = {
        "Authorization": f"Bearer {access_token}",
        "Accept": "application/json, text/event-stream",
    }
    with requests.post(mcp.url, json=body, headers=headers, timeout=10, stream=True) as resp:
        return resp.status_code


def test_discovery_of_the_test_servers(auth: OAuthServerHandle, mcp: MCPServerHandle) -> None:
    d = discover(mcp.url)
    assert d.resource == canonical_resource(mcp.url)
    assert d.metadata.issuer == auth.issuer
    assert d.metadata.token_endpoint == auth.url("/token")
    assert d.metadata.revocation_endpoint == auth.url("/revoke")
    assert d.metadata.registration_endpoint == auth.url("/register")
    assert "S256" in d.metadata.code_challenge_methods_supported
    assert d.metadata.iss_parameter_supported
    assert d.scopes  # from the challenge or the PRM


def test_full_flow_with_rotation_and_revocation(
    auth: OAuthServerHandle, mcp: MCPServerHandle, session: requests.Session
) -> None:
    lg = login(mcp, session)
    first = lg.tokens
    assert first.token_type == "Bearer"
    assert first.expires_in is not None and first.expires_in > 0
    assert first.refresh_token
    assert mcp_accepts(mcp, first.access_token) == 200

    second = do_refresh(lg, session)
    assert second.access_token != first.access_token
    assert second.refresh_token and second.refresh_token != first.refresh_token
    assert mcp_accepts(mcp, second.access_token) == 200

    with pytest.raises(OAuthError) as info:  # rotation killed the old refresh token
        do_refresh(lg, session, first.refresh_token)
    assert info.value.kind == "invalid_grant"
    assert "log in again" in info.value.message

    revocation_endpoint = lg.discovery.metadata.revocation_endpoint
    assert revocation_endpoint is not None
    lg2 = login(mcp, session)
    assert lg2.tokens.refresh_token
    revoke(
        revocation_endpoint,
        token=lg2.tokens.refresh_token,
        token_type_hint="refresh_token",
        client_id=lg2.client.client_id,
        client_secret=None,
        session=session,
    )
    with pytest.raises(OAuthError) as info:
        do_refresh(lg2, session)
    assert info.value.kind == "invalid_grant"
    # RFC 7009 §2.2: revoking an unknown or revoked token is fine too.
    revoke(
        revocation_endpoint,
        token="not-a-token",
        token_type_hint="access_token",
        client_id=lg2.client.client_id,
        client_secret=None,
        session=session,
    )


def test_confidential_client(
    auth: OAuthServerHandle, mcp: MCPServerHandle, session: requests.Session
) -> None:
    d = discover(mcp.url, session)
    reg = auth.register_client([REDIRECT], token_endpoint_auth_method="client_secret_basic")
    client = ClientRegistration(reg["client_id"], reg["client_secret"], auth.issuer, REDIRECT)
    answer = auth.login(
        client.client_id, REDIRECT, client_secret=client.client_secret, resource=d.resource
    )
    tokens = TokenResponse(answer["access_token"], "Bearer", answer["refresh_token"], None, None)
    assert do_refresh(Login(d, client, tokens), session).refresh_token  # client_secret_basic
    wrong = ClientRegistration(client.client_id, "wrong", auth.issuer, REDIRECT)
    with pytest.raises(OAuthError) as info:
        do_refresh(Login(d, wrong, tokens), session)
    assert info.value.kind == "invalid_client"


@pytest.mark.parametrize(
    ("mode", "kind", "retry_after"),
    [
        ("500", "server", None),
        ("503", "server", 2.0),
        ("429", "server", 3.0),
        ("lost", "server", None),
        ("invalid_grant", "invalid_grant", None),
        ("invalid_client", "invalid_client", None),
        ("malformed_no_access_token", "protocol", None),
        ("malformed_not_json", "protocol", None),
        ("malformed_negative_expires", "protocol", None),
        ("malformed_string_expires", "protocol", None),
        ("malformed_huge_expires", "protocol", None),
        ("malformed_crlf_token", "protocol", None),
        ("malformed_huge_token", "protocol", None),
        ("oversized_answer", "protocol", None),
    ],
)
def test_refresh_fault_modes(
    auth: OAuthServerHandle,
    mcp: MCPServerHandle,
    session: requests.Session,
    mode: str,
    kind: str,
    retry_after: float | None,
) -> None:
    lg = login(mcp, session)
    if retry_after is None:
        auth.set_fault(mode, count=1)
    else:
        auth.set_fault(mode, count=1, retry_after=retry_after)
    with pytest.raises(OAuthError) as info:
        do_refresh(lg, session)
    err = info.value
    assert err.kind == kind
    assert err.retry_after == retry_after
    assert err.message.startswith(f"token refresh at {auth.url('/token')}: ")
    for secret in (lg.tokens.access_token, lg.tokens.refresh_token):
        assert secret and secret not in err.message and secret not in repr(err)
    if mode not in ("lost",):  # "lost" rotated the refresh token away: the answer was lost
        assert do_refresh(lg, session).access_token  # one-shot fault: the next refresh works


def test_hanging_token_endpoint_is_network(
    auth: OAuthServerHandle,
    mcp: MCPServerHandle,
    session: requests.Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lg = login(mcp, session)
    monkeypatch.setattr(oauth_http, "DEFAULT_TIMEOUT", (5.0, 0.5))
    auth.set_fault("hang", count=1, hang_seconds=3)
    with pytest.raises(OAuthError) as info:
        do_refresh(lg, session)
    assert info.value.kind == "network"
    assert "no answer in time" in info.value.message


def test_code_exchange_fault(
    auth: OAuthServerHandle, mcp: MCPServerHandle, session: requests.Session
) -> None:
    auth.set_fault("invalid_grant", count=1, grant_types=["authorization_code"])
    with pytest.raises(OAuthError) as info:
        login(mcp, session)
    assert info.value.kind == "invalid_grant"
    assert info.value.message.startswith(f"code exchange at {auth.url('/token')}: ")


def test_refuses_a_server_without_pkce_metadata(session: requests.Session) -> None:
    with start_oauth_server(pkce_metadata=False) as bare, start_mcp_server(bare.base_url) as server:
        d = discover(server.url, session)
        assert d.metadata.code_challenge_methods_supported == ()
        with pytest.raises(OAuthError) as info:
            authorization_request(
                d.metadata,
                client_id="c",
                redirect_uri=REDIRECT,
                scopes=(),
                state=new_state(),
                code_challenge=s256_challenge(new_verifier()),
                resource=d.resource,
            ).url()
        assert info.value.kind == "config"


_DEBUG_RUN = """
import logging, sys
from pathlib import Path
from mcpproxy.logs import setup_logging
from mcpproxy.oauth.revocation import revoke
import mcpproxy.oauth.http as oauth_http
from tests.oauth.test_integration import login, do_refresh

class Handle:  # what login() needs of an MCPServerHandle
    url = sys.argv[1]

setup_logging("DEBUG", "text", Path(sys.argv[2]))
logging.getLogger("mcpproxy.test").debug("DEBUG-IS-ON")
s = oauth_http.new_session()
lg = login(Handle(), s)
new = do_refresh(lg, s)
# What requests-oauthlib and oauthlib do with a token at DEBUG (oauth2_session.fetch_token).
logging.getLogger("requests_oauthlib.oauth2_session").debug("Obtained token %s.", new.access_token)
logging.getLogger("oauthlib.oauth2.rfc6749").debug("token %s", new.refresh_token)
revoke(lg.discovery.metadata.revocation_endpoint, token=new.refresh_token,
       token_type_hint="refresh_token", client_id=lg.client.client_id,
       client_secret=lg.client.client_secret, session=s)
"""


def test_a_debug_level_run_logs_no_token(
    auth: OAuthServerHandle, mcp: MCPServerHandle, tmp_path: Path
) -> None:
    log_file = tmp_path / "mcpproxy.log"
    run = subprocess.run(
        [sys.executable, "-c", _DEBUG_RUN, mcp.url, str(log_file)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    logged = log_file.read_text() + run.stderr + run.stdout
    assert "DEBUG-IS-ON" in logged  # the run really logged at DEBUG
    issued = auth.issued()
    secrets = [
        x
        for key in ("access_tokens", "refresh_tokens", "codes", "client_secrets")
        for x in issued[key]
    ]
    assert len(issued["access_tokens"]) >= 2 and len(issued["refresh_tokens"]) >= 2
    for secret in secrets:
        assert secret not in logged
