"""Bad answers from the token endpoint: a lost answer, invalid_client, malformed 200s (issue 6)."""

from __future__ import annotations

import re
import time

from tests.faults import figure, oauth_servers, one_pid, refreshes_at_as
from tests.harness import SSEReader, wait_until

MALFORMED = ("malformed_no_access_token", "malformed_not_json", "malformed_negative_expires",
             "malformed_string_expires", "malformed_huge_expires")


def assert_sentence(text: str, secrets: list[str]) -> None:
    """A sentence for a person: words, says what to do, no secret, no code dump."""
    assert len(text.split()) >= 6, text
    assert "log in" in text, text
    assert not re.search(r"Traceback|Exception|\{|\}|<html", text), text
    for s in secrets:
        assert s not in text


def attempts_stay(auth_server, before: int, seconds: float) -> None:
    """No further refresh attempt at the AS for `seconds` (several token lifetimes: no loop)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert auth_server.counters()["grants"]["refresh_token"] == before, "a refresh was tried again"
        time.sleep(0.25)


def one_failure_event(events: SSEReader, name: str, kind: str) -> None:
    failed = events.failed_for_good(name)
    assert len(failed) == 1, [e.data for e in failed]
    payload = failed[0].data["payload"]
    assert payload["action"] == "login" and payload["error"]["kind"] == kind, payload


def test_lost_answer_fails_once_with_a_sentence_and_never_loops(service_factory, mcp_server, auth_server):
    svc = service_factory(oauth_servers(mcp_server.url, ["lost"]))
    events = svc.events()
    svc.login("lost")
    svc.wait_status("lost", lambda s: s["refresh_count"] >= 1, 10, "a first refresh")
    since = time.time()
    # The AS performs the refresh (rotating the refresh token) and the answer never arrives: a 502.
    auth_server.set_fault("lost", count=1)
    st = svc.wait_status("lost", lambda s: s["refresh_state"] == "failed", 15, "failed after the lost answer")
    assert (st["oauth_status"], st["action"], st["last_error"]["kind"]) == ("error", "login", "invalid_grant")
    results = [e["result"] for e in refreshes_at_as(auth_server.counters(), "lost", since=since)]
    assert results == ["lost", "invalid_grant"], results
    issued = auth_server.issued()
    assert_sentence(st["last_error"]["message"], issued["refresh_tokens"] + issued["access_tokens"])
    attempts_stay(auth_server, auth_server.counters()["grants"]["refresh_token"], 3.0)
    wait_until(lambda: events.failed_for_good("lost"), 5, "oauth.refresh_failed")
    one_failure_event(events, "lost", "invalid_grant")
    figure("lost answer: attempts after the lost one", len(results) - 1)
    figure("lost answer: last_error", st["last_error"]["message"])


def test_invalid_client_fails_at_once(service_factory, mcp_server, auth_server):
    svc = service_factory(oauth_servers(mcp_server.url, ["cli"]))
    events = svc.events()
    svc.login("cli")
    since = time.time()
    auth_server.set_fault("invalid_client")  # every refresh from now on
    st = svc.wait_status("cli", lambda s: s["refresh_state"] == "failed", 10, "failed on invalid_client")
    assert (st["oauth_status"], st["action"], st["last_error"]["kind"]) == ("error", "login", "invalid_client")
    attempts_stay(auth_server, auth_server.counters()["grants"]["refresh_token"], 3.0)
    assert [e["result"] for e in refreshes_at_as(auth_server.counters(), "cli", since=since)] == ["invalid_client"]
    wait_until(lambda: events.failed_for_good("cli"), 5, "oauth.refresh_failed")
    one_failure_event(events, "cli", "invalid_client")
    assert svc.api("POST", "/api/v1/servers/cli/refresh").status_code == 409


def test_malformed_answers_are_protocol_errors_and_keep_the_old_token(service_factory, mcp_server, auth_server):
    auth_server.set_config(access_ttl=30)  # a token that stays valid through each fault and its retry
    svc = service_factory(oauth_servers(mcp_server.url, ["bad"]))
    before = svc.login("bad")
    actor, worker = one_pid(svc, "mcpproxy:bad"), one_pid(svc, "mcpproxy-oauth")
    for mode in MALFORMED:
        auth_server.set_fault(mode, count=1)
        r = svc.api("POST", "/api/v1/servers/bad/refresh")  # the refresh the fault hits
        assert r.status_code == 502 and r.json()["kind"] == "protocol", (mode, r.text)
        st = svc.status("bad")
        assert st["refresh_state"] in ("retrying", "refreshing", "scheduled"), (mode, st)
        if st["refresh_state"] == "retrying":
            assert st["last_error"]["kind"] == "protocol", (mode, st["last_error"])
            figure(f"{mode}: last_error", st["last_error"]["message"])
        # The old token is kept while it is valid: same expiry, still authenticated, no login asked.
        assert st["oauth_status"] == "authenticated" and st["action"] is None, (mode, st)
        if st["refresh_count"] == before["refresh_count"]:
            assert st["token_expires_at"] == before["token_expires_at"], f"{mode}: the token was replaced"
        st = svc.wait_status("bad", lambda s, c=before["refresh_count"]: s["refresh_count"] > c, 10,
                             f"the retry after {mode} succeeding")
        assert st["last_error"] is None and st["oauth_status"] == "authenticated", (mode, st)
        assert one_pid(svc, "mcpproxy:bad") == actor and one_pid(svc, "mcpproxy-oauth") == worker, mode
        before = st
    log = [e["result"] for e in auth_server.counters()["refresh_log"]]
    assert log == [x for m in MALFORMED for x in (m, "ok")], log
    assert "Traceback" not in svc.logs()


def test_endless_garbage_is_given_up_after_a_few_attempts(service_factory, mcp_server, auth_server):
    svc = service_factory(oauth_servers(mcp_server.url, ["junk"]))
    events = svc.events()
    svc.login("junk")
    since = time.time()
    auth_server.set_fault("malformed_not_json")  # every refresh from now on
    st = svc.wait_status("junk", lambda s: s["refresh_state"] == "failed", 30, "given up on garbage")
    assert (st["oauth_status"], st["action"], st["last_error"]["kind"]) == ("error", "login", "protocol")
    tries = len(refreshes_at_as(auth_server.counters(), "junk", since=since))
    attempts_stay(auth_server, auth_server.counters()["grants"]["refresh_token"], 3.0)
    wait_until(lambda: events.failed_for_good("junk"), 5, "oauth.refresh_failed")
    one_failure_event(events, "junk", "protocol")
    assert tries == 5, tries
    figure("endless malformed answers: attempts before giving up", tries)
