"""The TokenActor's behaviour (docs/architecture.md "Session core"), through the real service, real actors, real HTTP and LMDB."""

from __future__ import annotations

import time

from mcpproxy import policy
from tests.faults import oauth_servers, server_of, wait_all
from tests.harness import open_store, wait_until


def lateness(entry: dict) -> float:
    """How late a refresh reached the AS after its 80 % mark, on the AS's own clock."""
    issued, expires = entry["prev_issued_at"], entry["prev_expires_at"]
    return entry["at"] - (issued + 0.8 * (expires - issued))


def test_login_through_the_rest_flow(service, auth_server):
    events = service.events()
    st = service.login("demo")
    assert st["oauth_status"] == "authenticated"
    assert st["refresh_state"] == "scheduled" and st["action"] is None and st["user_logged_out"] is False
    assert st["scopes"] == ["mcp:read"]
    events.wait_for(lambda e: e.event == "oauth.login_completed", 5, "login_completed")
    assert auth_server.counters()["registrations"] == 1  # RFC 7591: registered once, then reused
    service.login("demo")
    assert auth_server.counters()["registrations"] == 1


def test_refresh_at_80_percent_with_rotation(service, auth_server):
    events = service.events()
    service.login("demo")
    service.wait_status("demo", lambda s: s["refresh_count"] >= 4, 15, "four refreshes")
    log = [e for e in auth_server.counters()["refresh_log"] if e["result"] == "ok"]
    assert len(log) >= 4
    for entry in log:
        assert abs(lateness(entry)) <= 0.5, log
    # Rotation: every refresh used the newest refresh token (an old one would have been refused).
    assert all(e["result"] == "ok" for e in auth_server.counters()["refresh_log"])
    refreshed = wait_until(lambda: (lambda r: r if len(r) >= 4 else None)(events.named("oauth.token_refreshed", "demo")),
                           5, "four oauth.token_refreshed events")
    assert refreshed[0].data["payload"]["expires_at"].endswith("Z")


def test_without_rotation_the_old_refresh_token_is_kept(service, auth_server):
    auth_server.set_config(rotate=False)
    service.login("demo")
    service.wait_status("demo", lambda s: s["refresh_count"] >= 3, 12, "three refreshes without rotation")
    assert all(e["result"] == "ok" for e in auth_server.counters()["refresh_log"])


def test_server_errors_are_retried_then_recover(service, auth_server):
    service.login("demo")
    auth_server.set_fault("500", count=2)
    st = service.wait_status("demo", lambda s: s["refresh_state"] == "retrying", 10, "retrying")
    assert st["last_error"]["kind"] == "server" and st["retry_count"] >= 1
    st = service.wait_status("demo", lambda s: s["refresh_count"] >= 1 and s["last_error"] is None, 15,
                             "recovery after the 500s")
    assert st["oauth_status"] == "authenticated" and st["retry_count"] == 0 and st["action"] is None


def test_retry_after_is_honoured(service, auth_server):
    service.login("demo")
    auth_server.set_fault("503", count=1, retry_after=3)
    st = service.wait_status("demo", lambda s: s["refresh_state"] == "retrying", 10, "retrying")
    failed_at = time.time()
    st = service.wait_status("demo", lambda s: s["refresh_count"] >= 1, 15, "a refresh after Retry-After")
    ok = [e for e in auth_server.counters()["refresh_log"] if e["result"] == "ok"]
    assert ok[0]["at"] >= failed_at + 2.5, "retried before Retry-After"
    assert st["last_error"] is None


def test_invalid_grant_fails_once_and_never_loops(service, auth_server):
    events = service.events()
    service.login("demo")
    auth_server.set_fault("invalid_grant")  # for every refresh from now on
    st = service.wait_status("demo", lambda s: s["refresh_state"] == "failed", 10, "failed")
    assert st["oauth_status"] == "error" and st["action"] == "login"
    assert st["last_error"]["kind"] == "invalid_grant" and "log in again" in st["last_error"]["message"]
    attempts = auth_server.counters()["grants"]["refresh_token"]
    # Two more token lifetimes: no further attempt, no second event.
    deadline = time.monotonic() + 4.5
    while time.monotonic() < deadline:
        assert auth_server.counters()["grants"]["refresh_token"] == attempts
        time.sleep(0.25)
    failed = events.named("oauth.refresh_failed", "demo")
    assert len(failed) == 1 and failed[0].data["payload"]["will_retry"] is False
    assert failed[0].data["payload"]["error"]["kind"] == "invalid_grant"
    assert failed[0].data["payload"]["action"] == "login"
    assert service.api("POST", "/api/v1/servers/demo/refresh").status_code == 409
    # A new login clears the failure.
    auth_server.clear_fault()
    st = service.login("demo")
    assert (st["oauth_status"], st["refresh_state"], st["last_error"]) == ("authenticated", "scheduled", None)


def test_logout_answers_fast_while_a_refresh_hangs(service, auth_server):
    events = service.events()
    service.login("demo")
    auth_server.set_fault("hang", hang_seconds=20)
    service.wait_status("demo", lambda s: s["refresh_state"] == "refreshing", 10, "a refresh in flight")
    t0 = time.monotonic()
    r = service.api("POST", "/api/v1/servers/demo/logout")
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"server": "demo", "action": "logout", "revoked": True}
    assert took < 3.0, f"logout took {took:.2f}s during a hanging refresh"
    st = service.status("demo")
    assert (st["oauth_status"], st["user_logged_out"], st["action"]) == ("none", True, "login")
    ev = events.wait_for(lambda e: e.event == "oauth.logout", 5, "oauth.logout")
    assert ev.data["payload"] == {"server_name": "demo", "revoked": True, "reason": "user"}
    wait_until(lambda: auth_server.counters()["revocations"] >= 2, 10, "refresh and access token revoked")


def test_logout_is_idempotent_and_checks_the_server(service):
    assert service.api("POST", "/api/v1/servers/demo/logout").status_code == 200
    assert service.api("POST", "/api/v1/servers/demo/logout").json()["data"]["revoked"] is False
    r = service.api("POST", "/api/v1/servers/nope/logout")
    assert r.status_code == 404 and "not found" in r.json()["error"]
    r = service.api("POST", "/api/v1/servers/plain/logout")
    assert r.status_code == 400 and r.json()["error"] == "server 'plain' does not use OAuth"


def test_refresh_now(service, auth_server):
    assert service.api("POST", "/api/v1/servers/demo/refresh").status_code == 409
    auth_server.set_config(access_ttl=60)
    before = service.login("demo")
    r = service.api("POST", "/api/v1/servers/demo/refresh")
    assert r.status_code == 200, r.text
    assert r.json()["data"]["token_expires_at"] >= before["token_expires_at"]
    assert service.status("demo")["refresh_count"] == 1


def test_restart_keeps_tokens_and_refreshes_overdue_ones_within_the_spread(service, auth_server):
    auth_server.set_config(access_ttl=4)
    service.login("demo")
    service.stop()
    time.sleep(3.4)  # past the 80 % mark (3.2 s) while the service is down — the situation under test
    service.start()
    st = service.status("demo")
    assert st["oauth_status"] in ("authenticated", "expired") and st["user_logged_out"] is False
    st = service.wait_status("demo", lambda s: s["refresh_count"] >= 1, 5, "the overdue refresh")
    assert st["oauth_status"] == "authenticated"


SPREAD_SERVERS = 10
SLACK = 3.0  # a loaded machine's start-up of the actors and the refresh's trip to the AS


def test_overdue_refreshes_at_a_start_are_spread_not_a_burst(service_factory, mcp_server, auth_server):
    """Ten tokens overdue at a start: their refreshes reach the AS spread over up to OVERDUE_SPREAD, all done
    within it (plus slack) — not ten at one instant (docs/architecture.md "Refresh policy")."""
    names = [f"o{i}" for i in range(SPREAD_SERVERS)]
    auth_server.set_config(access_ttl=3)
    svc = service_factory(oauth_servers(mcp_server.url, names))
    for name in names:
        svc.login(name)
    svc.stop()
    time.sleep(2.6)  # every token past its 80 % mark (2.4 s) while the service is down
    auth_server.reset_counters()
    svc.start()
    ready = time.time()
    wait_all(svc, names, lambda s: s["refresh_count"] >= 1, 15, "every overdue refresh")
    first: dict[str, float] = {}
    for entry in auth_server.counters()["refresh_log"]:
        name = server_of(entry["resource"])
        if entry["result"] == "ok" and name in names:
            first.setdefault(name, entry["at"])
    times = sorted(first.values())
    assert len(times) == SPREAD_SERVERS, first
    assert times[-1] - times[0] >= 0.5, times  # ten draws over 2 s: a burst would be a few ms wide
    assert max(sum(1 for t in times if u <= t < u + 0.25) for u in times) <= 7, times
    assert times[-1] <= ready + policy.OVERDUE_SPREAD + SLACK, (times[-1] - ready, times)


def test_a_corrupted_record_needs_login_and_leaves_others_alone(service_factory, mcp_server, auth_server):
    auth_server.set_config(access_ttl=30)
    servers = [{"name": n, "url": mcp_server.url, "oauth": {}} for n in ("one", "two")]
    svc = service_factory(servers)
    svc.login("one")
    svc.login("two")
    svc.stop()
    store = open_store(svc.data_dir)
    with store.env.begin(write=True, db=store._tokens) as txn:
        txn.put(b"one", b"\xc1 this is not msgpack")
    record = store.get_token("two")
    assert record is not None and record.access_token
    store.close()
    svc.start()
    one, two = svc.status("one"), svc.status("two")
    assert (one["oauth_status"], one["action"], one["last_error"]["kind"]) == ("none", "login", "config")
    assert two["oauth_status"] == "authenticated"
    assert "one" in svc.logs() and "unreadable" in svc.logs()


def test_sse_replays_what_a_reconnecting_client_missed(service, auth_server):
    first = service.events()
    service.login("demo")
    seen = first.wait_for(lambda e: e.event == "oauth.login_completed", 5, "login_completed")
    first.close()
    service.wait_status("demo", lambda s: s["refresh_count"] >= 2, 10, "two refreshes while away")
    again = service.events(last_event_id=seen.id)
    wait_until(lambda: len(again.named("oauth.token_refreshed", "demo")) >= 2, 5, "two replayed token_refreshed")
    ids = [int(e.id) for e in again.events if e.id]
    assert ids == sorted(ids) and ids[0] > int(seen.id)


def test_events_carry_the_status_object(service):
    events = service.events()
    service.login("demo")
    ev = events.wait_for(lambda e: e.event == "servers.changed" and e.data["payload"]["oauth_status"] ==
                         "authenticated", 5, "servers.changed authenticated")
    payload = ev.data["payload"]
    assert payload["reason"] == "login_completed" and payload["name"] == "demo"
    assert isinstance(ev.data["timestamp"], float)
    assert set(service.status("demo")) <= set(payload)


def test_actor_death_is_restarted_with_its_token(service, auth_server):
    import os
    import signal

    import psutil

    auth_server.set_config(access_ttl=30)
    events = service.events()
    service.login("demo")
    victim = wait_until(lambda: [p for p in service.pids() if psutil.Process(p).name() == "mcpproxy:demo"], 5,
                        "the TokenActor process named mcpproxy:demo")
    os.kill(victim[0], signal.SIGKILL)
    events.wait_for(lambda e: e.event == "servers.changed" and e.data["payload"]["reason"] == "actor_restarted",
                    15, "servers.changed reason=actor_restarted")
    st = service.status("demo")
    assert st["oauth_status"] == "authenticated" and st["user_logged_out"] is False
    assert victim[0] not in service.pids()


def test_event_hub_death_is_survived(service, auth_server):
    import os
    import signal

    import psutil

    service.login("demo")
    hub = wait_until(lambda: [p for p in service.pids() if psutil.Process(p).name() == "mcpproxy-hub"], 5, "the hub")
    os.kill(hub[0], signal.SIGKILL)
    wait_until(lambda: [p for p in service.pids() if psutil.Process(p).name() == "mcpproxy-hub" and p != hub[0]],
               10, "a new hub")
    events = service.events()
    events.wait_for(lambda e: e.event == "oauth.token_refreshed", 15, "events flowing again after the hub restart")


def test_nothing_stays_active_after_a_logout_during_a_refresh(service, auth_server):
    service.login("demo")
    auth_server.set_fault("slow", hang_seconds=2.0)
    service.wait_status("demo", lambda s: s["refresh_state"] == "refreshing", 10, "a slow refresh in flight")
    assert service.api("POST", "/api/v1/servers/demo/logout").status_code == 200
    auth_server.clear_fault()
    # Logout revokes the refresh token at once, so the slow refresh cannot mint a token that outlives it.
    wait_until(lambda: all(e["result"] != "slow" for e in auth_server.counters()["refresh_log"]), 10,
               "the slow refresh to finish")
    active = [g for g in auth_server.grants() if g["active_refresh"]]
    assert active == [], f"a refresh token is still active after logout: {active}"
    st = service.status("demo")
    assert (st["oauth_status"], st["user_logged_out"]) == ("none", True)


def test_login_cancels_a_refresh_in_flight(service, auth_server):
    service.login("demo")
    auth_server.set_fault("slow", hang_seconds=2.0)
    service.wait_status("demo", lambda s: s["refresh_state"] == "refreshing", 10, "a slow refresh in flight")
    auth_server.clear_fault()
    auth_server.set_config(access_ttl=60)
    st = service.login("demo")
    assert st["oauth_status"] == "authenticated" and st["refresh_count"] == 0
    wait_until(lambda: auth_server.counters()["succeeded"]["refresh_token"] >= 1, 10, "the slow refresh to finish")
    # The stale refresh's tokens were revoked; the new login's token is the one in use.
    wait_until(lambda: auth_server.counters()["revocations"] >= 2, 10, "the stale refresh's tokens revoked")
    st = service.status("demo")
    assert st["oauth_status"] == "authenticated" and st["refresh_count"] == 0


def test_an_idle_token_actor_sleeps_until_its_timer_or_its_mail(service, auth_server):
    """Thespian's queue read wakes every 2 s to look for a shutdown signal; a TokenActor waits 15 s
    (actors/base.py IDLE_CHECK_PERIOD): at 1,000 servers those wake-ups were most of the idle CPU. Its timer
    and its mail still wake it at once: the refresh at 80 % and a logout are on time."""
    import psutil

    auth_server.set_config(access_ttl=3600)
    service.login("demo")
    actor = psutil.Process(wait_until(lambda: [p for p in service.pids() if psutil.Process(p).name() == "mcpproxy:demo"],
                                      5, "the TokenActor process named mcpproxy:demo")[0])
    time.sleep(0.5)  # the login's last messages (status, event) settle
    before = actor.num_ctx_switches().voluntary
    time.sleep(6.5)  # three of Thespian's 2 s checks
    woke = actor.num_ctx_switches().voluntary - before
    assert woke <= 1, f"an idle TokenActor woke {woke} times in 6.5 s"
    # Its timer: a 2 s token is refreshed at its 80 % mark, not 15 s late.
    auth_server.set_config(access_ttl=2)
    service.api("POST", "/api/v1/servers/demo/refresh")  # now, for a 2 s token
    service.wait_status("demo", lambda s: s["refresh_count"] >= 3, 10, "two refreshes on their own timer")
    late = [lateness(e) for e in auth_server.counters()["refresh_log"]
            if e["result"] == "ok" and e["prev_expires_at"] - e["prev_issued_at"] <= 3]  # the 2 s tokens' refreshes
    assert late and max(abs(x) for x in late) <= 0.5, late
    # Its mail: a logout is answered at once, not at the next 15 s look.
    started = time.monotonic()
    assert service.api("POST", "/api/v1/servers/demo/logout").status_code == 200
    assert time.monotonic() - started < 5.0
