"""Memory: total PSS of every process of the service, and per server, idle and after many refreshes.

PSS (proportional set size) splits each shared page among the processes sharing it, so the sum over
the service's processes is what the service really costs; per server is the growth over an empty
service divided by N. Then one TokenActor against the floor: N idle actors forked the same way
(bench/floor.py), both read from /proc/PID/smaps and split into heap, other anonymous and file-backed
private pages.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psutil

from bench import floor
from bench.fleet import ROOT, Fleet, fleet
from bench.stats import Table, mb

TARGET = 5 * 2**20
WHEN_MISSED = (
    "Where the memory goes: each server is a TokenActor in its own forked process (docs/architecture.md, "
    "'Processes'), and its PSS is almost all private pages — the next table puts one against the floor of an idle "
    "actor forked the same way and splits both by smaps. What would fix it: fewer processes, not smaller ones — a "
    "TokenActor process hosting a shard of servers (each still its own state machine, timer and generation, so "
    "serialization per server holds) would cut the per-server cost to one server's state (kilobytes); the design "
    "keeps one process per server, so each costs at least the floor."
)
SAMPLES = 3
WHERE_IT_GOES = (
    "Where a TokenActor's extra private pages come from (measured inside one actor, /proc/self/smaps_rollup "
    "read around each handler and effect, and in forked test processes): almost none is memory the actor "
    "keeps (its live Python allocations are ~0.1 MB). A forked child copies each inherited page it writes, "
    "and CPython writes a reference count into every object its code touches. Fixed for issue 13 "
    "(actors/prefork.py, docs/architecture.md 'Start-up order'): on CPython 3.12/3.13 every object the "
    "parent holds is made immortal before the fork (PEP 683), so touching it writes nothing — this took "
    "the floor from 4.4 to ~2.5 MB and the TokenActor from 6.9 to ~3.7 MB at 100 servers; glibc's mmap "
    "threshold is fixed, so LMDB's 1–2 MB page lists come from fresh zero pages and not the inherited "
    "heap (−0.1 MB); the pre-fork rehearsal (actors/warmup.py) also opens a real token store, so LMDB's "
    "first open in a process is shared; the TokenActor's log lines are sent to the EventHub, which writes "
    "them (Thespian's log forwarder in each actor: −0.13 MB); the authorization URL is written by the "
    "gateway from the request the actor checked (urllib.parse and oauthlib in each actor: −0.15 MB); the "
    "Supervisor drops its elder children's queues from multiprocessing's after-fork registry before each "
    "fork, which each new child ran at birth (~5 kB copied per elder sibling: the last of 100 TokenActors "
    "3.5 → 2.9 MB; the floor's parent does the same, so both columns fell). "
    "Then (read page by page: /proc/PID/pagemap and /proc/kpagecount tell a copied page from a shared one, "
    "and the bytes that differ from the parent's page say what was written): Thespian built a full "
    "description of every message it sent or received — the message's repr, its address and timers — for a "
    "DEBUG line it then dropped, ~1 kB temporaries in every actor; it now names the type only "
    "(actors/system.py, −0.1 MB TokenActor); and a child's allocators carried on in the parent's holes — "
    "the free blocks of partly used pymalloc pools and glibc's free chunks, a copied page per hole — so "
    "before the fork the pools are filled and the small free chunks drained (actors/prefork.py: −0.2 MB "
    "TokenActor, −0.1–0.2 MB floor). "
    "What is left is mostly the first run of each code path in the actor: CPython 3.12 writes adaptive "
    "counters into the bytecode of every instruction it cannot specialize (a frozen dataclass's __init__ "
    "calls object.__setattr__, which it never specializes), so each code object an actor runs copies the "
    "page it lies on — ~350 code objects in a TokenActor against ~210 in the floor. "
    "Earlier fixes: the login rehearsal before the fork (quickening, lazy and ABC caches: −0.9 MB on 3.11), "
    "the prctl handle made once (−0.06 MB), CPython 3.12 preferred by make install (−1 MB against 3.11)."
)


@dataclass(frozen=True)
class Plan:
    refresh_ttl: float  # every token lives this long during the churn, so it refreshes every 0.8 · ttl
    churn: float  # seconds of churn


FULL = Plan(refresh_ttl=5, churn=60)
QUICK = Plan(refresh_ttl=2, churn=3)


@dataclass(frozen=True)
class Private:
    """Where one process's private pages are, from /proc/PID/smaps (bytes; Private_Dirty + Private_Clean)."""

    pss: int
    heap: int  # [heap]: glibc malloc's brk heap (objects over 512 bytes, dict and list storage)
    anon: int  # every other anonymous mapping: pymalloc's arenas, thread stacks, malloc's thread arenas
    file: int  # file-backed: the data pages of libpython/python and of the extension modules

    @property
    def private(self) -> int:
        return self.heap + self.anon + self.file


def smaps(pid: int) -> Private:
    totals = {"pss": 0, "heap": 0, "anon": 0, "file": 0}
    where = "anon"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            key, _, rest = line.partition(" ")
            if not key.endswith(":"):  # a mapping's header: address perms offset dev inode [path]
                path = rest.split(maxsplit=4)[4].strip() if len(rest.split(maxsplit=4)) == 5 else ""
                where = "heap" if path == "[heap]" else "file" if path.startswith("/") else "anon"
            elif key == "Pss:":
                totals["pss"] += int(rest.split()[0]) * 1024
            elif key in ("Private_Dirty:", "Private_Clean:"):
                totals[where] += int(rest.split()[0]) * 1024
    return Private(**totals)


def median_private(pids: list[int]) -> Private | None:
    """The median of each field over the processes (each read from outside; gone ones skipped)."""
    readings = []
    for pid in pids:
        try:
            readings.append(smaps(pid))
        except OSError:
            pass
    if not readings:
        return None
    return Private(*(int(statistics.median(getattr(r, k) for r in readings)) for k in ("pss", "heap", "anon", "file")))


def named(pids: list[int], prefix: str) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).name().startswith(prefix):
                out.append(pid)
        except psutil.Error:
            pass
    return out


@dataclass
class MemoryRun:
    n: int
    processes: int
    idle: int
    after: int = 0
    refreshes: int = 0
    actor: Private | None = None  # a TokenActor (median), logged in and idle
    floor: Private | None = None  # an idle actor forked the same way (median), same N


def sample(f: Fleet) -> tuple[int, int]:
    """Median total PSS of SAMPLES readings a moment apart, and the process count."""
    readings = []
    for _ in range(SAMPLES):
        readings.append(f.pss())
        time.sleep(0.2)
    return int(statistics.median(r[0] for r in readings)), max(r[1] for r in readings)


def baseline() -> MemoryRun:
    with fleet(0) as f:
        total, procs = sample(f)
    return MemoryRun(0, procs, total, total)


def measure(n: int, plan: Plan) -> MemoryRun:
    with fleet(n) as f:
        f.login_all()
        idle, procs = sample(f)
        run = MemoryRun(n, procs, idle, actor=median_private(named(f.svc.pids(), "mcpproxy:")))
        f.auth.set_config(access_ttl=plan.refresh_ttl)
        f.auth.reset_counters()
        with ThreadPoolExecutor(8) as pool:  # one refresh each puts every server on the short lifetime
            list(pool.map(lambda name: f.svc.api("POST", f"/api/v1/servers/{name}/refresh"), f.names))
        time.sleep(plan.churn)  # the service refreshes on its own meanwhile
        run.after, _ = sample(f)
        run.refreshes = int(f.auth.counters()["succeeded"].get("refresh_token", 0))
    run.floor = floor_of(n)
    return run


def floor_of(n: int) -> Private | None:
    """N idle actors forked the way TokenActors are (bench/floor.py), measured from outside like them."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.floor", str(n)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline().strip()
        if line != floor.READY:
            raise RuntimeError(f"bench.floor did not start: {line!r}")
        time.sleep(1)  # let every child settle after its ping
        kids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        return median_private(named(kids, floor.IDLE_NAME))
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the floor's actors with it
            proc.wait()


def per_server(run: MemoryRun, base: MemoryRun, total: int) -> float:
    return (total - base.idle) / run.n if run.n else float("nan")


def table(base: MemoryRun, runs: list[MemoryRun], plan: Plan) -> Table:
    t = Table(
        title="Memory (PSS of every service process)",
        target="≤ 5 MB PSS per server",
        headers=["servers", "processes", "idle MB", "idle MB/server", "refreshes/server",
                 "after MB", "after MB/server"],
    )
    t.rows.append(["0", str(base.processes), mb(base.idle), "–", "–", "–", "–"])
    worst = 0.0
    for r in runs:
        idle_per, after_per = per_server(r, base, r.idle), per_server(r, base, r.after)
        worst = max(worst, idle_per, after_per)
        t.rows.append([str(r.n), str(r.processes), mb(r.idle), mb(idle_per), f"{r.refreshes / r.n:.1f}",
                       mb(r.after), mb(after_per)])
    t.met = worst <= TARGET if runs else None
    if t.met is False:
        t.notes.append(WHEN_MISSED)
    t.notes.append("MB/server = (total − the empty service's total) / servers. Each server is one TokenActor "
                   "process; the empty service is the gateway, Thespian's admin and logger, the supervisor, "
                   "the event hub and the OAuth worker.")
    t.notes.append(f"'after': every token given a {plan.refresh_ttl:g} s lifetime and left to refresh for "
                   f"{plan.churn:g} s (refreshes/server shows how many each did — an hour with 5-minute tokens "
                   "is 15).")
    return t


FLOOR_MARGIN = 2**20
FLOOR_AT = 100


def floor_table(runs: list[MemoryRun]) -> Table:
    """Each TokenActor's PSS against the floor's, and where each one's private pages are (smaps)."""
    t = Table(
        title="Memory of one TokenActor against the floor (idle actor forked the same way)",
        target=f"TokenActor PSS ≤ floor + 1 MB at {FLOOR_AT} idle servers",
        headers=["servers", "TokenActor PSS", "floor PSS", "difference", "TokenActor private: heap / anon / file",
                 "floor private: heap / anon / file"],
    )

    def split(p: Private) -> str:
        return f"{mb(p.private)}: {mb(p.heap)} / {mb(p.anon)} / {mb(p.file)}"

    judged = None
    for r in runs:
        if r.actor is None or r.floor is None:
            t.rows.append([str(r.n), "–", "–", "–", "–", "–"])
            continue
        diff = r.actor.pss - r.floor.pss
        t.rows.append([str(r.n), mb(r.actor.pss), mb(r.floor.pss), mb(diff), split(r.actor), split(r.floor)])
        if r.n == FLOOR_AT or (judged is None and r.n > FLOOR_AT):
            judged = diff <= FLOOR_MARGIN
    t.met = judged
    t.notes.append("MB, the median over the N processes of each kind, read from /proc/PID/smaps from outside. "
                   "TokenActor: logged in, nothing in flight, measured in the idle sample of the run above. "
                   "Floor: bench/floor.py in the same run with the same N — the service's own imports and "
                   "start_actor_system (pre-fork imports, rehearsal, share_heap()), then a top-level parent that, "
                   "like the Supervisor, runs share_heap() (collect, make immortal, freeze) and forks N actors "
                   "of a trivial class that answer one ping and idle.")
    t.notes.append("private = Private_Dirty + Private_Clean: heap is glibc's [heap] (objects over 512 bytes, dict "
                   "and list storage); anon is every other anonymous mapping (pymalloc's arenas, thread stacks); "
                   "file is file-backed (libpython's and the extensions' data pages). Shared pages count in PSS "
                   "divided among their sharers, so PSS falls as N grows while the private part stays.")
    t.notes.append(WHERE_IT_GOES)
    return t
