"""``python -m benchmarks [name ...]``: run benchmark modules (default: the quick ones) and print their tables.

Each ``bench_*.py`` module has a ``main(argv) -> int``; run one alone with
``python -m benchmarks.bench_sdk_overhead`` for its own options.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import benchmarks

QUICK = ["bench_sdk_overhead"]


def main(argv: list[str]) -> int:
    names = argv or QUICK
    if names == ["all"]:
        names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    rc = 0
    for name in names:
        mod = importlib.import_module(f"benchmarks.{name if name.startswith('bench_') else 'bench_' + name}")
        print(f"\n## {mod.__name__}\n", flush=True)
        rc |= mod.main([])
    return rc


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
