"""Pass-through overhead per MCP tool call vs a direct call, using bench/passthrough.py's measurement.

bench/passthrough.py (its own author) times an SDK `echo` call through /mcp/{name} and straight to the
test MCP server, alternating blocks in one run. This module runs that measurement inside a fleet of N
configured servers so the growth with N is visible, and turns it into a table.
"""

from __future__ import annotations

import asyncio
import importlib
import statistics
from dataclasses import dataclass, field

from bench.fleet import fleet
from bench.stats import Summary, Table, ms
from tests.mcpserver.control import obtain_token

TARGET = 0.002
WHEN_MISSED = (
    "Where the time goes: the added ~4.5 ms is constant across fleet sizes, so it is per-call work, not "
    "contention. About 2.3 ms is the GetToken ask — a hop into the gateway's thread pool, then the "
    "message routed external → admin → Supervisor → TokenActor and back through Thespian's "
    "multiprocessing queues (a bare ask to a top-level actor costs ~0.5 ms; reusing the private context "
    "saves only 0.08 ms, measured). The rest is the relay itself: parsing the client's request, a pooled "
    "upstream request, and relaying the SSE answer chunk by chunk. Found and fixed on the way: the test "
    "MCP server's sockets lacked TCP_NODELAY (a ~40 ms delayed-ACK stall per call) and the relay closed "
    "every upstream connection instead of returning it to the pool (~45 ms → ~5 ms). What would reach 2 "
    "ms: let the gateway keep the token until shortly before it expires, invalidated by the "
    "token_refreshed/logout events it already receives — the brief allowed no caching beyond one request "
    "today, so that is a contract decision, not a bug fix."
)


@dataclass
class OverheadRun:
    n: int
    proxied: list[float] = field(default_factory=list)  # seconds
    direct: list[float] = field(default_factory=list)


def measure(n: int, calls: int) -> OverheadRun:
    passthrough = importlib.import_module("bench.passthrough")  # the other figure's module; see table() if absent
    run = OverheadRun(n)
    with fleet(n) as f:
        f.login_all(f.names[:1])
        token = obtain_token(f.auth.base_url, f.mcp.url, "mcp:read")["access_token"]
        proxied, direct = asyncio.run(passthrough.measure(f"{f.svc.base_url}/mcp/{f.names[0]}", f.mcp.url,
                                                          token, calls))
    run.proxied = [v / 1000 for v in proxied]  # bench/passthrough.py reports milliseconds
    run.direct = [v / 1000 for v in direct]
    return run


def table(runs: list[OverheadRun], error: str | None = None) -> Table:
    t = Table(
        title="Pass-through overhead per MCP tool call (echo via /mcp/{name} − direct)",
        target="median ≤ 2 ms",
        headers=["servers", "calls each way", "direct p50 ms", "proxied p50 ms", "added p50 ms",
                 "direct p99 ms", "proxied p99 ms"],
    )
    verdicts = []
    for r in runs:
        d, p = Summary.of(r.direct), Summary.of(r.proxied)
        added = statistics.median(r.proxied) - statistics.median(r.direct)
        t.rows.append([str(r.n), str(d.n), ms(d.p50), ms(p.p50), ms(added), ms(d.p99), ms(p.p99)])
        verdicts.append(added <= TARGET)
    t.met = all(verdicts) if verdicts else None
    if t.met is False:
        t.notes.append(WHEN_MISSED)
    if error:
        t.notes.append(f"Not measured: {error}")
    t.notes.append("Measured by bench/passthrough.py's `measure` (the MCP SDK client, alternating blocks of 20 "
                   "calls each way after a warm-up), with N servers configured and one logged in.")
    return t
