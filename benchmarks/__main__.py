"""``python -m benchmarks``: ingest, then query latency (small defaults; pass --spans to each for more)."""

from __future__ import annotations

from . import bench_ingest, bench_queries

if __name__ == "__main__":
    bench_ingest.main(["--spans", "200000"])
    bench_queries.main(["--spans", "1000000"])
