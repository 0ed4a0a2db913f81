"""The OAuth worker process killed (issue 6; TokenActor and hub deaths are in tests/actors/)."""

from __future__ import annotations

import os
import signal
import time

from tests.faults import all_status, figure, oauth_servers, one_pid, resource_of, wait_all

NAMES = ["w1", "w2", "w3"]


def test_killed_oauth_worker_is_restarted_and_refreshes_go_on(service_factory, mcp_server, auth_server):
    svc = service_factory(oauth_servers(mcp_server.url, NAMES))
    for n in NAMES:
        svc.login(n)
    old = one_pid(svc, "mcpproxy-oauth")
    base = {n: s["refresh_count"] for n, s in all_status(svc).items()}
    os.kill(old, signal.SIGKILL)
    killed = time.time()
    # Refreshes that fall between the death and the Supervisor noticing it went to the dead worker.
    st = wait_all(svc, NAMES, lambda s: s["refresh_count"] >= base[s["name"]] + 2 and s["oauth_status"] ==
                  "authenticated", 10, "two more refreshes of every server after the worker died")
    took = time.time() - killed
    assert all(s["action"] is None for s in st.values())
    assert "the OAuth worker stopped; starting a new one" in svc.logs()
    assert one_pid(svc, "mcpproxy-oauth") != old
    figure("OAuth worker killed: every server refreshed twice more within, s", f"{took:.2f}")


def test_a_refresh_in_flight_when_the_worker_dies_is_retried_soon(service_factory, mcp_server, auth_server):
    """The worker dies with a refresh in flight: its answer never comes; the actor must not wait 45 s for it."""
    svc = service_factory(oauth_servers(mcp_server.url, NAMES))
    for n in NAMES:
        svc.login(n)
    # Hold w1's refresh at the AS so that it is surely in flight when the worker dies.
    auth_server.set_fault("hang", resource=resource_of(mcp_server.url, "w1"), hang_seconds=30)
    svc.wait_status("w1", lambda s: s["refresh_state"] == "refreshing", 5, "w1's refresh in flight")
    base = svc.status("w1")["refresh_count"]
    old = one_pid(svc, "mcpproxy-oauth")
    os.kill(old, signal.SIGKILL)
    auth_server.clear_fault()
    killed = time.time()
    st = svc.wait_status("w1", lambda s: s["refresh_count"] > base, 10,
                         "w1 refreshed again after the worker that held its refresh died")
    assert st["oauth_status"] == "authenticated" and st["action"] is None
    figure("worker killed mid-refresh: w1 refreshed again after, s", f"{time.time() - killed:.2f}")


def test_every_process_has_its_name_before_any_work(service_factory, mcp_server):
    """Nothing logged in, nothing refreshed: `ps` already tells the OAuth worker from the Supervisor it was
    forked from (it named itself at its first piece of work, and showed as a second mcpproxy-sup till then)."""
    svc = service_factory(oauth_servers(mcp_server.url, ["idle"]))
    one_pid(svc, "mcpproxy-oauth")
    one_pid(svc, "mcpproxy-sup")
    one_pid(svc, "mcpproxy-hub")
