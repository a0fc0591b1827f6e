"""Ingest throughput, end to end or at the ClickHouse insert.

``python -m benchmarks.bench_ingest --spans 300000`` starts a real collector
(``flowscope-collector serve``) on a fresh chDB directory, pre-builds
realistic OTLP protobuf requests of ``--batch`` spans, posts them from
``--clients`` threads, and reports spans/s from the first request until
``/metrics`` says every span is written to ClickHouse.

``python -m benchmarks.bench_ingest --level python`` times the collector's
Python steps per span on one thread (what holds the GIL), next to the way the
same steps were done before.

``python -m benchmarks.bench_ingest --level clickhouse`` isolates what
ClickHouse pays per span: the same pre-built :class:`Batch` payloads
(what the collector's writer sends) are inserted with :func:`insert_rows`
(with the writer's deduplication settings) into schema variants that differ
only in what hangs off ``otel_traces`` — its skip indexes and the views that
fill the flowscope tables — so the table says what each one costs. CPU time is
the whole process's (chDB runs in it), counted until background merges have
settled, because a sustained ingest pays for merges too.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import httpx

from .otlp_data import Generator, requests


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (chDB runs inside the collector)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _written(url: str) -> int:
    m = re.search(r"^flowscope_spans_written_total (\d+)", httpx.get(url + "/metrics").text, re.M)
    return int(m.group(1)) if m else 0


def _without_span_once() -> str:
    """Migration 008's view query without its once-per-span lookup (the view as migration 002 left it)."""
    from flowscope_collector.store.schema import SchemaOptions, load_migrations

    (m8,) = [m for m in load_migrations(SchemaOptions(database="bench_db")) if m.version == 8]
    (query,) = [stmt for stmt in m8.statements if "MODIFY QUERY" in stmt]
    return query[:query.index("WHERE (Project, TraceId, SpanId) NOT IN")].replace("bench_db.", "{db}.")


# name -> statements applied after the migrations ({db} is the variant's database)
VARIANTS: dict[str, list[str]] = {
    "as migrated": [],
    "+ the exporter's 4 attribute-map bloom filters (dropped by 006)": [
        f"ALTER TABLE {{db}}.otel_traces ADD INDEX IF NOT EXISTS {name} {expr} TYPE bloom_filter(0.01) GRANULARITY 1"
        for name, expr in (("idx_res_attr_key", "mapKeys(ResourceAttributes)"),
                           ("idx_res_attr_value", "mapValues(ResourceAttributes)"),
                           ("idx_span_attr_key", "mapKeys(SpanAttributes)"),
                           ("idx_span_attr_value", "mapValues(SpanAttributes)"))],
    "- the TraceId bloom filter as well": ["ALTER TABLE {db}.otel_traces DROP INDEX IF EXISTS idx_trace_id"],
    "- migration 004 (RunRecord, StateRecord, RunId blooms)": [
        "ALTER TABLE {db}.flowscope_spans DROP COLUMN IF EXISTS RunRecord",
        "ALTER TABLE {db}.flowscope_spans DROP INDEX IF EXISTS idx_run_id",
        "ALTER TABLE {db}.flowscope_state_events DROP COLUMN IF EXISTS StateRecord",
        "ALTER TABLE {db}.flowscope_state_events DROP INDEX IF EXISTS idx_run_id"],
    "- the cost roll-up view (005)": ["DROP VIEW IF EXISTS {db}.flowscope_costs_hourly_mv"],
    "- the run attributes view (011)": ["DROP VIEW IF EXISTS {db}.flowscope_run_attributes_mv"],
    "- the fork view (013)": ["DROP VIEW IF EXISTS {db}.flowscope_runs_fork_mv"],
    "- the span-once check (008)": [_without_span_once()],
    "+ LZ4 instead of ZSTD(1) on otel_traces' strings and maps": [
        f"ALTER TABLE {{db}}.otel_traces MODIFY COLUMN {col} CODEC(LZ4)"
        for col in ("TraceId", "SpanId", "ParentSpanId", "TraceState", "ResourceAttributes", "ScopeName",
                    "ScopeVersion", "SpanAttributes", "StatusMessage")],
    "- all flowscope views (otel_traces + trace-id table only)": [
        "DROP VIEW IF EXISTS {db}.flowscope_spans_mv", "DROP VIEW IF EXISTS {db}.flowscope_state_events_mv",
        "DROP VIEW IF EXISTS {db}.flowscope_run_attributes_mv"],
    "protobuf parsing only (otlp_ingest view dropped)": ["DROP VIEW IF EXISTS {db}.otlp_ingest_mv"],
}


def clickhouse_level(args: argparse.Namespace) -> int:
    """Per-span cost of the ClickHouse side of ingest, per schema variant (see the module docstring)."""
    from flowscope_collector.ingest.batch import Batch
    from flowscope_collector.ingest.rows import RowBuilder
    from flowscope_collector.store.connection import connect, parse_dsn
    from flowscope_collector.store.insert import insert_rows
    from flowscope_collector.store.schema import SchemaOptions, migrate

    from . import _stats
    from .bench_queries import load_avg, machine, versions
    from .bulk_load import wait_for_merges

    path = args.dir or tempfile.mkdtemp(prefix="flowscope-ingest-ch-")
    client = connect(parse_dsn(f"chdb://{path}"))
    load_start = load_avg()
    builder = RowBuilder()
    t = time.perf_counter()
    requests_ = list(requests(Generator(5), args.spans // 100, start_ns=time.time_ns() - 3600 * 10**9,
                              span_ns=3600 * 10**9, batch_spans=1000))
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for size in args.insert_spans:
        t = time.perf_counter()
        batches: list[Batch] = []
        cur = Batch()
        for req in requests_:
            cur.extend(builder.build(type(req).FromString(req.SerializeToString()), "default"))  # a fresh copy
            if cur.spans >= size:
                batches.append(cur)
                cur = Batch()
        if cur.spans:
            batches.append(cur)
        total = sum(b.spans for b in batches)
        print(f"built {len(batches)} inserts of ~{size} spans ({total:,} spans) in {time.perf_counter() - t:.1f}s",
              file=sys.stderr, flush=True)
        names = [n for n in VARIANTS if not args.variant or n == "as migrated" or any(v in n for v in args.variant)]
        for rnd in range(args.rounds):
            order = names if rnd % 2 == 0 else names[::-1]  # alternate, so drifting load hits all alike
            for name in order:
                db = f"ingest_{abs(hash((name, size, rnd))) % 10**8}"
                client.command(f"DROP DATABASE IF EXISTS {db}")
                migrate(client, SchemaOptions(database=db))
                for stmt in VARIANTS[name]:
                    client.command(stmt.format(db=db))
                wait_for_merges(client)
                w0, c0 = time.perf_counter(), time.process_time()
                for i, b in enumerate(batches):
                    insert_rows(client, db, b.body(), {
                        "insert_deduplication_token": f"bench-{rnd}-{i}",
                        "deduplicate_blocks_in_dependent_materialized_views": 1})
                wall = time.perf_counter() - w0
                wait_for_merges(client)
                cpu = time.process_time() - c0
                got = client.query(f"SELECT count() FROM {db}.otel_traces").result_rows[0][0]
                parses_only = any("otlp_ingest_mv" in stmt for stmt in VARIANTS[name])
                if not parses_only and got != total:
                    raise RuntimeError(f"{name}: {got} rows in otel_traces, {total} sent")
                results.setdefault((name, size), []).append((total / wall, total / cpu))
                print(f"  {name}, {size}-span inserts, round {rnd + 1}: {total / wall:,.0f} spans/s, "
                      f"{total / cpu:,.0f} spans/CPU-s", file=sys.stderr, flush=True)
                client.command(f"DROP DATABASE IF EXISTS {db}")
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"- machine: {machine()}")
    print(f"- versions: {versions(client)}")
    print(f"- load average (1/5/15 min): {load_start} at start, {load_avg()} at end")
    print(f"- method: {args.spans:,} spans of benchmarks.otlp_data runs per variant, inserted with insert_rows "
          f"(writer settings, unique dedup tokens) into a fresh database; median of {args.rounds} rounds; "
          "CPU = process CPU time until merges settled\n")
    head = ["schema variant"]
    for size in args.insert_spans:
        head += [f"{size}-span inserts: spans/s", "spans/CPU-s"]
    rows = []
    for name in (n for n in VARIANTS if (n, args.insert_spans[0]) in results):
        row: list[object] = [name]
        for size in args.insert_spans:
            got = results[(name, size)]
            row += [f"{_stats.median([g[0] for g in got]):,.0f}", f"{_stats.median([g[1] for g in got]):,.0f}"]
        rows.append(row)
    print(_stats.table(head, rows))
    if not args.dir:
        client.close()
        shutil.rmtree(path, ignore_errors=True)
    return 0


def python_level(args: argparse.Namespace) -> int:
    """The collector's Python work per span, step by step, on one thread (what holds the GIL).

    The steps of ``Collector._ingest`` on pre-built protobuf bodies; "reference" is the way the
    same work was done before (every value looked at in Python, the request re-serialised
    for the log), kept in the code as the reference the tests compare against.
    """
    import hashlib

    from flowscope_collector.ingest import otlp
    from flowscope_collector.ingest.limits import RequestLimits, SpanLimiter, enforce
    from flowscope_collector.ingest.records import wal_payload
    from flowscope_collector.ingest.rows import RowBuilder

    from . import _stats
    from .bench_queries import load_avg, machine

    bodies = [r.SerializeToString() for r in requests(Generator(5), args.spans // 100, start_ns=time.time_ns()
                                                       - 3600 * 10**9, span_ns=3600 * 10**9,
                                                       batch_spans=args.batch)]
    spans = sum(len(ss.spans) for b in bodies for rs in otlp.parse(b, otlp.PROTOBUF).resource_spans
                for ss in rs.scope_spans)
    builder, limits = RowBuilder(), RequestLimits()

    def fast(body: bytes) -> dict[str, float]:
        t = [time.perf_counter()]
        req = otlp.parse(body, otlp.PROTOBUF)
        otlp.count_spans(req, 10**6)
        t.append(time.perf_counter())
        limiter = SpanLimiter(limits)
        batch = builder.build(req, "bench", limiter)
        limiter.finish()
        t.append(time.perf_counter())
        payload = wal_payload(batch)
        t.append(time.perf_counter())
        hashlib.sha256(payload).digest()
        t.append(time.perf_counter())
        return dict(zip(("parse", "check, limit and frame rows", "log payload", "digest"),
                        (b - a for a, b in itertools.pairwise(t))))

    def reference(body: bytes) -> dict[str, float]:
        t = [time.perf_counter()]
        req = otlp.parse(body, otlp.PROTOBUF)
        otlp.count_spans(req, 10**6)
        t.append(time.perf_counter())
        otlp.validate(req, 10**6)
        enforce(req, limits)
        t.append(time.perf_counter())
        payload = req.SerializeToString(deterministic=True)
        t.append(time.perf_counter())
        hashlib.sha256(payload).digest()
        t.append(time.perf_counter())
        builder.build(req, "bench")
        t.append(time.perf_counter())
        return dict(zip(("parse", "validate + limits (every value)", "log payload (request)", "digest",
                         "frame rows"), (b - a for a, b in itertools.pairwise(t))))

    results = {}
    for name, fn in (("reference (before)", reference), ("ingest path (now)", fast)):
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            total: dict[str, float] = {}
            for body in bodies:
                for step, dt in fn(body).items():
                    total[step] = total.get(step, 0.0) + dt
            if not best or sum(total.values()) < sum(best.values()):
                best = total
        results[name] = best
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"- machine: {machine()}")
    print(f"- load average (1/5/15 min): {load_avg()}")
    print(f"- method: {spans:,} spans of benchmarks.otlp_data in {len(bodies)} protobuf requests of ~{args.batch}; "
          f"one thread; best of {args.rounds} rounds\n")
    rows = []
    for name, steps in results.items():
        for step, dt in steps.items():
            rows.append([name, step, f"{dt / spans * 1e6:.2f}"])
        rows.append([name, "**total**", f"**{sum(steps.values()) / spans * 1e6:.2f}**"])
    print(_stats.table(["path", "step", "µs per span"], rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--level", choices=("http", "clickhouse", "python"), default="http",
                   help="http: POST /v1/traces to a collector; clickhouse: insert_rows per schema variant; "
                        "python: the collector's Python steps per span, on one thread")
    p.add_argument("--spans", type=int, default=300_000)
    p.add_argument("--batch", type=int, default=2000, help="spans per request (1000-5000)")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--insert-spans", type=int, nargs="+", default=[2000, 50000],
                   help="clickhouse level: spans per insert (the writer groups requests up to 50000)")
    p.add_argument("--rounds", type=int, default=3, help="clickhouse level: rounds per variant")
    p.add_argument("--variant", action="append", default=[],
                   help="clickhouse level: only the variants whose name contains this (repeatable; "
                        "'as migrated' always runs)")
    p.add_argument("--dir", help="chDB directory, kept afterwards (default: a temporary one, removed)")
    args = p.parse_args(argv)
    if args.level == "clickhouse":
        return clickhouse_level(args)
    if args.level == "python":
        return python_level(args)
    data = args.dir or tempfile.mkdtemp(prefix="flowscope-ingest-")
    port = _port()
    url = f"http://127.0.0.1:{port}"
    t = time.perf_counter()
    bodies = [r.SerializeToString() for r in requests(Generator(5), args.spans // 100, start_ns=time.time_ns()
                                                       - 3600 * 10**9, span_ns=3600 * 10**9,
                                                       batch_spans=args.batch)]
    print(f"built {len(bodies)} requests in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    env = {**os.environ, "FLOWSCOPE_CLICKHOUSE_DSN": f"chdb://{data}/db"}
    proc = subprocess.Popen([sys.executable, "-m", "flowscope_collector", "serve", "--port", str(port),
                             "--log-level", "warning"], env=env)
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        with httpx.Client(timeout=120) as http:
            def post(body: bytes) -> None:
                while True:
                    r = http.post(url + "/v1/traces", content=body, headers={"content-type": "application/x-protobuf"})
                    if r.status_code == 200:
                        return
                    if r.status_code in (429, 503):
                        time.sleep(float(r.headers.get("retry-after", "1")))
                        continue
                    raise RuntimeError(f"{r.status_code}: {r.text[:300]}")

            t0 = time.perf_counter()
            cpu0, client_cpu0 = _cpu_s(proc.pid), time.process_time()
            with cf.ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(post, bodies))
            accepted = time.perf_counter() - t0
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        total = sum(len(ss.spans) for b in bodies for rs in ExportTraceServiceRequest.FromString(b).resource_spans
                    for ss in rs.scope_spans)
        while _written(url) < total:
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        cpu, client_cpu = _cpu_s(proc.pid) - cpu0, time.process_time() - client_cpu0
        from . import _stats
        from .bench_queries import load_avg, machine

        print(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(f"- machine: {machine()}")
        print(f"- load average (1/5/15 min): {load_avg()}")
        print(f"- method: POST /v1/traces (protobuf) to one collector process on chDB, {args.clients} client "
              "threads; spans/s from the first request until /metrics counts every span written\n")
        print(_stats.table(
            ["spans", "requests", "spans per request", "accepted in s", "all written in s", "spans/s",
             "collector CPU s per 1M spans", "client CPU s per 1M spans"],
            [[f"{total:,}", len(bodies), f"~{args.batch}", f"{accepted:.1f}", f"{elapsed:.1f}",
              f"{total / elapsed:,.0f}", f"{cpu / total * 1e6:.1f}", f"{client_cpu / total * 1e6:.1f}"]]))
        proc.terminate()
        proc.wait(30)
        _disk_report(f"{data}/db", total)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        if not args.dir:
            shutil.rmtree(data, ignore_errors=True)
    return 0


def _disk_report(path: str, spans: int) -> None:
    """Compressed bytes on disk per table and per span, once the collector has let go of the directory."""
    from flowscope_collector.store.connection import connect, parse_dsn

    from . import _stats
    from .bulk_load import wait_for_merges

    client = connect(parse_dsn(f"chdb://{path}"))
    wait_for_merges(client)
    rows = client.query("SELECT table, sum(bytes_on_disk), sum(rows) FROM system.parts WHERE active "
                        "AND database = currentDatabase() GROUP BY table ORDER BY 2 DESC").result_rows
    total = sum(int(r[1]) for r in rows)
    print(f"\ndisk after merges: {total / 2**20:.0f} MiB, {total / spans:.0f} bytes per span, "
          f"{total / spans * 1e6 / 2**20:.0f} MiB per million spans\n")
    print(_stats.table(["table", "MiB", "rows", "bytes per span"],
                       [[t, f"{int(b) / 2**20:.1f}", f"{int(n):,}", f"{int(b) / spans:.1f}"] for t, b, n in rows]))
    client.close()


if __name__ == "__main__":
    raise SystemExit(main())
