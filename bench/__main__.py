"""`python -m bench` (`make bench`): every figure of issue 7 against the real service, on loopback.

    python -m bench [--quick] [--sizes 10,100,300] [--out docs/benchmarks.md] [--only refresh,memory,...]

Prints a table per figure and writes them, with the machine and the command, to --out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import psutil

from bench import aggregate, logout, memory, overhead, refresh, soak, sse, startup, thousand
from bench.fleet import shared_backends
from bench.stats import Table, kept_sections

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("refresh", "memory", "startup", "logout", "passthrough", "aggregate")
#: Benchmark services keep their data key in a file beside their data dir, never in the keyring of the person.
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")


def machine() -> list[tuple[str, str]]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        ("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("cores", f"{os.cpu_count()} ({cpu})"),
        ("RAM", f"{psutil.virtual_memory().total / 2**30:.1f} GiB"),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        ("Thespian", metadata.version("thespian")),
        ("mcpproxy", metadata.version("mcpproxy")),
    ]


def guarded(title: str, target: str, run: Callable[[], list[Table]]) -> list[Table]:
    """Runs one figure; a figure that fails becomes a table saying so, and the others still run."""
    began = time.monotonic()
    print(f"-- {title} …", flush=True)
    try:
        tables = run()
    except Exception as e:  # noqa: BLE001 — report it and go on with the other figures
        traceback.print_exc()
        t = Table(title=title, target=target, headers=["error"], rows=[[f"{type(e).__name__}: {e}"[:300]]])
        t.notes.append("This figure failed to run; the traceback is in the runner's output.")
        tables = [t]
    for t in tables:
        print(t.text(), flush=True)
    print(f"   ({time.monotonic() - began:.0f} s)", flush=True)
    return tables


def run_refresh(sizes: list[int], quick: bool) -> list[Table]:
    plan = refresh.QUICK if quick else refresh.FULL
    runs = [refresh.measure(n, plan) for n in sizes]
    return [refresh.table(runs, plan), sse.table({r.n: r.sse_delays for r in runs})]


def run_memory(sizes: list[int], quick: bool) -> list[Table]:
    plan = memory.QUICK if quick else memory.FULL
    base = memory.baseline()
    runs = [memory.measure(n, plan) for n in sizes]
    return [memory.table(base, runs, plan), memory.floor_table(runs)]


def run_startup(sizes: list[int], quick: bool) -> list[Table]:
    return [startup.table(startup.measure(sizes, 2 if quick else 5)),
            startup.overdue_table([startup.measure_overdue(n) for n in sizes])]


def run_logout(sizes: list[int], quick: bool) -> list[Table]:
    plan = logout.QUICK if quick else logout.FULL
    return [logout.table([logout.measure(n, plan) for n in sizes])]


def run_passthrough(sizes: list[int], quick: bool) -> list[Table]:
    if not (ROOT / "bench" / "passthrough.py").exists():
        return [overhead.table([], error="bench/passthrough.py is not in this tree yet")]
    calls = 20 if quick else 2000
    return [overhead.table([overhead.measure(n, calls) for n in (sizes if quick else [1, *sizes])]),
            overhead.floor_table(overhead.measure_floor(calls))]


def run_aggregate(sizes: list[int], quick: bool) -> list[Table]:
    return [aggregate.table(aggregate.measure(20 if quick else 300))]


RUNNERS: dict[str, tuple[str, str, Callable[[list[int], bool], list[Table]]]] = {
    "refresh": ("Refresh lateness and SSE delivery", "p99 ≤ 250 ms / ≤ 50 ms", run_refresh),
    "memory": ("Memory", "≤ 5 MB PSS per server", run_memory),
    "startup": ("Startup to ready", "≤ 5 s at 100", run_startup),
    "logout": ("Logout latency", "p99 ≤ 50 ms", run_logout),
    "passthrough": ("Pass-through overhead", "added median ≤ 1.5 ms, p99 ≤ 4 ms", run_passthrough),
    "aggregate": ("Aggregated /mcp overhead", "median ≤ 2 ms", run_aggregate),
}


def render(tables: list[Table], command: str, took: float) -> str:
    out = ["# mcpproxy benchmarks", "",
           "Written by `python -m bench` (`make bench`): the real service, the test authorization server and "
           "the test MCP server, all on loopback on one machine. Percentiles are nearest-rank over every "
           "sample of every repeated measurement; no figure comes from a single run.", "",
           "| machine | |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in machine()]
    out += [f"| command | `{command}` |", f"| run time | {took / 60:.1f} min |", "",
            "| figure | target | verdict |", "| --- | --- | --- |"]
    out += [f"| {t.title} | {t.target} | {t.verdict} |" for t in tables]
    out.append("")
    out += [t.markdown() for t in tables]
    return "\n".join(out)


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes are positive integers, e.g. 10,100,300")
    return sizes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description="mcpproxy's benchmarks (issue 7).")
    ap.add_argument("--quick", action="store_true", help="short runs (seconds per figure), for a smoke test")
    ap.add_argument("--sizes", type=parse_sizes, default=None,
                    help="server counts, comma-separated (default 10,100,300; with --quick 3,10)")
    ap.add_argument("--out", default="docs/benchmarks.md", help="where to write the report (default %(default)s)")
    ap.add_argument("--only", default=",".join(FIGURES), help=f"figures to run (default all: {','.join(FIGURES)})")
    args = ap.parse_args(argv)
    sizes = args.sizes or ([3, 10] if args.quick else [10, 100, 300])
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in only if x not in RUNNERS]
    if unknown:
        ap.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    command = shlex.join([".venv/bin/python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
    began = time.monotonic()
    tables: list[Table] = []
    with shared_backends():
        for name in only:
            title, target, run = RUNNERS[name]
            tables += guarded(title, target, lambda run=run: run(sizes, args.quick))  # type: ignore[misc]
    took = time.monotonic() - began
    out = Path(args.out)
    if not out.is_absolute():
        out = Path.cwd() / out
    out.parent.mkdir(parents=True, exist_ok=True)
    # The sections make bench-1000 and make bench-soak write are kept as they were.
    kept = kept_sections(out.read_text(), [(thousand.BEGIN, thousand.END), (soak.BEGIN, soak.END)]) \
        if out.exists() else ""
    out.write_text(render(tables, command, took) + kept)
    missed = [t.title for t in tables if t.met is False]
    print(f"\nwrote {out} in {took / 60:.1f} min; " + (f"MISSED: {'; '.join(missed)}" if missed else "every target met"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
