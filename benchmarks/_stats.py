"""Small, dependency-free statistics and table printing shared by the benchmarks."""

from __future__ import annotations

import platform
import statistics
import sys
from collections.abc import Sequence
from datetime import datetime, timezone


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def iqr(xs: Sequence[float]) -> tuple[float, float]:
    q = statistics.quantiles(xs, n=4)
    return q[0], q[2]


def pct(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


def machine() -> str:
    import os

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"{datetime.now(timezone.utc):%Y-%m-%d}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        out.append("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths)) + " |")
    return "\n".join(out)
