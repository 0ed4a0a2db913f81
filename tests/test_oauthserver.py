"""The test authorization server, through real HTTP against its subprocess."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.oauthserver import OAuthServerHandle, pkce_pair, start_oauth_server
from tests.oauthserver.control import OAuthServerError

REDIRECT = "http://127.0.0.1:9/oauth/callback"
RESOURCE = "http://127.0.0.1:9/mcp/alpha"
HTTP_TIMEOUT = 10


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(interval)


@pytest.fixture(scope="module")
def server() -> Iterator[OAuthServerHandle]:
    with start_oauth_server() as handle:
        yield handle


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> None:
    if "server" in request.fixturenames:
        handle: OAuthServerHandle = request.getfixturevalue("server")
        handle.clear_fault()
        handle.set_config(access_ttl=3600, refresh_ttl=86400, rotate=True, auto_approve=True, habits=[],
                          default_audience=None, fixed_redirect_uri=None)


@pytest.fixture
def client(server: OAuthServerHandle) -> dict[str, Any]:
    return server.register_client([REDIRECT], client_name="test client")


def post_token(server: OAuthServerHandle, data: dict[str, str],
               auth: tuple[str, str] | None = None) -> requests.Response:
    return requests.post(server.url("/token"), data=data, auth=auth, timeout=HTTP_TIMEOUT)


def refresh(server: OAuthServerHandle, client_id: str, refresh_token: str,
            **extra: str) -> requests.Response:
    return post_token(server, {"grant_type": "refresh_token", "refresh_token": refresh_token,
                               "client_id": client_id, **extra})


def authorize(server: OAuthServerHandle, client_id: str, challenge: str,
              **extra: str) -> requests.Response:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
              "code_challenge": challenge, "code_challenge_method": "S256", "state": "st-1",
              **extra}
    return requests.get(server.url("/authorize"), params=params, allow_redirects=False,
                        timeout=HTTP_TIMEOUT)


def redirect_query(resp: requests.Response) -> dict[str, str]:
    assert resp.status_code == 302, resp.text
    location = resp.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_metadata(server: OAuthServerHandle) -> None:
    meta = requests.get(server.metadata_url, timeout=HTTP_TIMEOUT).json()
    assert meta["issuer"] == server.base_url and not meta["issuer"].endswith("/")
    assert meta["token_endpoint"] == server.base_url + "/token"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert meta["scopes_supported"] == ["mcp:read", "mcp:write"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    oidc = requests.get(server.url("/.well-known/openid-configuration"), timeout=HTTP_TIMEOUT)
    assert oidc.json() == meta


def test_registration(server: OAuthServerHandle) -> None:
    public = server.register_client([REDIRECT], client_name="x")
    assert public["client_id"] and "client_secret" not in public
    assert public["client_name"] == "x" and public["redirect_uris"] == [REDIRECT]
    confidential = server.register_client([REDIRECT], "client_secret_post")
    assert confidential["client_secret"]
    bad = requests.post(server.url("/register"), json={"client_name": "no uris"},
                        timeout=HTTP_TIMEOUT)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_redirect_uri"


def test_full_pkce_code_flow(server: OAuthServerHandle, client: dict[str, Any]) -> None:
    verifier, challenge = pkce_pair()
    query = redirect_query(authorize(server, client["client_id"], challenge, resource=RESOURCE,
                                     scope="mcp:read"))
    assert query["state"] == "st-1" and query["iss"] == server.base_url
    form = {"grant_type": "authorization_code", "code": query["code"], "redirect_uri": REDIRECT,
            "code_verifier": verifier, "client_id": client["client_id"], "resource": RESOURCE}
    resp = post_token(server, form)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "mcp:read" and body["access_token"] and body["refresh_token"]
    info = requests.post(server.url("/introspect"), data={"token": body["access_token"]},
                         timeout=HTTP_TIMEOUT).json()
    assert info["active"] is True and info["aud"] == RESOURCE
    assert info["client_id"] == client["client_id"] and info["scope"] == "mcp:read"
    again = post_token(server, form)  # codes are single use
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_pkce_required_and_checked(server: OAuthServerHandle, client: dict[str, Any]) -> None:
    verifier, challenge = pkce_pair()
    no_pkce = requests.get(server.url("/authorize"), allow_redirects=False, timeout=HTTP_TIMEOUT,
                           params={"response_type": "code", "client_id": client["client_id"],
                                   "redirect_uri": REDIRECT})
    assert no_pkce.status_code == 400
    plain = authorize(server, client["client_id"], challenge, code_challenge_method="plain")
    assert plain.status_code == 400
    wrong_uri = authorize(server, client["client_id"], challenge,
                          redirect_uri="http://127.0.0.1:9/evil")
    assert wrong_uri.status_code == 400
    code = redirect_query(authorize(server, client["client_id"], challenge))["code"]
    other_verifier, _ = pkce_pair()
    resp = post_token(server, {"grant_type": "authorization_code", "code": code,
                               "redirect_uri": REDIRECT, "code_verifier": other_verifier,
                               "client_id": client["client_id"]})
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant" and resp.json()["error_description"]


def test_confidential_client_auth(server: OAuthServerHandle) -> None:
    server.add_client("conf-1", "s3cret-value", [REDIRECT])
    tokens = server.login("conf-1", REDIRECT, client_secret="s3cret-value")
    ok = post_token(server, {"grant_type": "refresh_token",
                             "refresh_token": tokens["refresh_token"]},
                    auth=("conf-1", "s3cret-value"))
    assert ok.status_code == 200
    post = post_token(server, {"grant_type": "refresh_token",
                               "refresh_token": ok.json()["refresh_token"],
                               "client_id": "conf-1", "client_secret": "s3cret-value"})
    assert post.status_code == 200
    wrong = post_token(server, {"grant_type": "refresh_token",
                                "refresh_token": post.json()["refresh_token"]},
                       auth=("conf-1", "wrong"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    missing = refresh(server, "conf-1", post.json()["refresh_token"])
    assert missing.status_code == 401
    server.add_client("conf-2", "p+l/us%", [REDIRECT])  # Basic with and without form-encoding
    tokens = server.login("conf-2", REDIRECT, client_secret="p+l/us%")
    encoded = ("conf-2", "p%2Bl%2Fus%25")
    ok = post_token(server, {"grant_type": "refresh_token",
                             "refresh_token": tokens["refresh_token"]}, auth=encoded)
    assert ok.status_code == 200, ok.text


def test_refresh_rotation(server: OAuthServerHandle, client: dict[str, Any]) -> None:
    tokens = server.login(client["client_id"], REDIRECT, resource=RESOURCE)
    first = refresh(server, client["client_id"], tokens["refresh_token"])
    assert first.status_code == 200
    new = first.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    reuse = refresh(server, client["client_id"], tokens["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    narrowed = refresh(server, client["client_id"], new["refresh_token"], scope="mcp:read")
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "mcp:read"
    wider = refresh(server, client["client_id"], narrowed.json()["refresh_token"],
                    scope="mcp:admin")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"


def test_cli_flags_no_rotate_consent_no_pkce_metadata() -> None:
    with start_oauth_server(rotate=False, consent=True, pkce_metadata=False,
                            scopes="a b", access_ttl=2.5) as srv:
        meta = requests.get(srv.metadata_url, timeout=HTTP_TIMEOUT).json()
        assert "code_challenge_methods_supported" not in meta
        assert meta["scopes_supported"] == ["a", "b"]
        cid = srv.register_client([REDIRECT])["client_id"]
        verifier, challenge = pkce_pair()
        page = authorize(srv, cid, challenge)
        assert page.status_code == 200 and "Approve" in page.text and "Deny" in page.text
        request_id = page.text.split('name="request_id" value="')[1].split('"')[0]
        approved = requests.post(srv.url("/authorize/approve"), data={"request_id": request_id},
                                 allow_redirects=False, timeout=HTTP_TIMEOUT)
        code = redirect_query(approved)["code"]
        tokens = post_token(srv, {"grant_type": "authorization_code", "code": code,
                                  "redirect_uri": REDIRECT, "code_verifier": verifier,
                                  "client_id": cid}).json()
        assert tokens["expires_in"] == 2.5
        for _ in range(2):  # no rotation: the same refresh token keeps working
            resp = refresh(srv, cid, tokens["refresh_token"])
            assert resp.status_code == 200 and "refresh_token" not in resp.json()
        page = authorize(srv, cid, challenge)
        request_id = page.text.split('name="request_id" value="')[1].split('"')[0]
        denied = requests.post(srv.url("/authorize/deny"), data={"request_id": request_id},
                               allow_redirects=False, timeout=HTTP_TIMEOUT)
        assert redirect_query(denied)["error"] == "access_denied"


FAULTS = [
    ("500", 500, "server_error"),
    ("503", 503, "temporarily_unavailable"),
    ("429", 429, "temporarily_unavailable"),
    ("invalid_grant", 400, "invalid_grant"),
    ("invalid_client", 401, "invalid_client"),
    ("lost", 502, None),
    ("malformed_no_access_token", 200, None),
    ("malformed_not_json", 200, None),
    ("malformed_negative_expires", 200, None),
    ("malformed_string_expires", 200, None),
    ("malformed_huge_expires", 200, None),
    ("malformed_crlf_token", 200, None),
    ("malformed_huge_token", 200, None),
    ("oversized_answer", 200, None),
]


@pytest.mark.parametrize(("mode", "status", "error"), FAULTS)
def test_fault_modes(server: OAuthServerHandle, client: dict[str, Any], mode: str, status: int,
                     error: str | None) -> None:
    tokens = server.login(client["client_id"], REDIRECT)
    server.set_fault(mode, count=1, retry_after=7)
    resp = refresh(server, client["client_id"], tokens["refresh_token"])
    assert resp.status_code == status
    if error is not None:
        assert resp.json()["error"] == error
    if mode in ("503", "429"):
        assert resp.headers["Retry-After"] == "7"
    if mode == "malformed_not_json":
        with pytest.raises(ValueError):
            resp.json()
    elif mode == "malformed_no_access_token":
        assert "access_token" not in resp.json()
    elif mode == "malformed_crlf_token":
        assert "\r\n" in resp.json()["access_token"]
    elif mode == "malformed_huge_token":
        assert len(resp.json()["access_token"]) > 16 * 1024
    elif mode == "oversized_answer":
        assert len(resp.content) > 2 * 1024 * 1024
    elif mode.startswith("malformed_"):
        expected = {"malformed_negative_expires": lambda v: v < 0,
                    "malformed_string_expires": lambda v: v == "soon",
                    "malformed_huge_expires": lambda v: v >= 1e12}[mode]
        assert expected(resp.json()["expires_in"]) and "refresh_token" not in resp.json()
    after = refresh(server, client["client_id"], tokens["refresh_token"])  # count=1: fault gone
    if mode == "lost":  # the refresh really happened: the old refresh token is spent
        assert after.status_code == 400 and after.json()["error"] == "invalid_grant"
    else:
        assert after.status_code == 200, after.text
    assert server.counters()["refresh_log"][-2]["result"] == mode


def test_fault_filters_and_count(server: OAuthServerHandle, client: dict[str, Any]) -> None:
    a = server.login(client["client_id"], REDIRECT, resource=RESOURCE)
    b = server.login(client["client_id"], REDIRECT, resource="http://127.0.0.1:9/mcp/beta")
    server.set_fault("503", count=2, resource=RESOURCE)
    assert refresh(server, client["client_id"], b["refresh_token"]).status_code == 200
    assert refresh(server, client["client_id"], a["refresh_token"]).status_code == 503
    assert refresh(server, client["client_id"], a["refresh_token"]).status_code == 503
    assert refresh(server, client["client_id"], a["refresh_token"]).status_code == 200
    server.set_fault("500")  # grant_types defaults to refresh_token only
    assert server.login(client["client_id"], REDIRECT)["access_token"]
    server.set_fault("500", grant_types=["authorization_code"])
    with pytest.raises(RuntimeError):
        server.login(client["client_id"], REDIRECT)
    assert server.fault()["mode"] == "500"  # count=None: stays until cleared
    server.clear_fault()
    bad = requests.post(server.url("/_test/fault"), json={"mode": "nope"}, timeout=HTTP_TIMEOUT)
    assert bad.status_code == 400


def test_hang_does_not_block_other_requests(server: OAuthServerHandle,
                                            client: dict[str, Any]) -> None:
    tokens = server.login(client["client_id"], REDIRECT)
    server.set_fault("hang", count=1, hang_seconds=3)
    results: list[int] = []
    started = time.monotonic()
    worker = threading.Thread(target=lambda: results.append(
        refresh(server, client["client_id"], tokens["refresh_token"]).status_code))
    worker.start()
    wait_for(lambda: any(e["result"] == "hang" for e in server.counters()["refresh_log"]))
    meta = requests.get(server.metadata_url, timeout=HTTP_TIMEOUT)  # served meanwhile
    assert meta.status_code == 200 and not results
    worker.join(timeout=HTTP_TIMEOUT)
    assert results == [504] and time.monotonic() - started >= 2.9
    # The hang changed nothing: the refresh token still works.
    assert refresh(server, client["client_id"], tokens["refresh_token"]).status_code == 200


def test_revocation(server: OAuthServerHandle, client: dict[str, Any]) -> None:
    cid = client["client_id"]
    tokens = server.login(cid, REDIRECT)
    revoke = requests.post(server.url("/revoke"), timeout=HTTP_TIMEOUT,
                           data={"token": tokens["refresh_token"], "client_id": cid,
                                 "token_type_hint": "refresh_token"})
    assert revoke.status_code == 200
    assert refresh(server, cid, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    info = requests.post(server.url("/introspect"), data={"token": tokens["access_token"]},
                         timeout=HTTP_TIMEOUT).json()
    assert info == {"active": False, "reason": "revoked"}
    unknown = requests.post(server.url("/revoke"), data={"token": "nope", "client_id": cid},
                            timeout=HTTP_TIMEOUT)
    assert unknown.status_code == 200


def test_introspection_expiry_and_refresh_ttl(server: OAuthServerHandle,
                                              client: dict[str, Any]) -> None:
    server.set_config(access_ttl=2, refresh_ttl=2.5)
    tokens = server.login(client["client_id"], REDIRECT)
    assert tokens["expires_in"] == 2

    def introspect() -> dict[str, Any]:
        return dict(requests.post(server.url("/introspect"), data={"token": tokens["access_token"]},
                                  timeout=HTTP_TIMEOUT).json())

    assert introspect()["active"] is True
    wait_for(lambda: not introspect()["active"])
    assert introspect()["reason"] == "expired"
    wait_for(lambda: refresh(server, client["client_id"], tokens["refresh_token"]).status_code
             == 400)
    unknown = requests.post(server.url("/introspect"), data={"token": "x"}, timeout=HTTP_TIMEOUT)
    assert unknown.json() == {"active": False, "reason": "unknown"}


def test_invalidate_refresh_tokens(server: OAuthServerHandle, client: dict[str, Any]) -> None:
    tokens = server.login(client["client_id"], REDIRECT)
    server.invalidate_refresh_tokens()
    resp = refresh(server, client["client_id"], tokens["refresh_token"])
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    assert not any(g["active_refresh"] for g in server.grants())


def test_counters_and_refresh_log(server: OAuthServerHandle, client: dict[str, Any]) -> None:
    tokens = server.login(client["client_id"], REDIRECT, resource=RESOURCE)
    server.reset_counters()
    before = server.grants()[-1]
    ok = refresh(server, client["client_id"], tokens["refresh_token"])
    server.set_fault("503", count=1)
    refresh(server, client["client_id"], ok.json()["refresh_token"])
    requests.post(server.url("/introspect"), data={"token": "x"}, timeout=HTTP_TIMEOUT)
    c = server.counters()
    assert c["token_requests"] == 2 and c["failed"] == 1 and c["introspections"] == 1
    assert c["grants"] == {"authorization_code": 0, "refresh_token": 2}
    first, second = c["refresh_log"]
    assert first["result"] == "ok" and second["result"] == "503"
    assert first["resource"] == RESOURCE and first["client_id"] == client["client_id"]
    assert first["prev_issued_at"] == before["last_issued_at"]
    assert first["prev_expires_at"] == before["last_expires_at"]
    assert second["prev_issued_at"] > first["prev_issued_at"]
    assert second["at"] >= first["at"]
    issued = server.issued()
    assert tokens["access_token"] in issued["access_tokens"]
    assert ok.json()["refresh_token"] in issued["refresh_tokens"]
    server.reset_counters()
    assert server.counters()["refresh_log"] == []


def test_stop_is_prompt_while_hanging() -> None:
    srv = start_oauth_server()
    try:
        cid = srv.register_client([REDIRECT])["client_id"]
        tokens = srv.login(cid, REDIRECT)
        srv.set_fault("hang", hang_seconds=60)
        threading.Thread(target=lambda: _quiet(lambda: refresh(srv, cid, tokens["refresh_token"])),
                         daemon=True).start()
        wait_for(lambda: bool(srv.counters()["refresh_log"]))
    finally:
        started = time.monotonic()
        srv.stop()
    assert srv.returncode == 0 and time.monotonic() - started < 4
    assert repr(srv).startswith("OAuthServerHandle(")


def _quiet(call: Callable[[], object]) -> None:
    try:
        call()
    except requests.RequestException:
        pass


# ---- provider habits (README.md "Habits") -----------------------------------------------------------


def test_habit_flag_issuer_with_path_and_no_registration() -> None:
    with start_oauth_server(habits=("issuer_with_path", "no_registration_endpoint")) as srv:
        assert srv.config()["habits"] == ["issuer_with_path", "no_registration_endpoint"]
        assert requests.get(srv.metadata_url, timeout=HTTP_TIMEOUT).status_code == 404
        meta = requests.get(srv.url("/.well-known/oauth-authorization-server/tenant"), timeout=HTTP_TIMEOUT).json()
        assert meta["issuer"] == srv.base_url + "/tenant" and "registration_endpoint" not in meta
        assert requests.get(srv.url("/.well-known/openid-configuration/tenant"), timeout=HTTP_TIMEOUT).ok
        assert requests.post(srv.url("/register"), json={"redirect_uris": [REDIRECT]},
                             timeout=HTTP_TIMEOUT).status_code == 404
        with pytest.raises(Exception, match="habits must be a list"):
            srv.set_habits("no_such_habit")


def test_metadata_habits(server: OAuthServerHandle) -> None:
    def meta(path: str = "/.well-known/oauth-authorization-server") -> requests.Response:
        return requests.get(server.url(path), timeout=HTTP_TIMEOUT)

    server.set_habits("openid_configuration_only", "no_pkce_metadata")
    assert meta().status_code == 404
    assert "code_challenge_methods_supported" not in meta("/.well-known/openid-configuration").json()
    server.set_habits("issuer_trailing_slash")
    assert meta().json()["issuer"] == server.base_url + "/"
    server.set_habits("issuer_mismatch")
    assert meta().json()["issuer"] == server.base_url + "/someone-else"


def test_forgotten_clients_and_how_each_habit_says_so(server: OAuthServerHandle, client: dict[str, Any]) -> None:
    tokens = server.login(client["client_id"], REDIRECT)
    server.forget_clients()
    r = refresh(server, client["client_id"], tokens["refresh_token"])
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    server.set_habits("unrecognized_client_422")
    r = refresh(server, client["client_id"], tokens["refresh_token"])
    assert r.status_code == 422 and r.json() == {"message": "Unrecognized client_id"}
    _, challenge = pkce_pair()
    page = authorize(server, client["client_id"], challenge)
    assert page.status_code == 422 and "Unrecognized client_id" in page.text
    server.set_habits("unknown_client_html_500")
    r = refresh(server, client["client_id"], tokens["refresh_token"])
    assert r.status_code == 500 and r.headers["Content-Type"].startswith("text/html")
    assert [e["result"] for e in server.counters()["refresh_log"]][-3:] == [
        "invalid_client", "unrecognized_client", "html_500"]


def test_resource_refused_and_default_audience(server: OAuthServerHandle, client: dict[str, Any]) -> None:
    server.set_config(habits=["resource_refused_invalid_target"], default_audience=RESOURCE)
    _, challenge = pkce_pair()
    redirect = authorize(server, client["client_id"], challenge, resource=RESOURCE)
    query = parse_qs(urlsplit(redirect.headers["Location"]).query)
    assert query["error"] == ["invalid_target"] and "AADSTS9010010" in query["error_description"][0]
    tokens = server.login(client["client_id"], REDIRECT)  # no resource: the audience is the default one
    assert requests.post(server.url("/introspect"), data={"token": tokens["access_token"]},
                         timeout=HTTP_TIMEOUT).json()["aud"] == RESOURCE
    r = refresh(server, client["client_id"], tokens["refresh_token"], resource=RESOURCE)
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"


def test_fixed_redirect_uri_habit(server: OAuthServerHandle) -> None:
    server.set_config(habits=["fixed_redirect_uri"], fixed_redirect_uri="http://localhost:3118/callback")
    r = requests.post(server.url("/register"), json={"redirect_uris": [REDIRECT]}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 400 and r.json()["error"] == "invalid_redirect_uri"
    assert server.register_client(["http://localhost:3118/callback"])["client_id"]


def test_habits_from_the_command_line_and_the_control_api() -> None:
    """--habit NAME (repeatable) and POST /_test/config {"habits": [...]}; an unknown habit is refused."""
    with start_oauth_server(habits=("form_encoded_answers", "string_expires_in")) as srv:
        assert srv.config()["habits"] == ["form_encoded_answers", "string_expires_in"]
        cid = srv.register_client([REDIRECT])["client_id"]
        verifier, challenge = pkce_pair()
        code = redirect_query(authorize(srv, cid, challenge))["code"]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                "code_verifier": verifier, "client_id": cid}
        # GitHub's shape: form-encoded to a client that does not ask for JSON.
        resp = requests.post(srv.url("/token"), data=form, headers={"Accept": "*/*"}, timeout=HTTP_TIMEOUT)
        answer = dict(parse_qs(resp.text))
        assert resp.headers["Content-Type"].startswith("application/x-www-form-urlencoded"), resp.text
        assert answer["token_type"] == ["bearer"] and answer["expires_in"] == ["3600"]
        assert srv.counters()["answered"] == {"json": 0, "form": 1, "html": 0}
        srv.set_habits("errors_with_200")
        resp = refresh(srv, cid, "no-such-refresh-token")
        assert resp.status_code == 200 and resp.json()["error"] == "bad_refresh_token"
        with pytest.raises(OAuthServerError, match="habits must be a list"):
            srv.set_habits("no_such_habit")
        srv.set_habits()
        assert srv.config()["habits"] == []
