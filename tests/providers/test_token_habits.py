"""The token endpoint's habits of real providers (issue 11 cases 1–7, 13, 14), each through the real
service: log in, at least two refreshes, a tool call through `/mcp/NAME`, and the outcome docs/providers.md
promises. The habits are modes of the test authorization server (tests/oauthserver/README.md "Habits").
"""

from __future__ import annotations

import time

from tests.conftest import ServiceFactory
from tests.harness import wait_until
from tests.mcpserver.control import MCPServerHandle
from tests.oauthserver.control import OAuthServerHandle
from tests.providers import (
    call_tool,
    one_server,
    refresh_attempts_stay,
    refresh_results,
    refreshed,
    wait_past_expiry,
)

# ---- 1, 2, 3: the shape of token answers ---------------------------------------------------------


def test_form_encoded_token_answer_github(service_factory: ServiceFactory, mcp_server: MCPServerHandle,
                                          auth_server: OAuthServerHandle) -> None:
    """Form-encoded unless Accept: application/json, comma-separated scopes, lowercase `bearer`: mcpproxy
    asks for JSON, and reads the form-encoded answer too when a server sends it anyway."""
    auth_server.set_habits("form_encoded_answers")
    svc = service_factory(one_server(mcp_server.url, "gh", scopes=["mcp:read", "mcp:write"]))
    svc.login("gh")
    st = refreshed(svc, "gh", 2)
    assert call_tool(svc, "gh")
    answered = auth_server.counters()["answered"]
    assert answered["json"] >= 3 and answered["form"] == 0, answered  # it asked for JSON every time
    assert sorted(st["scopes"]) == ["mcp:read", "mcp:write"], st["scopes"]  # "mcp:read,mcp:write" split

    auth_server.set_habits("form_encoded_always")  # Accept ignored: every answer form-encoded
    st = refreshed(svc, "gh", st["refresh_count"] + 2)
    assert call_tool(svc, "gh")
    assert auth_server.counters()["answered"]["form"] >= 2
    assert sorted(st["scopes"]) == ["mcp:read", "mcp:write"], st["scopes"]
    assert (st["oauth_status"], st["last_error"], st["token_expiry"]) == ("authenticated", None, "expires_in"), st
    assert set(refresh_results(auth_server)) == {"ok"}


def test_error_with_http_200_github(service_factory: ServiceFactory, mcp_server: MCPServerHandle,
                                    auth_server: OAuthServerHandle) -> None:
    """Errors with HTTP 200 are classified by their code: a transient one is retried, GitHub's
    `bad_refresh_token` is permanent at once (one attempt, one oauth.refresh_failed)."""
    auth_server.set_habits("errors_with_200")
    svc = service_factory(one_server(mcp_server.url, "gh"))
    events = svc.events()
    svc.login("gh")
    st = refreshed(svc, "gh", 2)
    assert call_tool(svc, "gh")

    since = time.time()
    auth_server.set_fault("503", count=1)  # answered 200 {"error": "temporarily_unavailable"}
    st = refreshed(svc, "gh", st["refresh_count"] + 1)
    assert refresh_results(auth_server, since) == ["503", "ok"]
    assert call_tool(svc, "gh")

    since = time.time()
    auth_server.invalidate_refresh_tokens()  # the next refresh: 200 {"error": "bad_refresh_token"}
    st = svc.wait_status("gh", lambda s: s["refresh_state"] == "failed", 15, "failed on bad_refresh_token")
    assert (st["oauth_status"], st["action"], st["last_error"]["kind"]) == ("error", "login", "invalid_grant"), st
    assert "bad_refresh_token" in st["last_error"]["message"], st["last_error"]
    refresh_attempts_stay(auth_server, 3.0)
    assert refresh_results(auth_server, since) == ["invalid_grant"]  # one attempt: permanent at once
    wait_until(lambda: events.failed_for_good("gh"), 5, "oauth.refresh_failed")
    assert len(events.failed_for_good("gh")) == 1


def test_expires_in_as_string_entra_v1(service_factory: ServiceFactory, mcp_server: MCPServerHandle,
                                       auth_server: OAuthServerHandle) -> None:
    """`"expires_in": "2"` is a lifetime like 2: proactive refreshes, no expired token ever sent."""
    auth_server.set_habits("string_expires_in")
    svc = service_factory(one_server(mcp_server.url, "entra"))
    svc.login("entra")
    mcp_server.reset_counters()
    st = refreshed(svc, "entra", 2)
    assert call_tool(svc, "entra")
    assert st["token_expiry"] == "expires_in" and st["token_expires_at"] is not None, st
    assert set(refresh_results(auth_server)) == {"ok"}
    assert mcp_server.counters()["rejected_expired"] == 0


# ---- 4: no expires_in ----------------------------------------------------------------------------


def test_no_expires_in_jwt_exp(service_factory: ServiceFactory, mcp_server: MCPServerHandle,
                               auth_server: OAuthServerHandle) -> None:
    """No `expires_in`, a JWT access token: its `exp` is the lifetime (a hint, never verified), and the
    refreshes are proactive — no expired token reaches the MCP server."""
    auth_server.set_config(access_ttl=3.0)
    auth_server.set_habits("no_expires_in", "jwt_access_token")
    svc = service_factory(one_server(mcp_server.url, "jwt"))
    st = svc.login("jwt")
    assert st["token_expiry"] == "jwt_exp" and st["next_refresh_at"] is not None, st
    mcp_server.reset_counters()
    st = refreshed(svc, "jwt", 2)
    assert call_tool(svc, "jwt")
    assert st["token_expiry"] == "jwt_exp", st
    assert mcp_server.counters()["rejected_expired"] == 0, mcp_server.counters()


def test_no_expires_in_opaque_refresh_on_401(service_factory: ServiceFactory, mcp_server: MCPServerHandle,
                                             auth_server: OAuthServerHandle) -> None:
    """No `expires_in`, an opaque token: no proactive timer, the status says the expiry is unknown; the
    upstream's 401 leads to a refresh and a replay, and the MCP client sees no failure."""
    auth_server.set_habits("no_expires_in")
    svc = service_factory(one_server(mcp_server.url, "opaque"))
    st = svc.login("opaque")
    assert (st["token_expiry"], st["token_expires_at"], st["next_refresh_at"]) == ("unknown", None, None), st
    assert st["oauth_status"] == "authenticated" and st["action"] is None, st
    mcp_server.reset_counters()
    for n in (1, 2):
        wait_past_expiry(auth_server)
        assert svc.status("opaque")["refresh_count"] == n - 1  # no proactive refresh, even past expiry
        assert call_tool(svc, "opaque")  # 401 upstream → refresh → replayed: no failure seen
        st = svc.status("opaque")
        assert st["refresh_count"] == n and st["token_expiry"] == "unknown", st
    assert mcp_server.counters()["rejected_expired"] >= 2  # the 401s that triggered the refreshes
    assert refresh_results(auth_server) == ["ok", "ok"]


# ---- 5, 6: what a refresh answer carries -----------------------------------------------------------


def test_no_refresh_token_in_refresh_answer_google(service_factory: ServiceFactory, mcp_server: MCPServerHandle,
                                                   auth_server: OAuthServerHandle) -> None:
    """Refresh answers without a refresh_token: the stored one is kept and keeps working."""
    auth_server.set_habits("no_refresh_token_on_refresh")
    svc = service_factory(one_server(mcp_server.url, "google"))
    svc.login("google")
    st = refreshed(svc, "google", 3)
    assert call_tool(svc, "google")
    assert (st["oauth_status"], st["action"], st["last_error"]) == ("authenticated", None, None), st
    assert len(auth_server.issued()["refresh_tokens"]) == 1  # only the login's, used for every refresh
    assert set(refresh_results(auth_server)) == {"ok"}


def test_strict_rotation_reuse_detection_atlassian(service_factory: ServiceFactory, mcp_server: MCPServerHandle,
                                                   auth_server: OAuthServerHandle) -> None:
    """A reused refresh token revokes the grant: mcpproxy never sends a spent one — not across a restart
    either (the session model proves the rule, tests/session/test_session_model.py)."""
    auth_server.set_habits("strict_rotation_reuse_detection")
    svc = service_factory(one_server(mcp_server.url, "atl"))
    svc.login("atl")
    st = refreshed(svc, "atl", 2)
    assert call_tool(svc, "atl")
    svc.stop()
    svc.start()
    st = refreshed(svc, "atl", st["refresh_count"] + 2)
    assert call_tool(svc, "atl")
    counters = auth_server.counters()
    assert counters["reuse_detected"] == 0 and set(refresh_results(auth_server)) == {"ok"}, counters
    assert st["oauth_status"] == "authenticated" and st["last_error"] is None, st


def test_rotation_grace_window_works_the_same(service_factory: ServiceFactory, mcp_server: MCPServerHandle,
                                              auth_server: OAuthServerHandle) -> None:
    """Rotation with a grace window (the old refresh token works a few seconds more): the same behaviour,
    the newest refresh token always used."""
    auth_server.set_habits("rotation_grace_window")
    svc = service_factory(one_server(mcp_server.url, "grace"))
    svc.login("grace")
    st = refreshed(svc, "grace", 3)
    assert call_tool(svc, "grace")
    assert set(refresh_results(auth_server)) == {"ok"} and st["last_error"] is None, st
    assert len(auth_server.issued()["refresh_tokens"]) == st["refresh_count"] + 1  # each one used once


# ---- 7: registered client authentication -----------------------------------------------------------


def test_dcr_answers_client_secret_basic_notion(service_factory: ServiceFactory, mcp_server: MCPServerHandle,
                                                auth_server: OAuthServerHandle) -> None:
    """Registration asked for `none` and got client_secret_basic with a secret: exactly that method is
    used, never two at once (the AS refuses any other)."""
    auth_server.set_habits("dcr_answers_client_secret_basic", "strict_client_auth")
    svc = service_factory(one_server(mcp_server.url, "notion"))
    svc.login("notion")
    refreshed(svc, "notion", 2)
    assert call_tool(svc, "notion")
    log = auth_server.counters()["refresh_log"]
    assert {(e["client_auth"], e["result"]) for e in log} == {("client_secret_basic", "ok")}, log


def test_dcr_answers_client_secret_post_figma(service_factory: ServiceFactory, mcp_server: MCPServerHandle,
                                              auth_server: OAuthServerHandle) -> None:
    auth_server.set_habits("dcr_answers_client_secret_post", "strict_client_auth")
    svc = service_factory(one_server(mcp_server.url, "figma"))
    svc.login("figma")
    refreshed(svc, "figma", 2)
    assert call_tool(svc, "figma")
    log = auth_server.counters()["refresh_log"]
    assert {(e["client_auth"], e["result"]) for e in log} == {("client_secret_post", "ok")}, log
    # Logout revokes with the same method (the AS counts revocations only when authenticated as registered).
    r = svc.api("POST", "/api/v1/servers/figma/logout")
    assert r.status_code == 200 and r.json()["data"]["revoked"] is True, r.text
    wait_until(lambda: not any(g["active_refresh"] for g in auth_server.grants()), 10, "the grant revoked")


def test_confidential_client_secret_on_every_refresh_asana(service_factory: ServiceFactory,
                                                           mcp_server: MCPServerHandle,
                                                           auth_server: OAuthServerHandle) -> None:
    """A confidential client from the config (Asana has no registration): the secret goes with every
    refresh, also after a restart (it is stored with the token)."""
    auth_server.set_habits("strict_client_auth")
    svc = service_factory(one_server(mcp_server.url, "asana", client_id="asana-app", client_secret="asana-secret"),
                          start=False)
    auth_server.add_client("asana-app", "asana-secret", [f"{svc.base_url}/oauth/callback"])
    svc.start()
    svc.login("asana")
    st = refreshed(svc, "asana", 2)
    assert call_tool(svc, "asana")
    svc.stop()
    svc.start()
    refreshed(svc, "asana", st["refresh_count"] + 2)
    assert call_tool(svc, "asana")
    log = auth_server.counters()["refresh_log"]
    assert len(log) >= 4 and {(e["client_auth"], e["result"]) for e in log} == {("client_secret_basic", "ok")}, log
    assert "asana-secret" not in svc.logs()


# ---- 13: rate limits, HTML errors, refusals that need confirming ------------------------------------


def test_rate_limit_retry_after(service_factory: ServiceFactory, mcp_server: MCPServerHandle,
                                auth_server: OAuthServerHandle) -> None:
    """429 and 503 with Retry-After: the retry waits at least that long, then the refresh succeeds."""
    auth_server.set_config(access_ttl=6.0)  # the old token outlives the waits
    svc = service_factory(one_server(mcp_server.url, "rl"))
    svc.login("rl")
    for mode in ("429", "503"):
        before = svc.status("rl")["refresh_count"]
        since = time.time()
        auth_server.set_fault(mode, count=1, retry_after=2)
        refreshed(svc, "rl", before + 1, timeout=30)
        log = [e for e in auth_server.counters()["refresh_log"] if e["at"] >= since]
        assert [e["result"] for e in log] == [mode, "ok"], log
        assert log[1]["at"] - log[0]["at"] >= 2.0 - 0.05, log  # not sooner than Retry-After
    assert call_tool(svc, "rl")
    assert svc.status("rl")["last_error"] is None


def test_html_error_classified_by_status(service_factory: ServiceFactory, mcp_server: MCPServerHandle,
                                         auth_server: OAuthServerHandle) -> None:
    """HTML error pages carry no code: a 503 is a server error (retried), a 401 a refused client — believed
    after one confirming retry, then permanent."""
    auth_server.set_habits("html_errors")
    svc = service_factory(one_server(mcp_server.url, "html"))
    events = svc.events()
    svc.login("html")
    st = refreshed(svc, "html", 2)
    assert call_tool(svc, "html")
    since = time.time()
    auth_server.set_fault("503", count=1)
    st = refreshed(svc, "html", st["refresh_count"] + 1)
    assert refresh_results(auth_server, since) == ["503", "ok"]
    assert auth_server.counters()["answered"]["html"] == 1

    since = time.time()
    auth_server.set_fault("invalid_client")  # every refresh: an HTML 401
    st = svc.wait_status("html", lambda s: s["refresh_state"] == "failed", 15, "failed on HTML 401s")
    assert (st["action"], st["last_error"]["kind"]) == ("login", "invalid_client"), st
    refresh_attempts_stay(auth_server, 3.0)
    assert refresh_results(auth_server, since) == ["invalid_client", "invalid_client"]  # one confirming retry
    wait_until(lambda: events.failed_for_good("html"), 5, "oauth.refresh_failed")
    assert len(events.failed_for_good("html")) == 1


def test_invalid_request_on_refresh_permanent_after_one_retry(service_factory: ServiceFactory,
                                                             mcp_server: MCPServerHandle,
                                                             auth_server: OAuthServerHandle) -> None:
    """`invalid_request` once is a glitch (the retry succeeds); twice in a row it is permanent."""
    svc = service_factory(one_server(mcp_server.url, "ir"))
    events = svc.events()
    svc.login("ir")
    st = refreshed(svc, "ir", 1)
    since = time.time()
    auth_server.set_fault("invalid_request", count=1)
    st = refreshed(svc, "ir", st["refresh_count"] + 1)
    assert refresh_results(auth_server, since) == ["invalid_request", "ok"]
    assert call_tool(svc, "ir")

    since = time.time()
    auth_server.set_fault("unauthorized_client")  # every refresh from now on
    st = svc.wait_status("ir", lambda s: s["refresh_state"] == "failed", 15, "failed after a confirming retry")
    assert (st["action"], st["last_error"]["kind"]) == ("login", "invalid_client"), st
    refresh_attempts_stay(auth_server, 3.0)
    assert refresh_results(auth_server, since) == ["unauthorized_client", "unauthorized_client"]
    wait_until(lambda: events.failed_for_good("ir"), 5, "oauth.refresh_failed")
    assert len(events.failed_for_good("ir")) == 1


# ---- 14: refresh without discovery -----------------------------------------------------------------


def test_refresh_after_restart_without_discovery_hubspot(service_factory: ServiceFactory,
                                                         mcp_server: MCPServerHandle,
                                                         auth_server: OAuthServerHandle) -> None:
    """A non-standard token path (HubSpot), then a discovery outage (Atlassian) across a restart: the
    token endpoint, client and resource stored with the token are enough — no discovery request."""
    auth_server.set_habits("nonstandard_token_path")
    svc = service_factory(one_server(mcp_server.url, "hub"))
    svc.login("hub")
    st = refreshed(svc, "hub", 2)
    assert call_tool(svc, "hub")
    svc.stop()
    auth_server.set_habits("nonstandard_token_path", "discovery_outage")
    auth_server.reset_counters()
    svc.start()
    refreshed(svc, "hub", st["refresh_count"] + 2)
    assert call_tool(svc, "hub")
    counters = auth_server.counters()
    assert counters["discoveries"] == 0, counters
    assert counters["succeeded"]["refresh_token"] >= 2 and counters["failed"] == 0, counters
