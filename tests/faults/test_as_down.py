"""The authorization server down for longer than a token lifetime (issue 6), three ways.

- frozen (SIGSTOP): connections are accepted by the kernel and never answered — the refresh in
  flight just waits (the read timeout is 20 s), state survives, and SIGCONT answers it;
- overloaded: 503 with Retry-After for the whole window — retried, no sooner than Retry-After;
- gone (connection refused), then back without its memory — `network`, backing off, then a
  permanent failure asking for a login, once.
"""

from __future__ import annotations

import math
import os
import re
import signal
import time

import pytest

from tests.faults import figure, hold, oauth_servers, refreshes_at_as, wait_all
from tests.harness import wait_until
from tests.oauthserver.control import start_oauth_server

NAMES = ["a1", "a2", "a3"]
WINDOW = 5.0  # 2.5 token lifetimes


def logged_in(svc, auth_server) -> dict[str, int]:
    for n in NAMES:
        svc.login(n)
    st = wait_all(svc, NAMES, lambda s: s["refresh_count"] >= 1, 10, "a first refresh of every server")
    return {n: st[n]["refresh_count"] for n in NAMES}


def test_frozen_as_then_every_server_recovers_by_itself(service_factory, mcp_server, auth_server):
    svc = service_factory(oauth_servers(mcp_server.url, NAMES))
    counts = logged_in(svc, auth_server)
    codes = auth_server.counters()["grants"]["authorization_code"]
    os.kill(auth_server.pid, signal.SIGSTOP)
    try:
        stopped = time.time()
        st = wait_all(svc, NAMES, lambda s: s["oauth_status"] == "expired", WINDOW, "every token expired")
        for s in st.values():
            assert s["action"] is None and s["refresh_state"] in ("refreshing", "retrying"), s
        hold(max(0.0, stopped + WINDOW - time.time()))
    finally:
        woke = time.time()  # before the signal: the AS may answer before os.kill returns
        os.kill(auth_server.pid, signal.SIGCONT)
    wait_all(svc, NAMES, lambda s: s["oauth_status"] == "authenticated" and s["refresh_count"] > counts[s["name"]]
             and s["action"] is None, 10, "every server authenticated again")
    seen = time.time() - woke
    c = auth_server.counters()
    assert c["grants"]["authorization_code"] == codes, "somebody logged in again"
    recovery = []
    for n in NAMES:
        log = refreshes_at_as(c, n, since=stopped)
        # Single-flight: one request per server waited out the freeze, and it succeeded when the AS woke.
        assert log and log[0]["result"] == "ok" and log[0]["at"] >= woke, log
        recovery.append(log[0]["at"] - woke)
    figure("frozen AS 5 s: recovery (SIGCONT → refresh at the AS), max s", f"{max(recovery):.3f}")
    figure("frozen AS 5 s: recovery (SIGCONT → status authenticated, polled), s", f"{seen:.2f}")


def test_503_with_retry_after_longer_than_a_token_lifetime(service_factory, mcp_server, auth_server):
    retry_after = 2
    svc = service_factory(oauth_servers(mcp_server.url, NAMES))
    counts = logged_in(svc, auth_server)
    codes = auth_server.counters()["grants"]["authorization_code"]
    start = time.time()
    auth_server.set_fault("503", retry_after=retry_after)  # every refresh until cleared
    st = wait_all(svc, NAMES, lambda s: s["oauth_status"] == "expired" and s["refresh_state"] == "retrying",
                  WINDOW + 1, "expired and retrying")
    for s in st.values():
        assert s["last_error"]["kind"] == "server" and s["action"] is None and s["retry_count"] >= 1, s
    hold(max(0.0, start + WINDOW + 1 - time.time()))
    auth_server.clear_fault()
    cleared = time.time()
    wait_all(svc, NAMES, lambda s: s["oauth_status"] == "authenticated" and s["refresh_count"] > counts[s["name"]]
             and s["last_error"] is None and s["retry_count"] == 0, 15, "every server authenticated again")
    c = auth_server.counters()
    assert c["grants"]["authorization_code"] == codes, "somebody logged in again"
    worst_gap, attempts, recovery = math.inf, [], []
    for n in NAMES:
        failed = refreshes_at_as(c, n, "503", since=start)
        times = [e["at"] for e in failed]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        worst_gap = min([worst_gap, *gaps])
        attempts.append(len(failed))
        # Bounded: no sooner than Retry-After, so at most one attempt per 2 s of the window, plus the first.
        assert 1 <= len(failed) <= math.ceil((WINDOW + 1) / retry_after) + 1, failed
        ok = refreshes_at_as(c, n, "ok", since=cleared)
        recovery.append(ok[0]["at"] - cleared)
    assert worst_gap >= retry_after - 0.05, f"retried {worst_gap:.2f}s after a Retry-After of {retry_after}s"
    figure("503 + Retry-After 2 s for 6 s: attempts per server", attempts)
    figure("503 + Retry-After 2 s: shortest gap between attempts, s", f"{worst_gap:.2f}")
    figure("503 window: recovery (fault cleared → refresh at the AS), max s", f"{max(recovery):.2f}")


RETRY_LINE = re.compile(r"server=(\S+) refresh failed \(network\): .*; retry (\d+) in ([0-9.]+)s")


def test_as_gone_backs_off_then_asks_for_one_login_when_it_forgot_us(service_factory, mcp_server, auth_server):
    svc = service_factory(oauth_servers(mcp_server.url, NAMES))
    logged_in(svc, auth_server)
    events = svc.events()
    port = int(auth_server.base_url.rsplit(":", 1)[1])
    auth_server.stop()  # connection refused from now on; its memory (every refresh token) is gone
    gone = time.time()
    st = wait_all(svc, NAMES, lambda s: s["oauth_status"] == "expired" and s["refresh_state"] == "retrying"
                  and (s["last_error"] or {}).get("kind") == "network", WINDOW, "expired, retrying, network")
    hold(max(0.0, gone + WINDOW - time.time()))
    st = wait_all(svc, NAMES, lambda s: True, 5, "statuses")
    retries = {n: st[n]["retry_count"] for n in NAMES}
    for n in NAMES:
        assert st[n]["action"] is None, st[n]
        # Full-jitter backoff from 1 s: 0.1·2^k ≤ delay_k ≤ 2^k, so ≤ 6 attempts fit in 5 s.
        assert 1 <= retries[n] <= 7, retries
    delays: dict[str, list[tuple[int, float]]] = {}
    for name, attempt, delay in RETRY_LINE.findall(svc.logs()):
        delays.setdefault(name, []).append((int(attempt), float(delay)))
    for n in NAMES:
        assert delays.get(n), f"no 'retry N in Ds' log line for {n}"
        for attempt, delay in delays[n]:
            ceiling = min(60.0, 2.0 ** (attempt - 1))
            assert 0.1 * ceiling - 0.05 <= delay <= ceiling + 0.05, (n, attempt, delay)
    figure("AS gone 5 s: network retries per server", list(retries.values()))
    with start_oauth_server(access_ttl=2.0, port=port) as again:
        # It answers again but has forgotten every client and token: a permanent failure, once each.
        st = wait_all(svc, NAMES, lambda s: s["refresh_state"] == "failed", 40, "a permanent failure")
        for n in NAMES:
            assert st[n]["action"] == "login" and st[n]["last_error"]["kind"] in ("invalid_grant", "invalid_client")
        wait_until(lambda: all(events.failed_for_good(n) for n in NAMES), 5, "refresh_failed events")
        tries = again.counters()["grants"]["refresh_token"]
        hold(3.0)
        assert again.counters()["grants"]["refresh_token"] == tries, "retried after a permanent failure"
        for n in NAMES:
            assert len(events.failed_for_good(n)) == 1
            assert len(events.streak_told(n)) <= 2, "the outage was told more than twice"


@pytest.mark.timeout(120)
def test_as_frozen_past_the_read_timeout_costs_a_login(service_factory, mcp_server, auth_server):
    """A known limit, measured: the AS freezes longer than the 20 s read timeout, then wakes and answers the
    abandoned request first — it rotates the refresh token into the void, and the retry that follows is
    refused (invalid_grant). mcpproxy cannot tell; it asks for a login once and never loops."""
    names = NAMES[:2]
    svc = service_factory(oauth_servers(mcp_server.url, names))
    for n in names:
        svc.login(n)
    events = svc.events()
    os.kill(auth_server.pid, signal.SIGSTOP)
    try:
        stopped = time.time()
        wait_all(svc, names, lambda s: (s["last_error"] or {}).get("kind") == "network", 30,
                 "the read timeout (20 s) turning into a network error")
        timed_out = time.time() - stopped
        hold(1.5)  # the retry is sent and hangs too
    finally:
        os.kill(auth_server.pid, signal.SIGCONT)
    st = wait_all(svc, names, lambda s: s["refresh_state"] == "failed", 10, "the retry refused")
    for n in names:
        assert st[n]["action"] == "login" and st[n]["last_error"]["kind"] == "invalid_grant", st[n]
        assert [e["result"] for e in refreshes_at_as(auth_server.counters(), n, since=stopped)] == \
            ["ok", "invalid_grant"]
    wait_until(lambda: all(len(events.failed_for_good(n)) == 1 for n in names), 5, "one event each")
    figure("AS frozen past the read timeout: network error after, s", f"{timed_out:.1f}")
