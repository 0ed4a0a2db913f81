"""The benchmark runner works end to end: quick mode, three servers, every figure, a report written."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import psutil
import pytest

from bench import floor, memory, soak, thousand
from bench.__main__ import main
from bench.refresh import lateness_of
from bench.stats import Summary, Table, kept_sections, percentile, write_section

FIGURE_TITLES = ("Refresh lateness", "SSE delivery", "Memory", "Memory of one TokenActor", "Startup to ready",
                 "Overdue refreshes at a start", "Logout latency", "Pass-through overhead", "Aggregated /mcp")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    s = Summary.of([0.2, 0.1, 0.3])
    assert (s.n, s.p50, s.max) == (3, 0.2, 0.3)
    assert math.isnan(Summary.of([]).p50)


def test_lateness_is_measured_from_the_80_percent_mark() -> None:
    entry = {"at": 108.05, "prev_issued_at": 100.0, "prev_expires_at": 110.0, "result": "ok"}
    assert lateness_of(entry) == pytest.approx(0.05)
    assert lateness_of({"at": 1.0, "prev_issued_at": None, "prev_expires_at": None}) is None


def test_table_says_plainly_when_a_target_is_missed() -> None:
    t = Table("X", "p99 ≤ 1 ms", ["a"], [["1"]], met=False)
    assert "**MISSED**" in t.markdown()
    assert "MISSED" in t.text()


def test_smaps_splits_a_process_s_private_pages() -> None:
    p = memory.smaps(os.getpid())
    assert p.pss > 0 and p.heap > 0 and p.anon > 0 and p.file > 0
    assert p.private == p.heap + p.anon + p.file


@pytest.mark.timeout(120)
def test_the_floor_is_measured_from_outside_and_stopped() -> None:
    p = memory.floor_of(2)
    assert p is not None and p.pss > 2**20 and p.private > 2**20
    idle = [q for q in psutil.process_iter(["name"]) if q.info["name"] == floor.IDLE_NAME]
    deadline = time.monotonic() + 20
    while idle and time.monotonic() < deadline:
        idle = [q for q in idle if q.is_running() and q.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.1)
    assert not idle, "the floor's actors outlived it"


@pytest.mark.timeout(240)  # ~55 s alone; `make test` runs three workers on two cores
def test_quick_run_writes_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "benchmarks.md"
    assert main(["--quick", "--sizes", "3", "--out", str(out)]) == 0
    doc = out.read_text()
    printed = capsys.readouterr().out
    for title in FIGURE_TITLES:
        assert f"## {title}" in doc, title
        assert title in printed
    assert "failed to run" not in doc, printed[-3000:]
    for field in ("cores", "RAM", "Python", "Thespian", "command"):
        assert f"| {field} |" in doc
    assert "python -m bench --quick --sizes 3" in doc
    # Every figure produced real numbers at N=3 (the verdicts themselves depend on the machine).
    assert "| 3 | 0 |" not in doc


def test_separately_run_sections_survive_a_rewrite(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nold figures\n")
    first = Table(title="First", target="t", headers=["a"], rows=[["1"]], met=True)
    write_section(out, (thousand.BEGIN, thousand.END), "1000 servers", "cmd one", 60, [first])
    write_section(out, (soak.BEGIN, soak.END), "Memory over a long run", "cmd two", 60, [first])
    again = Table(title="Second", target="t", headers=["a"], rows=[["2"]], met=True)
    write_section(out, (thousand.BEGIN, thousand.END), "1000 servers", "cmd three", 60, [again])
    text = out.read_text()
    assert "old figures" in text and "cmd one" not in text and "cmd three" in text and "cmd two" in text
    kept = kept_sections(text, [(thousand.BEGIN, thousand.END), (soak.BEGIN, soak.END)])
    assert "old figures" not in kept and "## Second" in kept and "cmd two" in kept


@pytest.mark.timeout(120)
def test_soak_reads_the_actors_while_they_refresh() -> None:
    run = soak.measure(2, minutes=0.1, ttl=1, every=2)  # three readings, two seconds apart
    assert len(run.readings) == 3 and run.failed == 0
    assert run.readings[-1].refreshes > run.readings[0].refreshes > 0
    assert all(r.actor.private > 0 and r.actor.pss > 0 for r in run.readings)
    t = soak.table(run)
    assert len(t.rows) == 3 and t.met is not None and "per 100 refreshes" in t.notes[0]
