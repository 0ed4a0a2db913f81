"""The laptop sleeps (issue 6): every process of the service stopped across a refresh point and past expiry.

SIGSTOP freezes the processes but not the monotonic clock, so this exercises timers that fire late
(the Supervisor's wall-clock check is for a real suspend, where the monotonic clock stops too).
"""

from __future__ import annotations

import os
import signal
import time

from tests.faults import all_status, figure, hold, oauth_servers, refreshes_at_as, wait_all

NAMES = [f"z{i}" for i in range(5)]
ASLEEP = 4.0  # two token lifetimes


def test_every_token_is_refreshed_within_5s_of_waking(service_factory, mcp_server, auth_server):
    svc = service_factory(oauth_servers(mcp_server.url, NAMES))
    for n in NAMES:
        svc.login(n)
    wait_all(svc, NAMES, lambda s: s["refresh_count"] >= 1, 10, "a first refresh of every server")
    codes = auth_server.counters()["grants"]["authorization_code"]
    pids = svc.pids()
    assert len(pids) >= len(NAMES) + 3, pids
    base = {n: s["refresh_count"] for n, s in all_status(svc).items()}
    stopped = time.time()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        hold(ASLEEP)
    finally:
        woke = time.time()
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    # Every token expired during the sleep: authenticated again means refreshed on waking.
    wait_all(svc, NAMES, lambda s: s["oauth_status"] == "authenticated" and s["refresh_count"] > base[s["name"]]
             and s["action"] is None, 10, "every server refreshed after waking")
    seen = time.time() - woke
    c = auth_server.counters()
    # A refresh the AS answered just as the service froze counts as done at once (its answer was read on waking).
    late = {n: max(0.0, refreshes_at_as(c, n, "ok", since=stopped)[0]["at"] - woke) for n in NAMES}
    assert max(late.values()) < 5.0, late
    assert c["grants"]["authorization_code"] == codes
    assert sorted(svc.pids()) == sorted(pids), "a process was replaced while the service slept"
    figure("sleep 4 s: max over servers (first refresh at the AS after SIGCONT − SIGCONT), s",
           f"{max(late.values()):.3f}")
    figure("sleep 4 s: SIGCONT → every server authenticated and refreshed (polled), s", f"{seen:.2f}")
