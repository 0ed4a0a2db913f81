"""1,000 servers (issue 13): one service with N OAuth servers against the test authorization server.

    .venv/bin/python -m bench.thousand [--servers 1000] [--quick] [--out docs/benchmarks.md]   (make bench-1000)

Measures, in one run: start-up to ready (empty store, then with N stored tokens), the time to log all N
in, idle CPU of every service process over a quiet minute (no refresh due), PSS in total and per server,
and refresh lateness with 60 s tokens, with the CPU each kind of process spent meanwhile (the Supervisor
routes every message between its children, so it is the first suspect when lateness grows). Writes its
tables into docs/benchmarks.md between the markers below, leaving the other figures as they are.
"""

from __future__ import annotations

import argparse
import operator
import os
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.fleet import Fleet, fleet, pss_of
from bench.refresh import lateness_of
from bench.stats import Summary, Table, mb, ms, write_section

BEGIN = "<!-- bench-1000: written by `python -m bench.thousand` (make bench-1000) -->"
END = "<!-- /bench-1000 -->"
LATENESS_TARGET = 0.250
IDLE_CPU_TARGET = 5.0  # % of one core
PSS_TARGET = 5 * 2**20  # per server (issue 7's memory target)
ROLES = ("gateway", "thespian admin+logger", "supervisor", "event hub", "oauth worker", "token actors")
BACKENDS = ("test AS", "test MCP server")


@dataclass(frozen=True)
class Plan:
    servers: int
    token_ttl: float  # the refresh-lateness phase's token lifetime (refreshed at 80 %)
    pace: float  # the phase's first refreshes are requested evenly over this many seconds
    window: float  # seconds of scheduled refreshes measured
    idle: float  # seconds of the idle-CPU measurement
    margin: float = 5.0


FULL = Plan(servers=1000, token_ttl=60, pace=45, window=60, idle=60)
QUICK = Plan(servers=20, token_ttl=6, pace=4, window=8, idle=5, margin=2.0)


@dataclass
class ThousandRun:
    plan: Plan
    ready_empty: float = 0.0
    ready_stored: float = 0.0
    login_seconds: float = 0.0
    stop_seconds: float = 0.0
    idle_cpu: dict[str, float] = field(default_factory=dict)  # % of one core, by role
    busy_cpu: dict[str, float] = field(default_factory=dict)
    pss: int = 0
    processes: int = 0
    lateness: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    refresh_window: float = 0.0
    fd_soft: int = 0
    fd_hard: int = 0
    fds: dict[str, int] = field(default_factory=dict)  # open descriptors, by role (the largest process)
    threads: dict[str, int] = field(default_factory=dict)  # threads, by role (all its processes)
    pss_roles: dict[str, list[int]] = field(default_factory=dict)  # PSS bytes of each process, by role
    notes: list[str] = field(default_factory=list)


def role_of(proc: psutil.Process, main_pid: int) -> str:
    if proc.pid == main_pid:
        return "gateway"
    name = proc.name()
    if name.startswith("mcpproxy:"):
        return "token actors"
    return {"mcpproxy-sup": "supervisor", "mcpproxy-hub": "event hub",
            "mcpproxy-oauth": "oauth worker"}.get(name, "thespian admin+logger")


def cpu_by_role(f: Fleet) -> dict[int, tuple[str, float]]:
    assert f.svc.proc is not None
    out = {}
    for pid in f.svc.pids():
        try:
            p = psutil.Process(pid)
            t = p.cpu_times()
            out[pid] = (role_of(p, f.svc.proc.pid), t.user + t.system)
        except psutil.NoSuchProcess:
            pass
    return out


def backends_cpu(f: Fleet) -> dict[int, tuple[str, float]]:
    out = {}
    for role, pid in (("test AS", f.auth.pid), ("test MCP server", f.mcp.pid)):
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = (role, t.user + t.system)
        except psutil.NoSuchProcess:
            pass
    return out


def cpu_over(f: Fleet, seconds: float) -> dict[str, float]:
    """% of one core each role spent over `seconds` of wall time (processes alive at both readings); the test
    backends apart (not in the total), and the machine's load average at the end."""
    before = {**cpu_by_role(f), **backends_cpu(f)}
    began = time.monotonic()
    time.sleep(seconds)  # the service runs on its own; nothing to wait for but the clock
    after = {**cpu_by_role(f), **backends_cpu(f)}
    wall = time.monotonic() - began
    pct = dict.fromkeys((*ROLES, *BACKENDS), 0.0)
    for pid, (role, t1) in after.items():
        if pid in before:
            pct[role] += (t1 - before[pid][1]) / wall * 100
    pct["total"] = sum(pct[r] for r in ROLES)
    pct["load"] = os.getloadavg()[0]
    return pct


def by_role(f: Fleet, read: Callable[[psutil.Process], int], combine: Callable[[int, int], int]) -> dict[str, int]:
    """One figure of every service process, combined per kind (the largest, or the sum)."""
    assert f.svc.proc is not None
    out: dict[str, int] = {}
    for pid in f.svc.pids():
        try:
            p = psutil.Process(pid)
            role = role_of(p, f.svc.proc.pid)
            value = read(p)
        except psutil.NoSuchProcess:
            continue
        out[role] = combine(out[role], value) if role in out else value
    return out


def pss_by_role(f: Fleet) -> dict[str, list[int]]:
    assert f.svc.proc is not None
    out: dict[str, list[int]] = {}
    for pid in f.svc.pids():
        try:
            p = psutil.Process(pid)
            out.setdefault(role_of(p, f.svc.proc.pid), []).append(p.memory_full_info().pss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def pss_text(roles: dict[str, list[int]]) -> str:
    parts = []
    for role in ROLES:
        sizes = sorted(roles.get(role, []))
        if not sizes:
            continue
        text = f"{role} {mb(sum(sizes))}"
        if len(sizes) > 1:
            text += f" ({len(sizes)} processes, median {mb(sizes[len(sizes) // 2])} each)"
        parts.append(text)
    return ", ".join(parts)


def log_in_all(f: Fleet) -> float:
    began = time.monotonic()
    f.login_all()
    return time.monotonic() - began


def measure(plan: Plan) -> ThousandRun:
    run = ThousandRun(plan)
    run.fd_soft, run.fd_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with fleet(plan.servers, access_ttl=3600, start=False) as f:
        began = time.monotonic()
        f.svc.start(timeout=1800)
        run.ready_empty = time.monotonic() - began
        print(f"   ready with an empty store in {run.ready_empty:.1f} s", flush=True)
        run.login_seconds = log_in_all(f)
        print(f"   logged {plan.servers} in in {run.login_seconds:.1f} s", flush=True)
        run.stop_seconds = stop_counting(f, run, "the restart")
        print(f"   stopped in {run.stop_seconds:.1f} s", flush=True)
        began = time.monotonic()
        f.svc.start(timeout=1800)
        run.ready_stored = time.monotonic() - began
        print(f"   ready with {plan.servers} stored tokens in {run.ready_stored:.1f} s", flush=True)
        if "raised the open-file limit" in f.svc.logs():
            run.notes.append("The service raised its own soft open-file limit to the hard limit at start (its log says so).")
        time.sleep(min(10.0, plan.idle))  # let the start's probes and events settle
        run.idle_cpu = cpu_over(f, plan.idle)
        run.pss, run.processes = pss_of(f.svc.pids())
        run.pss_roles = pss_by_role(f)
        run.fds = by_role(f, psutil.Process.num_fds, max)
        run.threads = by_role(f, psutil.Process.num_threads, operator.add)
        print(f"   idle CPU {run.idle_cpu['total']:.1f} % of one core; PSS {run.pss / 2**20:.0f} MB", flush=True)
        lateness_phase(f, plan, run)
        stop_counting(f, run, "the end")
    return run


def stop_counting(f: Fleet, run: ThousandRun, when: str) -> float:
    """Stops the service; processes still alive once `serve` has exited are noted (and killed by the harness)."""
    began = time.monotonic()
    try:
        f.svc.stop(timeout=600)
    except AssertionError as e:
        run.notes.append(f"At {when}, {str(e).count(',') + 1} process(es) were still alive when `serve` exited "
                         "(killed by the bench).")
    return time.monotonic() - began


def lateness_phase(f: Fleet, plan: Plan, run: ThousandRun) -> None:
    """Every server onto token_ttl tokens, requested evenly over `pace` s; then the scheduled refreshes of the
    following cycle are measured at the AS."""
    f.auth.set_config(access_ttl=plan.token_ttl)
    f.auth.reset_counters()
    began = time.time()
    step = plan.pace / len(f.names)

    def refresh(i: int) -> None:
        time.sleep(max(0.0, began + i * step - time.time()))
        f.svc.api("POST", f"/api/v1/servers/{f.names[i]}/refresh", timeout=120)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(refresh, range(len(f.names))))
    start = began + 0.8 * plan.token_ttl
    end = start + plan.window
    time.sleep(max(0.0, start - time.time()))
    run.busy_cpu = cpu_over(f, plan.window + plan.margin)
    log = f.auth.counters()["refresh_log"]
    run.refresh_window = plan.window
    for entry in log:
        late = lateness_of(entry)
        if late is None:
            continue
        due = float(entry["at"]) - late
        if not start <= due <= end:
            continue
        if entry["result"] == "ok":
            run.lateness.append(late)
        else:
            run.failures[entry["result"]] = run.failures.get(entry["result"], 0) + 1


def tables(run: ThousandRun) -> list[Table]:
    n = run.plan.servers
    s = Summary.of(run.lateness)
    failed = sum(run.failures.values())
    late = Table(title=f"Refresh lateness at {n} servers ({run.plan.token_ttl:g} s tokens)",
                 target=f"p99 ≤ {LATENESS_TARGET * 1000:.0f} ms",
                 headers=["servers", "refreshes", "per s", "p50 ms", "p99 ms", "max ms", "failed"])
    late.rows.append([str(n), str(s.n), f"{s.n / run.refresh_window:.1f}" if run.refresh_window else "–",
                      ms(s.p50), ms(s.p99), ms(s.max), str(failed) + (f" {run.failures}" if failed else "")])
    late.met = (s.p99 <= LATENESS_TARGET and not failed) if s.n else None
    late.notes.append(f"Every server was put on {run.plan.token_ttl:g} s tokens by one refresh each, requested "
                      f"evenly over {run.plan.pace:g} s; the refreshes the service then scheduled itself (80 % "
                      f"mark) in the next {run.plan.window:g} s are measured at the test AS, as in the 10–300 runs.")
    late.notes.append("CPU meanwhile, % of one core: " + cpu_text(run.busy_cpu) + ".")

    sizes = Table(title=f"{n} servers: start-up, logins, idle CPU, memory", target="see each row",
                  headers=["figure", "value", "target", "verdict"])
    per = run.pss / n if n else float("nan")
    idle = run.idle_cpu.get("total", float("nan"))
    verdicts = []

    def row(figure: str, value: str, target: str, met: bool | None) -> None:
        sizes.rows.append([figure, value, target, {True: "met", False: "MISSED", None: "reported"}[met]])
        if met is not None:
            verdicts.append(met)

    row("start-up to ready, empty store", f"{run.ready_empty:.1f} s", "– (≤ 5 s is the target at 100)", None)
    row(f"start-up to ready, {n} stored tokens", f"{run.ready_stored:.1f} s", "– (≤ 5 s is the target at 100)", None)
    row(f"time to log all {n} in ({4} at a time)", f"{run.login_seconds:.1f} s", "–", None)
    row("SIGTERM to every process gone", f"{run.stop_seconds:.1f} s", "–", None)
    row(f"idle CPU, every process, {run.plan.idle:g} s, no refresh due", f"{idle:.1f} % of one core",
        f"≤ {IDLE_CPU_TARGET:g} %", idle <= IDLE_CPU_TARGET)
    row("PSS, every process", f"{mb(run.pss)} MB in {run.processes} processes", "–", None)
    row("PSS per server (total / servers)", f"{mb(per)} MB", f"≤ {PSS_TARGET / 2**20:g} MB", per <= PSS_TARGET)
    if run.threads:
        row("threads, every process (tasks the service counts against systemd's TasksMax)",
            f"{sum(run.threads.values())}: " + ", ".join(f"{k} {v}" for k, v in run.threads.items()), "–", None)
    sizes.met = all(verdicts) if verdicts else None
    sizes.notes.append("Idle CPU by kind of process, % of one core: " + cpu_text(run.idle_cpu) + ".")
    if run.pss_roles:
        sizes.notes.append("PSS by kind of process, MB, idle: " + pss_text(run.pss_roles) + ".")
    sizes.notes.append(f"Open-file limit of the runner: soft {run.fd_soft}, hard {run.fd_hard}; most descriptors "
                       "open in one process of each kind: " + ", ".join(f"{k} {v}" for k, v in run.fds.items())
                       + ". The Supervisor holds every child's queue (pipe ends and a semaphore each), so its "
                       "count grows with the servers; the service raises its soft limit to the hard one at start.")
    sizes.notes += run.notes
    return [late, sizes]


def cpu_text(pct: dict[str, float]) -> str:
    service = ", ".join(f"{role} {pct.get(role, 0.0):.1f}" for role in (*ROLES, "total"))
    backends = ", ".join(f"{role} {pct.get(role, 0.0):.1f}" for role in BACKENDS)
    return f"{service} (outside the service: {backends}; the machine's 1-minute load average {pct.get('load', 0):.1f} " \
           f"on {os.cpu_count()} cores)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.thousand", description=__doc__.split("\n")[0])
    ap.add_argument("--servers", type=int, default=None, help="default 1000 (20 with --quick)")
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    ap.add_argument("--out", default="docs/benchmarks.md")
    args = ap.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.servers:
        plan = Plan(args.servers, plan.token_ttl, plan.pace, plan.window, plan.idle, plan.margin)
    command = shlex.join([".venv/bin/python", "-m", "bench.thousand", *(sys.argv[1:] if argv is None else argv)])
    began = time.monotonic()
    run = measure(plan)
    tabs = tables(run)
    for t in tabs:
        print(t.text(), flush=True)
    out = Path(args.out)
    write_section(out, (BEGIN, END), tabs[1].title.split(':')[0], command, time.monotonic() - began, tabs)
    print(f"wrote {out}; lateness samples {len(run.lateness)}, median {statistics.median(run.lateness) * 1000:.1f} ms"
          if run.lateness else f"wrote {out}; no lateness samples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
