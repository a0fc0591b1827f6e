"""Query latency at scale: ``python -m benchmarks.bench_queries --spans 1000000 10000000``.

For each ``--spans`` size, bulk-loads runs of ~100 spans spread over 7 days
(:mod:`benchmarks.bulk_load`: rows generated inside ClickHouse and written to
``otel_traces``, so the collector's own materialized views fill every table
the API reads) into its own database of one chDB directory, lets merges
settle, then times what the API endpoints run — :class:`Store` queries plus
:mod:`flowscope.core.views`, i.e. everything but HTTP and JSON encoding — over
random runs, and prints a markdown table of medians with the machine, the
versions, the date and the load average (the machine may be shared: compare
figures taken under similar load). ``sql ms`` is the part spent inside
``client.query``; the rest is Python building the answer. Rows marked
"before" time the pre-tuning read of the same question (kept in
:class:`Store` as the reference the tuned paths are checked against) in the
same process, so the gain is measured under the same load.

``--dir`` keeps the chDB directory so a later invocation reuses loaded data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from flowscope.core import views
from flowscope_collector.store.connection import connect, parse_dsn
from flowscope_collector.store.queries import Store
from flowscope_collector.store.schema import SchemaOptions, migrate

from . import bulk_load

PROJECT = "default"


class TimedClient:
    """The clickhouse-connect client with the time spent in ``query`` added up."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.query_s = 0.0
        self.queries = 0

    def query(self, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return self._client.query(*args, **kwargs)
        finally:
            self.query_s += time.perf_counter() - t
            self.queries += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@dataclass
class Timing:
    name: str
    goal_ms: float | None
    samples: list[float] = field(default_factory=list)
    sql: list[float] = field(default_factory=list)
    queries: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        s = sorted(self.samples)
        return s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]


def measure(name: str, goal: float | None, fn: Callable[[], object], timed: TimedClient, repeat: int) -> Timing:
    fn()  # warm: first-call costs (parsing, caches) are not what a running collector pays
    out = Timing(name, goal)
    for _ in range(repeat):
        timed.query_s, timed.queries = 0.0, 0
        t = time.perf_counter()
        fn()
        out.samples.append((time.perf_counter() - t) * 1000)
        out.sql.append(timed.query_s * 1000)
        out.queries = timed.queries
    return out


def state_events_before(client: Any, db: str, run_id: str) -> list[views.StateEvent]:
    """The state read as it was before migration 004 (eight typed columns), for the comparison rows."""
    rows = client.query(
        f"SELECT Seq, Op, Path, Value, NodeStep, NodeName, Truncated, toUnixTimestamp64Nano(Timestamp) "
        f"FROM {db}.flowscope_state_events WHERE Project = {{project:String}} AND RunId = {{run_id:String}} "
        "ORDER BY Seq LIMIT 1 BY Seq", parameters={"project": PROJECT, "run_id": run_id}).result_rows
    return [views.StateEvent(int(seq), op, path, json.loads(value) if value else None, int(step), node,
                             bool(trunc), int(ts)) for seq, op, path, value, step, node, trunc, ts in rows]


def loaded_meta(client: Any, db: str) -> bulk_load.Loaded | None:
    """What an earlier invocation loaded into ``db`` (so ``--dir`` can reuse it)."""
    exists = client.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = 'bench_meta'",
        parameters={"db": db}).result_rows[0][0]
    if not exists:
        return None
    rows = client.query(f"SELECT runs, spans, seconds, start_ns, end_ns, seed FROM {db}.bench_meta").result_rows
    return bulk_load.Loaded(*rows[0]) if rows else None


def prepare(client: Any, db: str, spans: int, days: float) -> tuple[bulk_load.Loaded, bool]:
    meta = loaded_meta(client, db)
    if meta is not None:
        migrate(client, SchemaOptions(database=db))  # newer migrations apply to old data, as in production
        return meta, False
    client.command(f"DROP DATABASE IF EXISTS {db}")
    migrate(client, SchemaOptions(database=db))
    print(f"loading {spans:,} spans into {db} ...", file=sys.stderr, flush=True)
    loaded = bulk_load.load(client, spans=spans, days=days, db=db)
    client.command(f"CREATE TABLE {db}.bench_meta (runs UInt64, spans UInt64, seconds Float64, start_ns Int64, "
                   f"end_ns Int64, seed UInt32) ENGINE = MergeTree ORDER BY tuple()")
    client.insert(f"{db}.bench_meta", [[loaded.runs, loaded.spans, loaded.seconds, loaded.start_ns, loaded.end_ns,
                                        loaded.seed]],
                  column_names=["runs", "spans", "seconds", "start_ns", "end_ns", "seed"])
    return loaded, True


def storage(client: Any, db: str) -> list[tuple[str, int, int, int]]:
    return [tuple(r) for r in client.query(
        "SELECT table, count(), sum(rows), sum(bytes_on_disk) FROM system.parts "
        "WHERE database = {db:String} AND active GROUP BY table ORDER BY table", parameters={"db": db}).result_rows]


def bench_size(client: Any, spans: int, repeat: int, days: float) -> dict[str, Any]:
    db = f"bench_{spans}"
    loaded, fresh = prepare(client, db, spans, days)
    settle = bulk_load.wait_for_merges(client)
    timed = TimedClient(client)
    store = Store(timed, db)  # type: ignore[arg-type]
    rng = random.Random(3)
    ids = bulk_load.sample_run_ids(client, loaded, 2000, rng)
    pick = iter(ids * 10)
    week = datetime.fromtimestamp((loaded.end_ns - int(days * bulk_load.DAY_NS)) / 1e9, tz=timezone.utc)
    day = datetime.fromtimestamp((loaded.end_ns - bulk_load.DAY_NS) / 1e9, tz=timezone.utc)

    def view(with_state: bool = False) -> views.RunView:
        rid = next(pick)
        spans_ = store.run_spans(PROJECT, rid)
        events = store.state_events(PROJECT, rid) if with_state else []
        return views.RunView(rid, spans_, events)

    def state() -> object:
        # what GET /runs/{id}/state?at=3 does: the nodes (for the range check and the node name), then the fold
        v = view(with_state=True)
        v.nodes()
        return v.state(3)

    def view_before(with_state: bool = False) -> views.RunView:
        rid = next(pick)
        return views.RunView(rid, store.run_spans_typed(PROJECT, rid),
                             state_events_before(timed, db, rid) if with_state else [])

    def state_before() -> object:
        v = view_before(with_state=True)
        v.nodes()
        return v.state(3)

    cursor_page = store.list_runs(PROJECT, limit=50)[1]
    checks: list[tuple[str, float | None, Callable[[], object]]] = [
        ("SELECT 1 (chDB call floor)", None, lambda: timed.query("SELECT 1")),
        ("run summary", 15, lambda: view().summary()),
        ("  before: typed columns", None, lambda: view_before().summary()),
        ("node sequence", 15, lambda: view().nodes()),
        ("  before: typed columns", None, lambda: view_before().nodes()),
        ("state at step 3", 15, state),
        ("  before: typed columns", None, state_before),
        ("graph (mermaid)", None, lambda: view().graph()),
        ("span tree (otel_traces)", None, lambda: store.span_details(PROJECT, next(pick))),
        ("runs list (50 newest)", 50, lambda: store.list_runs(PROJECT, limit=50)),
        ("  before: group every run", None, lambda: store.list_runs(PROJECT, limit=50, exhaustive=True)),
        ("runs list page 2 (cursor)", 50, lambda: store.list_runs(PROJECT, limit=50, cursor=cursor_page)),
        ("runs list (50 costliest)", 50, lambda: store.list_runs(PROJECT, limit=50, sort="cost")),
        ("  before: group every run", None,
         lambda: store.list_runs(PROJECT, limit=50, sort="cost", exhaustive=True)),
        ("runs list (service+status)", 50,
         lambda: store.list_runs(PROJECT, limit=50, service="shop", status="error")),
        ("runs list (last 24h)", 50, lambda: store.list_runs(PROJECT, limit=50, since=day)),
        ("cost by model, 7 days", 150, lambda: store.costs(PROJECT, "model", since=week)),
        ("  before: every LLM span", None, lambda: store.costs(PROJECT, "model", since=week, from_spans=True)),
        ("cost by provider, 7 days", 150, lambda: store.costs(PROJECT, "provider", since=week)),
        ("cost by node, 7 days", 150, lambda: store.costs(PROJECT, "node", since=week)),
        ("cost by day, 7 days", 150, lambda: store.costs(PROJECT, "day", since=week)),
        ("cost by flow, 7 days", 150, lambda: store.costs(PROJECT, "flow", since=week)),
        ("cost by model, last 24h", 150, lambda: store.costs(PROJECT, "model", since=day)),
    ]
    mismatches = consistency(store, ids[:20], week, day)
    results = []
    for name, goal, fn in checks:
        reps = repeat if "span tree" not in name else max(5, repeat // 5)
        results.append(measure(name, goal, fn, timed, reps))
        print(f"  {db}: {name}: {results[-1].median:.1f} ms", file=sys.stderr, flush=True)
    return {"db": db, "loaded": loaded, "fresh": fresh, "settle_s": settle, "results": results,
            "storage": storage(client, db), "mismatches": mismatches}


def consistency(store: Store, run_ids: list[str], week: datetime, day: datetime) -> list[str]:
    """The tuned reads must answer exactly what the reference reads answer, on this data too."""
    out = []
    for rid in run_ids:
        if store.run_spans(PROJECT, rid) != store.run_spans_typed(PROJECT, rid):
            out.append(f"run {rid}: RunRecord read differs from the typed columns")
        if store.state_events(PROJECT, rid) != state_events_before(store.client, store.db, rid):
            out.append(f"run {rid}: StateRecord read differs from the typed columns")
    for group in ("model", "provider", "service", "node", "day"):
        for since, until in ((week, None), (day, None), (week, day)):
            if store.costs(PROJECT, group, since=since, until=until) != store.costs(
                    PROJECT, group, since=since, until=until, from_spans=True):
                out.append(f"costs by {group} since {since} until {until}: roll-up differs from the spans")
    for kw in ({}, {"sort": "cost"}, {"sort": "duration", "order": "asc"}, {"service": "shop", "status": "error"},
               {"since": day}, {"order": "asc"}):
        fast, cur = store.list_runs(PROJECT, limit=50, **kw)  # type: ignore[arg-type]
        if (fast, cur) != store.list_runs(PROJECT, limit=50, exhaustive=True, **kw):  # type: ignore[arg-type]
            out.append(f"runs list {kw}: differs from grouping every run")
        if cur and store.list_runs(PROJECT, limit=50, cursor=cur, **kw) != store.list_runs(  # type: ignore[arg-type]
                PROJECT, limit=50, cursor=cur, exhaustive=True, **kw):  # type: ignore[arg-type]
            out.append(f"runs list {kw} page 2: differs from grouping every run")
    return out


def versions(client: Any) -> str:
    import chdb
    import clickhouse_connect

    server = client.query("SELECT version()").result_rows[0][0]
    return (f"chDB {chdb.__version__} (ClickHouse {server}), clickhouse-connect {clickhouse_connect.__version__}, "
            f"Python {platform.python_version()}")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def load_avg() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def report(runs: list[dict[str, Any]], header: dict[str, str]) -> str:
    lines = [f"- {k}: {v}" for k, v in header.items()]
    for r in runs:
        lo: bulk_load.Loaded = r["loaded"]
        how = f"bulk-loaded in {lo.seconds:.0f}s ({lo.spans_per_s:,.0f} spans/s)" if r["fresh"] else "reused"
        lines.append(f"- `{r['db']}`: {lo.spans:,} spans in {lo.runs:,} runs over 7 days, {how}; "
                     f"merges settled in {r['settle_s']:.0f}s; tuned reads vs reference reads: "
                     + ("identical" if not r["mismatches"] else "MISMATCH: " + "; ".join(r["mismatches"][:5])))
        for table, parts, rows, size in r["storage"]:
            if table.startswith("flowscope_") or table.startswith("otel_"):
                lines.append(f"  - {table}: {rows:,} rows, {parts} parts, {size / 2**20:,.0f} MiB")
    lines.append("")
    head = ["query", "goal ms"]
    for r in runs:
        n = r["loaded"].spans
        label = f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}k"
        head += [f"{label} median ms", f"{label} p90", f"{label} sql ms"]
    if len(runs) > 1:
        head.append(f"growth x{runs[-1]['loaded'].spans / runs[0]['loaded'].spans:.0f} data")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|")
    for i, first in enumerate(runs[0]["results"]):
        row = [first.name, f"{first.goal_ms:g}" if first.goal_ms else "-"]
        for r in runs:
            t: Timing = r["results"][i]
            ok = "" if t.goal_ms is None or t.median <= t.goal_ms else " ✗"
            row += [f"{t.median:.1f}{ok}", f"{t.p90:.1f}", f"{statistics.median(t.sql):.1f}"]
        if len(runs) > 1:
            row.append(f"x{runs[-1]['results'][i].median / first.median:.2f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spans", type=int, nargs="+", default=[1_000_000], help="one or more data sizes")
    p.add_argument("--repeat", type=int, default=60, help="timed calls per query (random runs each time)")
    p.add_argument("--days", type=float, default=7)
    p.add_argument("--dir", help="chDB directory to keep (and reuse loaded data from); default: a temporary one")
    p.add_argument("--no-check", action="store_true", help="skip validating the generator first")
    args = p.parse_args(argv)
    path = args.dir or tempfile.mkdtemp(prefix="flowscope-bench-")
    client = connect(parse_dsn(f"chdb://{path}"))
    started = load_avg()
    if not args.no_check:
        problems = bulk_load.validate(client)
        if problems:
            print("bulk loader check failed:\n" + "\n".join(problems), file=sys.stderr)
            return 1
    t0 = time.perf_counter()
    runs = [bench_size(client, n, args.repeat, args.days) for n in args.spans]
    header = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(client),
        "load average (1/5/15 min)": f"{started} at start, {load_avg()} at end",
        "method": f"median of {args.repeat} calls per query (span tree: fewer), a random run per call; "
                  f"chDB at {path}; {time.perf_counter() - t0:.0f}s in all",
    }
    print(report(runs, header))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
