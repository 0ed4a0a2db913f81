"""Pass-through overhead per MCP tool call vs a direct call, using bench/passthrough.py's measurement.

bench/passthrough.py (its own author) times an SDK `echo` call through /mcp/{name} and straight to the
test MCP server, alternating calls in one run. This module runs that measurement inside a fleet of N
configured servers so the growth with N is visible, and turns it into a table.
"""

from __future__ import annotations

import asyncio
import importlib
import socket
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field

import psutil

from bench.fleet import ROOT, fleet
from bench.stats import Summary, Table, ms
from tests.harness import free_port, wait_until
from tests.mcpserver.control import obtain_token

TARGET = 0.0015
TARGET_P99 = 0.004
WHEN_MISSED = (
    "Where the time goes: since issue 13 the token comes from the gateway's lease (docs/architecture.md "
    "'Token lease'), so no call asks a TokenActor (that ask was ~2.3 ms: a thread-pool hop and a message routed "
    "external → admin → Supervisor → TokenActor and back through Thespian's queues). What is left is the relay: "
    "aiohttp parsing the client's request, a pooled upstream request, and the SSE answer relayed chunk by chunk, "
    "in one more process than a direct call — on a loaded machine each process hop waits for a core, which the "
    "'service CPU ms/call' column (load-independent) separates from the waiting."
)


@dataclass
class OverheadRun:
    n: int
    proxied: list[float] = field(default_factory=list)  # seconds
    direct: list[float] = field(default_factory=list)
    cpu_per_call: float = float("nan")  # CPU seconds every service process spent per proxied call


def service_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far: unlike latency, it does not grow with the load
    other programs put on the machine."""
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def measure(n: int, calls: int) -> OverheadRun:
    passthrough = importlib.import_module("bench.passthrough")  # the other figure's module; see table() if absent
    run = OverheadRun(n)
    with fleet(n) as f:
        f.login_all(f.names[:1])
        token = obtain_token(f.auth.base_url, f.mcp.url, "mcp:read")["access_token"]
        pids = f.svc.pids()
        cpu = service_cpu(pids)
        proxied, direct = asyncio.run(passthrough.measure(f"{f.svc.base_url}/mcp/{f.names[0]}", f.mcp.url,
                                                          token, calls))
        # The direct calls leave the service idle: its CPU meanwhile is the proxied calls' (and warm-up's).
        run.cpu_per_call = (service_cpu(pids) - cpu) / (len(proxied) + passthrough.WARMUP)
    run.proxied = [v / 1000 for v in proxied]  # bench/passthrough.py reports milliseconds
    run.direct = [v / 1000 for v in direct]
    return run


@dataclass
class FloorRun:
    """One server, three ways in turn, call by call: through the gateway, through a bare relay, direct."""

    calls: dict[str, list[float]] = field(default_factory=dict)  # "gateway" / "relay" / "direct" → seconds
    cpu_per_call: dict[str, float] = field(default_factory=dict)  # "gateway" / "relay" → CPU seconds


@contextmanager
def bare_relay(upstream: str, token: str) -> Iterator[tuple[str, int]]:
    """bench/relay_floor.py on a free loopback port: its URL and PID, stopped by PID on the way out."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.relay_floor", upstream, str(port)], cwd=ROOT,
                            stdin=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdin is not None
        proc.stdin.write(token + "\n")
        proc.stdin.close()

        def listening() -> bool:
            assert proc.poll() is None, f"bench.relay_floor exited with {proc.returncode}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_until(listening, 30, "the bare relay to listen")
        yield f"http://127.0.0.1:{port}/mcp", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure_floor(calls: int) -> FloorRun:
    passthrough = importlib.import_module("bench.passthrough")
    run = FloorRun()
    with fleet(1) as f:
        f.login_all(f.names)
        token = obtain_token(f.auth.base_url, f.mcp.url, "mcp:read")["access_token"]
        with bare_relay(f.mcp.url, token) as (relay_url, relay_pid):
            pids = {"gateway": f.svc.pids(), "relay": [relay_pid]}
            urls = {"gateway": (f"{f.svc.base_url}/mcp/{f.names[0]}", None), "relay": (relay_url, None),
                    "direct": (f.mcp.url, token)}

            async def alternate() -> None:
                async with AsyncExitStack() as stack:
                    sessions = {k: await stack.enter_async_context(passthrough.session(url, tok))
                                for k, (url, tok) in urls.items()}
                    for s in sessions.values():
                        await passthrough.timed_calls(s, passthrough.WARMUP)
                    run.calls = {k: [] for k in sessions}
                    cpu = dict.fromkeys(pids, 0.0)
                    while len(run.calls["direct"]) < calls:
                        n = min(passthrough.BLOCK, calls - len(run.calls["direct"]))
                        for k, s in sessions.items():
                            before = service_cpu(pids[k]) if k in pids else 0.0
                            run.calls[k] += [v / 1000 for v in await passthrough.timed_calls(s, n)]
                            if k in pids:
                                cpu[k] += service_cpu(pids[k]) - before
                    run.cpu_per_call = {k: c / calls for k, c in cpu.items()}

            asyncio.run(alternate())
    return run


def floor_table(run: FloorRun | None, error: str | None = None) -> Table:
    t = Table(title="Pass-through floor: a bare aiohttp relay in the gateway's place (1 server)",
              target="none: the gap to it is what mcpproxy's own code adds",
              headers=["relayed by", "calls each way", "p50 ms", "added p50 ms", "p99 ms", "CPU ms/call"],
              reference=True)
    if run is not None and run.calls:
        direct = statistics.median(run.calls["direct"])
        for k, label in (("gateway", "mcpproxy (/mcp/{name})"), ("relay", "bare aiohttp relay"), ("direct", "nothing (direct)")):
            s = Summary.of(run.calls[k])
            t.rows.append([label, str(s.n), ms(s.p50), ms(statistics.median(run.calls[k]) - direct) if k != "direct"
                           else "–", ms(s.p99), ms(run.cpu_per_call[k]) if k in run.cpu_per_call else "–"])
    if error:
        t.notes.append(f"Not measured: {error}")
    t.notes.append("bench/relay_floor.py: aiohttp's server and one pooled aiohttp client on uvloop, the answer "
                   "relayed chunk by chunk; no middleware, access log, lease or header policy. Timed by "
                   "bench/overhead.py's `measure_floor`: the three ways in turn, call by call after a warm-up, "
                   "in one run; CPU is the relay's (for mcpproxy every service process's) over its own calls.")
    return t


def table(runs: list[OverheadRun], error: str | None = None) -> Table:
    t = Table(
        title="Pass-through overhead per MCP tool call (echo via /mcp/{name} − direct)",
        target="added median ≤ 1.5 ms, p99 ≤ 4 ms",
        headers=["servers", "calls each way", "direct p50 ms", "proxied p50 ms", "added p50 ms",
                 "direct p99 ms", "proxied p99 ms", "added p99 ms", "service CPU ms/call"],
    )
    verdicts = []
    for r in runs:
        d, p = Summary.of(r.direct), Summary.of(r.proxied)
        added = statistics.median(r.proxied) - statistics.median(r.direct)
        t.rows.append([str(r.n), str(d.n), ms(d.p50), ms(p.p50), ms(added), ms(d.p99), ms(p.p99),
                       ms(p.p99 - d.p99), ms(r.cpu_per_call)])
        verdicts.append(added <= TARGET and p.p99 - d.p99 <= TARGET_P99)
    t.met = all(verdicts) if verdicts else None
    if t.met is False:
        t.notes.append(WHEN_MISSED)
    if error:
        t.notes.append(f"Not measured: {error}")
    t.notes.append("Measured by bench/passthrough.py's `measure` (the MCP SDK client, alternating calls "
                   "after a warm-up), with N servers configured and one logged in. 2,000 calls "
                   "each way, so a p99 is the 20th-slowest call: with 1,000 the added p99 at 300 servers ranged "
                   "from 0.9 to 4.4 ms between identical runs.")
    t.notes.append("The gateway's own share (docs/architecture.md 'Pass-through'): it runs on uvloop, formats each "
                   "access line once and weighs its log file with one fstat; the next table puts a bare aiohttp "
                   "relay in its place. The MCP SDK client opens a new connection for every call, direct or not.")
    return t
