"""A clean stop (SIGTERM) while a refresh is in flight: the service waits for its answer and keeps the
rotated token, so nobody has to log in again after a restart (kill -9 may lose it; a clean stop must not)."""

from __future__ import annotations

import time

from tests.faults import oauth_servers, refreshes_at_as, resource_of
from tests.harness import open_store, wait_until


def test_a_clean_stop_keeps_the_token_a_refresh_in_flight_rotated(service_factory, mcp_server, auth_server) -> None:
    svc = service_factory(oauth_servers(mcp_server.url, ["demo"]))
    svc.login("demo")
    since = time.time()
    # The AS takes 2 s over the next refresh, then rotates for real: the old refresh token is dead after it.
    auth_server.set_fault("slow", hang_seconds=2.0, count=1, grant_types=["refresh_token"])
    auth_server.set_config(access_ttl=2.0)
    svc.login("demo")  # a token with a 2 s lifetime: its proactive refresh starts 1.6 s later
    wait_until(lambda: refreshes_at_as(auth_server.counters(), "demo", "slow", since), 15,
               "the proactive refresh in flight at the AS")
    assert svc.stop() == 0
    answered = wait_until(lambda: [e for e in refreshes_at_as(auth_server.counters(), "demo", since=since)
                                   if e["result"] != "slow"], 10, "the AS answering the slow refresh")
    assert answered[0]["result"] == "ok", answered
    newest = max(g["last_issued_at"] for g in auth_server.grants()
                 if g["resource"] == resource_of(mcp_server.url, "demo"))
    store = open_store(svc.data_dir)
    try:
        held = store.get_token("demo")
    finally:
        store.close()
    assert held is not None and held.issued_at >= newest, "the rotated token of the refresh in flight was lost"
    svc.start()
    svc.wait_status("demo", lambda s: s["oauth_status"] == "authenticated" and s["refresh_count"] >= 1
                    and s["refresh_state"] != "failed", 15, "refreshing again after the restart")
