"""A long run of refreshes (issue 13, memory): does a TokenActor's memory level off, or grow with every refresh?

    .venv/bin/python -m bench.soak [--servers 5] [--minutes 10] [--ttl 1] [--out docs/benchmarks.md]   (make bench-soak)

Logs N servers in, puts them on 1 s access tokens (so each refreshes every 0.8 s: ten minutes are ~750
refreshes per server, three weeks of hourly tokens), then reads the TokenActors' private memory
(/proc/PID/smaps, median over the actors) once a minute. A leak grows the same amount in every minute; pages
copied from the Supervisor the first time some code runs grow less each minute and stop. Writes its table
into docs/benchmarks.md between the markers below, leaving the other figures as they are.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.fleet import Fleet, fleet
from bench.memory import Private, median_private, named
from bench.stats import Table, write_section

BEGIN = "<!-- bench-soak: written by `python -m bench.soak` (make bench-soak) -->"
END = "<!-- /bench-soak -->"
#: Private memory a TokenActor may still gain per 100 refreshes over the run's second half. A refresh handles a
#: few kB (the token response, its sealed record, the event): keeping any of it would be well over this.
TARGET_PER_100 = 64 * 1024


@dataclass
class Reading:
    minute: float
    refreshes: float  # per server, as counted by the test authorization server
    actor: Private


@dataclass
class SoakRun:
    servers: int
    ttl: float
    readings: list[Reading] = field(default_factory=list)
    failed: int = 0

    def growth_per_100(self) -> float:
        """Bytes of private memory gained per 100 refreshes from the middle reading to the last."""
        if len(self.readings) < 3:
            return float("nan")
        mid, last = self.readings[len(self.readings) // 2], self.readings[-1]
        done = last.refreshes - mid.refreshes
        return (last.actor.private - mid.actor.private) * 100 / done if done > 0 else float("nan")


def refreshes(f: Fleet) -> tuple[float, int]:
    counters = f.auth.counters()
    ok = int(counters["succeeded"].get("refresh_token", 0))
    return ok / len(f.names), int(counters["failed"])  # failed token requests of any grant


def measure(servers: int, minutes: float, ttl: float, every: float = 60.0) -> SoakRun:
    run = SoakRun(servers, ttl)
    with fleet(servers) as f:
        f.login_all()
        actors = named(f.svc.pids(), "mcpproxy:")
        f.auth.set_config(access_ttl=ttl)
        f.auth.reset_counters()
        with ThreadPoolExecutor(8) as pool:  # one refresh each puts every server on the short tokens now
            list(pool.map(lambda name: f.svc.api("POST", f"/api/v1/servers/{name}/refresh"), f.names))
        began = time.monotonic()
        for i in range(1, int(minutes * 60 / every) + 1):
            time.sleep(max(0.0, began + i * every - time.monotonic()))  # a fixed clock: nothing to wait for
            per_server, run.failed = refreshes(f)
            actor = median_private(actors)
            if actor is None:
                raise RuntimeError("every TokenActor is gone")
            run.readings.append(Reading(i * every / 60, per_server, actor))
            print(f"   {i * every / 60:4.0f} min  {per_server:5.0f} refreshes/server  private "
                  f"{actor.private / 1024:6.0f} kB (heap {actor.heap / 1024:.0f}, other anon {actor.anon / 1024:.0f})",
                  flush=True)
    return run


def table(run: SoakRun) -> Table:
    t = Table(title=f"TokenActor memory over a long run of refreshes ({run.servers} servers, {run.ttl:g} s tokens)",
              target=f"private memory gains ≤ {TARGET_PER_100 // 1024} kB per 100 refreshes over the second half",
              headers=["minute", "refreshes per server", "private kB", "heap kB", "other anon kB", "file kB",
                       "PSS kB", "gained kB"])
    prev = None
    for r in run.readings:
        a = r.actor
        t.rows.append([f"{r.minute:g}", f"{r.refreshes:.0f}", f"{a.private / 1024:.0f}", f"{a.heap / 1024:.0f}",
                       f"{a.anon / 1024:.0f}", f"{a.file / 1024:.0f}", f"{a.pss / 1024:.0f}",
                       "–" if prev is None else f"{(a.private - prev.private) / 1024:+.0f}"])
        prev = a
    grown = run.growth_per_100()
    t.met = None if math.isnan(grown) else grown <= TARGET_PER_100 and run.failed == 0
    t.notes.append(f"Second half: {grown / 1024:+.1f} kB per 100 refreshes; failed refreshes: {run.failed}.")
    t.notes.append("Median over the TokenActors, read from /proc/PID/smaps: private = Private_Dirty + Private_Clean; "
                   "'other anon' is pymalloc's arenas and every anonymous mapping but glibc's [heap]. What a "
                   "TokenActor gains after its first refreshes are pages it shares with the Supervisor until it "
                   "first writes them (docs/architecture.md 'Start-up order'), so the gain shrinks as fewer are left.")
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    ap.add_argument("--servers", type=int, default=5)
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--ttl", type=float, default=1.0, help="access-token lifetime in seconds")
    ap.add_argument("--out", default="docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.servers < 1 or args.minutes < 2 or args.ttl <= 0:
        ap.error("need --servers ≥ 1, --minutes ≥ 2 and --ttl > 0")
    command = shlex.join([".venv/bin/python", "-m", "bench.soak", *(sys.argv[1:] if argv is None else argv)])
    began = time.monotonic()
    t = table(measure(args.servers, args.minutes, args.ttl))
    print(t.text(), flush=True)
    out = Path(args.out)
    write_section(out, (BEGIN, END), "Memory over a long run", command, time.monotonic() - began, [t])
    print(f"wrote {out}: {t.verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
