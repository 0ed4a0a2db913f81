"""An outage is told (issue 14, item 5): a failing streak of refreshes is announced after its 3rd
attempt, and once more when the token expires meanwhile — not retried in silence until a user finds
the token expired. The recovery is `oauth.token_refreshed`; a permanent failure says `will_retry: false`.
"""

from __future__ import annotations

from tests.faults import oauth_servers
from tests.harness import wait_until


def test_a_failing_streak_is_told_twice_then_its_recovery(service_factory, mcp_server, auth_server):
    svc = service_factory(oauth_servers(mcp_server.url, ["o1"]))
    svc.login("o1")
    svc.wait_status("o1", lambda s: s["refresh_count"] >= 1, 10, "a first refresh")
    events = svc.events()
    auth_server.set_fault("503")  # every refresh, until cleared

    def told() -> list[dict]:
        return [e.data["payload"] for e in events.named("oauth.refresh_failed", "o1")]

    events.wait_for(lambda e: e.event == "oauth.refresh_failed" and e.data["payload"].get("attempts", 0) >= 3,
                    30, "the streak told after its 3rd attempt")
    st = svc.status("o1")
    assert st["refresh_state"] in ("retrying", "refreshing") and st["retrying_since"] and st["retry_count"] >= 3, st
    assert st["action"] is None and st["last_error"]["kind"] == "server", st
    # Not once per attempt: the 4th failure says nothing more.
    svc.wait_status("o1", lambda s: s["retry_count"] >= 4, 20, "a 4th failed attempt")
    payloads = told()
    assert [p["will_retry"] for p in payloads] == [True, True], payloads
    assert any(p["expired"] for p in payloads), payloads  # 2 s tokens: it expired during the streak
    assert all(p["action"] is None and p["error"]["kind"] == "server" and p["retrying_since"] for p in payloads)

    auth_server.clear_fault()
    events.wait_for(lambda e: e.event == "oauth.token_refreshed", 70, "the recovery")
    st = svc.wait_status("o1", lambda s: s["oauth_status"] == "authenticated" and s["retry_count"] == 0, 10,
                         "authenticated again")
    assert st["retrying_since"] is None and st["last_error"] is None, st
    assert len(told()) == 2, "the recovery was told as a failure"


def test_a_permanent_failure_says_it_will_not_retry(service_factory, mcp_server, auth_server):
    svc = service_factory(oauth_servers(mcp_server.url, ["p1"]))
    svc.login("p1")
    events = svc.events()
    auth_server.invalidate_refresh_tokens()
    ev = events.wait_for(lambda e: e.event == "oauth.refresh_failed", 15, "the permanent failure")
    assert ev.data["payload"]["will_retry"] is False and ev.data["payload"]["action"] == "login", ev.data
    wait_until(lambda: svc.status("p1")["refresh_state"] == "failed", 5, "refresh_state failed")
