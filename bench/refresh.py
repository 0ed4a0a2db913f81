"""Refresh lateness: when the refresh reaches the authorization server vs the token's 80 % mark.

lateness = at − (prev_issued_at + 0.8 · (prev_expires_at − prev_issued_at)), all from the test AS's
refresh log, so it includes everything between the AS issuing the previous token and seeing the next
refresh: the answer's trip back, the commit, the timer, the worker hand-off and the request itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bench import sse
from bench.fleet import fleet
from bench.stats import Summary, Table, ms

THRESHOLD = 0.8
TARGET = 0.250
TARGET_AT = 100


@dataclass(frozen=True)
class Plan:
    ttl_low: float  # logins get lifetimes spread over [ttl_low, ttl_high] so refresh points differ
    ttl_high: float
    steady_ttl: float  # lifetime of every refreshed token
    window: float  # seconds of steady state measured
    margin: float = 3.0  # refreshes due this close to the window's end are left out (they may not have run)


FULL = Plan(ttl_low=10, ttl_high=20, steady_ttl=15, window=60)
QUICK = Plan(ttl_low=1.5, ttl_high=2.5, steady_ttl=2, window=5, margin=1.0)


@dataclass
class RefreshRun:
    n: int
    lateness: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    window: float = 0.0
    sse_delays: list[float] = field(default_factory=list)


def lateness_of(entry: dict[str, Any], threshold: float = THRESHOLD) -> float | None:
    issued, expires = entry.get("prev_issued_at"), entry.get("prev_expires_at")
    if issued is None or expires is None:
        return None
    return float(entry["at"]) - (issued + threshold * (expires - issued))


def measure(n: int, plan: Plan) -> RefreshRun:
    run = RefreshRun(n)
    with fleet(n) as f:
        events = sse.TimedSSE(f.svc.base_url + "/events", f.svc.headers)
        try:
            spread = plan.ttl_high - plan.ttl_low
            f.login_all(ttl_of=lambda i: plan.ttl_low + spread * i / max(1, n))
            f.auth.set_config(access_ttl=plan.steady_ttl)
            f.auth.reset_counters()
            start = time.time()
            time.sleep(plan.window)  # the service refreshes on its own; nothing to wait for but the clock
            end = time.time()
            log = f.auth.counters()["refresh_log"]
        finally:
            events.close()
    run.window = end - start
    for entry in log:
        late = lateness_of(entry)
        if late is None:
            continue
        due = float(entry["at"]) - late
        if not start <= due <= end - plan.margin:
            continue
        if entry["result"] == "ok":
            run.lateness.append(late)
        else:
            run.failures[entry["result"]] = run.failures.get(entry["result"], 0) + 1
    run.sse_delays = sse.delivery_delays(events.named("oauth.token_refreshed"), since=start)
    return run


def table(runs: list[RefreshRun], plan: Plan) -> Table:
    t = Table(
        title="Refresh lateness (refresh seen at the AS − scheduled 80 % mark)",
        target=f"p99 ≤ {TARGET * 1000:.0f} ms at {TARGET_AT} servers",
        headers=["servers", "refreshes", "per s", "p50 ms", "p99 ms", "max ms", "failed"],
    )
    verdict: bool | None = None
    for r in runs:
        s = Summary.of(r.lateness)
        rate = s.n / r.window if r.window else 0.0
        failed = sum(r.failures.values())
        t.rows.append([str(r.n), str(s.n), f"{rate:.1f}", ms(s.p50), ms(s.p99), ms(s.max),
                       str(failed) + (f" {r.failures}" if failed else "")])
        if s.n and (r.n == TARGET_AT or (TARGET_AT not in [x.n for x in runs] and r is runs[-1])):
            verdict = s.p99 <= TARGET and not failed
    t.met = verdict
    t.notes.append(f"Logins get access tokens of {plan.ttl_low:g}–{plan.ttl_high:g} s, spread across the fleet; "
                   f"every refreshed token lives {plan.steady_ttl:g} s. Measured over {plan.window:g} s of steady "
                   "state per size, counting every refresh due in the window.")
    return t
