"""Startup to ready: from `mcpproxy serve` starting to /readyz answering 200, with N tokens in the store.

The tokens are copies of one real login (valid for an hour, so none is due for refresh): every
TokenActor loads its record at start, which is the work being timed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.fleet import Fleet, fleet, new_service, pss_of, server_names
from bench.stats import Summary, Table, mb
from tests.harness import open_store

TARGET = 5.0
TARGET_AT = 100


@dataclass
class StartupRun:
    n: int
    seconds: list[float] = field(default_factory=list)
    pss: int = 0
    processes: int = 0


def seed_store(f: Fleet, data_dir: Path, names: list[str]) -> None:
    """Writes a store holding a copy of f's logged-in server's token under each name."""
    src = open_store(f.svc.data_dir)
    try:
        record = src.get_token(f.names[0])
        assert record is not None and record.has_token and record.issuer, "the seed login left no token"
        clients = {record.issuer: src.get_client(record.issuer)}
    finally:
        src.close()
    dst = open_store(data_dir)
    try:
        dst.check_schema()
        for issuer, client in clients.items():
            if client:
                dst.put_client(issuer, client)
        for name in names:
            dst.put_token(name, record)
    finally:
        dst.close()


def measure(sizes: list[int], repeats: int) -> list[StartupRun]:
    runs = []
    with fleet(1) as f:
        f.login_all()
        f.svc.stop()  # the store is read while no one else holds it
        for n in sizes:
            run = StartupRun(n)
            names = server_names(n)
            svc = new_service(f.workdir / f"startup-{n}", names, f.mcp.url)
            seed_store(f, svc.data_dir, names)
            for _ in range(repeats):
                began = time.perf_counter()
                try:
                    svc.start()
                    run.seconds.append(time.perf_counter() - began)
                    run.pss, run.processes = pss_of(svc.pids())
                finally:
                    svc.stop()
            runs.append(run)
    return runs


def table(runs: list[StartupRun]) -> Table:
    t = Table(
        title="Startup to ready (/readyz 200) with N stored tokens",
        target=f"≤ {TARGET:g} s at {TARGET_AT} servers",
        headers=["servers", "starts", "p50 s", "max s", "processes", "PSS at ready MB"],
    )
    verdicts = []
    for r in runs:
        s = Summary.of(r.seconds)
        t.rows.append([str(r.n), str(s.n), f"{s.p50:.2f}", f"{s.max:.2f}", str(r.processes), mb(r.pss)])
        if r.n == TARGET_AT or (TARGET_AT not in [x.n for x in runs] and r is runs[-1]):
            verdicts.append(s.max <= TARGET)
    t.met = all(verdicts) if verdicts else None
    t.notes.append("Each start is a fresh `mcpproxy serve` process on the same store; the time runs from "
                   "spawning it to the first 200 from /readyz (polled every 10 ms). The verdict uses the "
                   "slowest start.")
    return t
