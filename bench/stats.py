"""Percentiles and the result tables every figure returns (printed, and written to docs/benchmarks.md)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(len(ordered), rank) - 1]


@dataclass(frozen=True)
class Summary:
    n: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            return cls(0, math.nan, math.nan, math.nan)
        return cls(len(values), statistics.median(values), percentile(values, 0.99), max(values))


def ms(seconds: float) -> str:
    return "–" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def mb(nbytes: float) -> str:
    return "–" if math.isnan(nbytes) else f"{nbytes / 2**20:.1f}"


@dataclass
class Table:
    """One figure: its rows, its target and whether the run met it, and what the numbers mean."""

    title: str
    target: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    met: bool | None = None  # None: no verdict (the figure did not run)
    notes: list[str] = field(default_factory=list)
    reference: bool = False  # a figure to compare others with, which has no target of its own

    @property
    def verdict(self) -> str:
        if self.reference:
            return "reference" if self.rows else "not measured"
        return {True: "met", False: "MISSED", None: "not measured"}[self.met]

    def markdown(self) -> str:
        out = [f"## {self.title}", "", f"Target: {self.target} — **{self.verdict}**", ""]
        out.append("| " + " | ".join(self.headers) + " |")
        out.append("| " + " | ".join("---" for _ in self.headers) + " |")
        out += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def text(self) -> str:
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h)
                  for i, h in enumerate(self.headers)]
        line = "  ".join(h.rjust(w) for h, w in zip(self.headers, widths, strict=True))
        out = [f"== {self.title}", f"   target: {self.target} -> {self.verdict}", "   " + line]
        out += ["   " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in self.rows]
        out += [f"   * {n}" for n in self.notes]
        return "\n".join(out)


def write_section(out: Path, markers: tuple[str, str], heading: str, command: str, took: float,
                  tables: list[Table]) -> None:
    """Replaces one separately run section of the report (or appends it), leaving the other figures alone."""
    begin, end = markers
    block = "\n".join([begin, "", f"# {heading}", "",
                       f"`{command}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {took / 60:.1f} min.",
                       "", *(t.markdown() for t in tables), end])
    text = out.read_text() if out.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    out.write_text(text)


def kept_sections(text: str, markers: Sequence[tuple[str, str]]) -> str:
    """The separately run sections of an old report (each between its markers), to carry over when rewriting it."""
    kept = ""
    for begin, end in markers:
        if begin in text and end in text.split(begin, 1)[1]:
            kept += "\n" + begin + text.split(begin, 1)[1].split(end, 1)[0] + end + "\n"
    return kept
