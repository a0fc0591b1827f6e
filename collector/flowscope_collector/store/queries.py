"""Read side: every SQL the API runs, parameterised (``{name:Type}``), never formatted.

Per-run questions read the run's contiguous range of ``flowscope_spans`` and
hand the rows to :mod:`flowscope.core.views`, the same code the test kit uses;
lists and roll-ups read the aggregate tables. Why each query has the shape it
has is measured in ``benchmarks/bench_queries.py`` (figures in
``docs/performance.md``).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from flowscope.core.run_attributes import attribute_key
from flowscope.core.views import SpanRecord, StateEvent, fork_fields, iso, ms, usd

_SPAN_COLUMNS = (
    "Project, RunId, TraceId, SpanId, ParentSpanId, SpanName, toUnixTimestamp64Nano(Timestamp), Duration, "
    "ServiceName, Kind, FlowName, NodeName, NodeType, NodeStep, NodeAttempt, Branch, StatusCode, StatusMessage, "
    "ErrorType, Provider, Model, InputTokens, OutputTokens, CachedInputTokens, CacheWriteTokens, ReasoningTokens, "
    "CostUsd, CostInputUsd, CostCachedInputUsd, CostCacheWriteUsd, CostOutputUsd, CostSource, UsageEstimated, "
    "CacheHit, CacheSavedUsd, RetryCount, FallbackFrom, FallbackTo, BudgetExceeded, TimeToFirstChunk"
)


_UNESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "b": "\b", "f": "\f", "0": "\0", "a": "\a", "v": "\v"}


def _tsv(field: str) -> str:
    """A String field of a ClickHouse TSV line, unescaped."""
    if "\\" not in field:
        return field
    return _UNESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), field)


def parse_run_record(project: str, run_id: str, line: str) -> SpanRecord:
    """A span from ``flowscope_spans.RunRecord`` (migration 004: one TSV line per span, format 1)."""
    f = line.split("\t")
    if f[0] != "1" or len(f) != 39:
        raise ValueError(f"unknown RunRecord format {f[0]!r} ({len(f)} fields)")
    s = _tsv
    return SpanRecord(
        project=project, run_id=run_id, trace_id=f[1], span_id=f[2], parent_span_id=f[3], name=s(f[4]),
        start_ns=int(f[5]), duration_ns=int(f[6]), service=s(f[7]), kind=s(f[8]), flow=s(f[9]), node_name=s(f[10]),
        node_type=s(f[11]), node_step=int(f[12]), node_attempt=int(f[13]), branch=s(f[14]), status=s(f[15]),
        status_message=s(f[16]), error_type=s(f[17]), provider=s(f[18]), model=s(f[19]), input_tokens=int(f[20]),
        output_tokens=int(f[21]), cached_input_tokens=int(f[22]), cache_write_tokens=int(f[23]),
        reasoning_tokens=int(f[24]), cost_usd=Decimal(f[25]), cost_input_usd=Decimal(f[26]),
        cost_cached_input_usd=Decimal(f[27]), cost_cache_write_usd=Decimal(f[28]), cost_output_usd=Decimal(f[29]),
        cost_source=s(f[30]), usage_estimated=f[31] == "1", cache_hit=f[32] == "1", cache_saved_usd=Decimal(f[33]),
        retry_count=int(f[34]), fallback_from=s(f[35]), fallback_to=s(f[36]), budget_exceeded=f[37] == "1",
        ttfc_s=float(f[38]),
    )


def _first_by_span(records: list[SpanRecord]) -> list[SpanRecord]:
    """Rows in (start, span id) order, the first of each (trace, span) id kept: what
    ``ORDER BY Timestamp, SpanId LIMIT 1 BY TraceId, SpanId`` returned, done in Python
    because for ~100 rows it is cheaper than asking ClickHouse to sort."""
    records.sort(key=lambda r: (r.start_ns, r.span_id))
    seen: set[tuple[str, str]] = set()
    out = []
    for r in records:
        key = (r.trace_id, r.span_id)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _record(r: Sequence[Any]) -> SpanRecord:
    return SpanRecord(
        project=r[0], run_id=r[1], trace_id=r[2], span_id=r[3], parent_span_id=r[4], name=r[5],
        start_ns=int(r[6]), duration_ns=int(r[7]), service=r[8], kind=r[9], flow=r[10], node_name=r[11],
        node_type=r[12], node_step=int(r[13]), node_attempt=int(r[14]), branch=r[15], status=r[16],
        status_message=r[17], error_type=r[18], provider=r[19], model=r[20], input_tokens=int(r[21]),
        output_tokens=int(r[22]), cached_input_tokens=int(r[23]), cache_write_tokens=int(r[24]),
        reasoning_tokens=int(r[25]), cost_usd=Decimal(r[26]), cost_input_usd=Decimal(r[27]),
        cost_cached_input_usd=Decimal(r[28]), cost_cache_write_usd=Decimal(r[29]),
        cost_output_usd=Decimal(r[30]), cost_source=r[31], usage_estimated=bool(r[32]), cache_hit=bool(r[33]),
        cache_saved_usd=Decimal(r[34]), retry_count=int(r[35]), fallback_from=r[36], fallback_to=r[37],
        budget_exceeded=bool(r[38]), ttfc_s=float(r[39]),
    )


_RUN_AGGREGATES = """
    toUnixTimestamp64Nano(min(Start)) AS start_ns,
    toUnixTimestamp64Nano(max(End)) AS end_ns,
    end_ns - start_ns AS duration_ns,
    max(FlowName) AS flow, max(ServiceName) AS service,
    multiIf(max(RootSeen) = 0, 'running', max(RootError) = 1, 'error', 'ok') AS status,
    sum(Spans), sum(LlmCalls), sum(Errors), sum(Retries), sum(Fallbacks), sum(CacheHits),
    sum(UnpricedCalls), sum(InputTokens), sum(CachedInputTokens), sum(CacheWriteTokens),
    sum(OutputTokens), sum(ReasoningTokens), sum(CostUsd) AS cost, sum(CacheSavedUsd), sum(PartialCalls),
    max(ForkedFrom), max(ForkedAtStep)"""

# the per-run values a filter or a sort can name, each from as few columns as it needs
_RUN_NARROW = (
    ("start_ns", "toUnixTimestamp64Nano(min(Start))"),
    ("end_ns", "toUnixTimestamp64Nano(max(End))"),
    ("duration_ns", "end_ns - start_ns"),
    ("flow", "max(FlowName)"),
    ("service", "max(ServiceName)"),
    ("status", "multiIf(max(RootSeen) = 0, 'running', max(RootError) = 1, 'error', 'ok')"),
    ("cost", "sum(CostUsd)"),
)

SORTS = {
    # sort key -> (SQL expression over the grouped row, ClickHouse type of a cursor value)
    "start": ("start_ns", "Int64"),
    "cost": ("cost", "Decimal(38, 18)"),
    "duration": ("duration_ns", "Int64"),
}


@dataclass(frozen=True)
class Cursor:
    """Where the previous page stopped: the sort it was issued for, that sort's value and the run id of its last run.

    A cursor comes back from a client, so it is checked like any input: the
    value must fit the sort's ClickHouse type (a NaN, an Infinity or a number
    past Int64 / Decimal(38, 18) made the query fail with a 500 or compare
    wrongly) and the sort must be the one it was issued for (a cost cursor
    read as a start time failed the same way). Cursors of earlier versions
    carry no sort; their value is still checked against the sort asked for.
    """

    value: str
    run_id: str
    sort: str | None = None

    def encode(self) -> str:
        raw = f"{self.sort}|{self.value}|{self.run_id}" if self.sort else f"{self.value}|{self.run_id}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, sort: str = "start") -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            first, rest = raw.split("|", 1)
            issued_for: str | None = None
            if first in SORTS:
                issued_for = first
                value, run_id = rest.split("|", 1)
            else:
                value, run_id = first, rest
        except Exception:
            raise ValueError("cursor is not one this API returned; start again without it") from None
        if issued_for is not None and issued_for != sort:
            raise ValueError(f"cursor was issued for sort={issued_for}, not sort={sort}; "
                             f"reuse it with sort={issued_for} or start again without it")
        try:
            number = Decimal(value)
        except ArithmeticError:
            number = Decimal("NaN")
        if not number.is_finite():
            raise ValueError(f"cursor value {value[:40]!r} is not a finite number; start again without it")
        if SORTS[sort][1] == "Int64":
            if number != number.to_integral_value() or not -(2**63) <= number < 2**63:
                raise ValueError(f"cursor value {value[:40]!r} is not a sort={sort} position "
                                 "(a 64-bit integer); start again without it")
            value = str(int(number))
        elif abs(number) >= Decimal(10) ** 20:
            raise ValueError(f"cursor value {value[:40]!r} is out of range for sort={sort}; start again without it")
        return cls(value, run_id, issued_for)


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# DateTime64(9)'s range, with a day's margin so a bound never lands on an edge that wraps.
_EARLIEST = datetime(1677, 9, 22, tzinfo=timezone.utc)
_LATEST = datetime(2262, 4, 10, tzinfo=timezone.utc)


def parse_when(text: str, name: str = "time") -> datetime:
    """An ISO 8601 time, or a span back from now (``90m``, ``24h``, ``7d``); UTC when no zone is given."""
    text = text.strip()
    m = _RELATIVE.match(text)
    dt: datetime | None = None
    if m:
        try:
            dt = datetime.now(timezone.utc) - timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])
        except OverflowError:  # 99999999999d: before year 1, a 500 until this was caught
            dt = None
        if dt is None or not _EARLIEST <= dt <= _LATEST:
            raise ValueError(f"{name}={text!r} reaches back beyond {_EARLIEST:%Y-%m-%d}, the earliest time stored "
                             "(ClickHouse DateTime64(9) holds 1677-09-22 to 2262-04-11)")
        return dt
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{name}={text!r} is neither an ISO 8601 time (2026-11-21T12:00:00Z) nor a span like 90m, 24h, 7d"
        ) from None
    dt = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    # Outside DateTime64(9)'s range ClickHouse wraps the value around, and the list is silently wrong.
    if not _EARLIEST <= dt <= _LATEST:
        raise ValueError(f"{name}={text!r} is outside the times ClickHouse stores (1677-09-22 to 2262-04-11)")
    return dt


def ch_time(dt: datetime) -> str:
    """A datetime as a DateTime64(9) parameter value, in UTC."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")


def to_ns(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1_000_000) * 1000


class Store:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.db = database
        known = getattr(client, "server_settings", None) or {}
        # Apply the RunId bloom filters (migration 004) when planning, so parts
        # without the run are never opened; servers that predate the setting
        # always did.
        self._skip_settings: dict[str, Any] = (
            {"use_skip_indexes_on_data_read": 0} if "use_skip_indexes_on_data_read" in known else {})
        # One thread for a run's rows: they are one granule range, and on a
        # small busy machine a second thread only adds a hand-off (~1.5 ms).
        self._run_settings: dict[str, Any] = {**self._skip_settings, "max_threads": 1}

    # --- per run ------------------------------------------------------------------

    def run_spans(self, project: str, run_id: str) -> list[SpanRecord]:
        rows = self.client.query(
            f"SELECT RunRecord FROM {self.db}.flowscope_spans "
            "WHERE Project = {project:String} AND RunId = {run_id:String}",
            parameters={"project": project, "run_id": run_id},
            settings=self._run_settings,
        ).result_rows
        return _first_by_span([parse_run_record(project, run_id, r[0]) for r in rows])

    def run_spans_typed(self, project: str, run_id: str) -> list[SpanRecord]:
        """:meth:`run_spans` read from the typed columns: the reference RunRecord is checked against."""
        rows = self.client.query(
            f"SELECT {_SPAN_COLUMNS} FROM {self.db}.flowscope_spans "
            "WHERE Project = {project:String} AND RunId = {run_id:String} "
            "ORDER BY Timestamp, SpanId LIMIT 1 BY TraceId, SpanId",
            parameters={"project": project, "run_id": run_id},
        ).result_rows
        return [_record(r) for r in rows]

    def node_supersteps(self, project: str, spans: Sequence[SpanRecord]) -> dict[str, int]:
        """LangGraph's superstep of each node span of ``spans`` (one run's records), by span id.

        It is not in ``RunRecord`` (its format is fixed by migration 004), so it is read from
        the spans' attributes in ``otel_traces``, bounded by what the records already say:
        their traces and the time their node spans started. Only the node sequence shows it,
        so only that route pays for this read; a run without node spans pays nothing.
        """
        nodes = [s for s in spans if s.kind == "node"]
        if not nodes:
            return {}
        rows = self.client.query(
            f"SELECT SpanId, SpanAttributes['flowscope.node.superstep'] FROM {self.db}.otel_traces "
            "WHERE Timestamp >= fromUnixTimestamp64Nano({lo:Int64}) AND Timestamp <= fromUnixTimestamp64Nano({hi:Int64}) "
            "AND TraceId IN {traces:Array(String)} "
            "AND if(ResourceAttributes['flowscope.project'] = '', 'default', ResourceAttributes['flowscope.project']) "
            "= {project:String} "
            "AND SpanAttributes['flowscope.node.superstep'] != ''",
            parameters={"lo": min(s.start_ns for s in nodes), "hi": max(s.start_ns for s in nodes),
                        "traces": sorted({s.trace_id for s in nodes}), "project": project},
            settings=self._skip_settings,
        ).result_rows
        out: dict[str, int] = {}
        for span_id, raw in rows:
            try:
                out[span_id] = int(raw)
            except ValueError:
                continue
        return out

    def state_events(self, project: str, run_id: str) -> list[StateEvent]:
        """The run's state events in ``seq`` order, one per ``seq`` (a retried export counts once)."""
        rows = self.client.query(
            f"SELECT StateRecord FROM {self.db}.flowscope_state_events "
            "WHERE Project = {project:String} AND RunId = {run_id:String}",
            parameters={"project": project, "run_id": run_id},
            settings=self._run_settings,
        ).result_rows
        by_seq: dict[int, StateEvent] = {}
        for (line,) in rows:
            f = line.split("\t")
            if f[0] != "1" or len(f) != 9:
                raise ValueError(f"unknown StateRecord format {f[0]!r} ({len(f)} fields)")
            seq = int(f[1])
            if seq in by_seq:
                continue
            value = _tsv(f[4])
            try:
                decoded = json.loads(value) if value != "" else None
            except ValueError:
                decoded = value
            by_seq[seq] = StateEvent(seq, _tsv(f[2]), _tsv(f[3]), decoded, int(f[5]), _tsv(f[6]), f[7] == "1",
                                     int(f[8]))
        return [by_seq[k] for k in sorted(by_seq)]

    def run_attributes(self, project: str, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """Each run's run attributes (user, session, tenant, ...) by span attribute key (migration 011).

        Where a run changed a value, the first one seen is kept.
        """
        if not run_ids:
            return {}
        rows = self.client.query(
            f"SELECT RunId, Key, argMin(Value, first) FROM ("
            f"SELECT RunId, Key, Value, min(Start) AS first FROM {self.db}.flowscope_run_attributes "
            "WHERE Project = {project:String} AND RunId IN {runs:Array(String)} GROUP BY RunId, Key, Value) "
            "GROUP BY RunId, Key",
            parameters={"project": project, "runs": list(run_ids)},
            settings=self._skip_settings,
        ).result_rows
        out: dict[str, dict[str, str]] = {}
        for run_id, key, value in rows:
            out.setdefault(run_id, {})[key] = value
        return out

    def span_details(self, project: str, run_id: str) -> list[dict[str, Any]]:
        """Full spans (attributes and events) for the span tree endpoint.

        The run's first and last span start (from its rows in the typed
        table) bound the read of ``otel_traces`` to the day(s) it ran in.
        """
        rows = self.client.query(
            f"WITH (SELECT (min(Timestamp), max(Timestamp)) FROM {self.db}.flowscope_spans "
            "WHERE Project = {project:String} AND RunId = {run_id:String}) AS bounds "
            f"SELECT TraceId, SpanId, ParentSpanId, SpanName, SpanKind, toUnixTimestamp64Nano(Timestamp), "
            f"Duration, StatusCode, StatusMessage, ServiceName, SpanAttributes, "
            f"arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp), Events.Name, Events.Attributes "
            f"FROM {self.db}.otel_traces WHERE Timestamp >= bounds.1 AND Timestamp <= bounds.2 "
            "AND ResourceAttributes['flowscope.project'] = {project:String} "
            "AND TraceId IN (SELECT DISTINCT TraceId FROM "
            f"{self.db}.flowscope_spans WHERE Project = {{project:String}} AND RunId = {{run_id:String}}) "
            "AND (SpanAttributes['flowscope.run.id'] = {run_id:String} OR "
            "(SpanAttributes['flowscope.run.id'] = '' AND TraceId = {run_id:String})) "
            "ORDER BY Timestamp LIMIT 1 BY TraceId, SpanId",
            parameters={"project": project, "run_id": run_id},
            settings=self._skip_settings,
        ).result_rows
        out = []
        for (tid, sid, pid, name, kind, start, dur, status, smsg, svc, attrs, ets, enames, eattrs) in rows:
            out.append(
                {
                    "trace_id": tid, "span_id": sid, "parent_span_id": pid or None, "name": name, "kind": kind,
                    "start": iso(int(start)), "duration_ms": ms(int(dur)), "status": status,
                    "status_message": smsg, "service": svc, "attributes": dict(attrs),
                    "events": [
                        {"name": n, "timestamp": iso(int(t)), "attributes": dict(a)}
                        for t, n, a in zip(ets, enames, eattrs)
                    ],
                }
            )
        return out

    def run_fork(self, project: str, run_id: str) -> dict[str, Any]:
        """``forked_from`` / ``forked_at_step`` of a run (both None unless it is a replay's fork)."""
        rows = self.client.query(
            f"SELECT max(ForkedFrom), max(ForkedAtStep) FROM {self.db}.flowscope_runs "
            "WHERE Project = {project:String} AND RunId = {run_id:String}",
            parameters={"project": project, "run_id": run_id},
        ).result_rows
        return fork_fields(*rows[0]) if rows else fork_fields("", -1)

    # --- lists ----------------------------------------------------------------------

    def list_runs(
        self,
        project: str,
        *,
        limit: int,
        cursor: Cursor | None = None,
        service: str | None = None,
        flow: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        min_cost: Decimal | None = None,
        attrs: Sequence[tuple[str, str]] = (),
        sort: str = "start",
        order: str = "desc",
        exhaustive: bool = False,
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        """One page of runs from the aggregate table, filtered after the per-run merge.

        A run's row in ``flowscope_runs`` may still be split in parts (one per
        insert until merges catch up), so every answer is computed over whole
        runs. Grouping all of them (100k runs: ~100 ms) is avoided where it
        can be: a page by start time looks at the runs with a row in a window
        of the newest (or oldest) rows, and is exact when that window holds a
        full page; other sorts, and windows that fall short, find the page's
        run ids by grouping every run over only the few columns the sort and
        filters need, then read those runs in full. ``exhaustive=True`` groups
        every run over every column (the reference the fast paths are checked
        against).
        """
        sort_expr, sort_type = SORTS[sort]
        direction = "DESC" if order == "desc" else "ASC"
        having = ["1"]
        params: dict[str, Any] = {"project": project, "limit": limit + 1}
        if service:
            having.append("service = {service:String}")
            params["service"] = service
        if flow:
            having.append("flow = {flow:String}")
            params["flow"] = flow
        if status:
            having.append("status = {status:String}")
            params["status"] = status
        if since:
            having.append("start_ns >= {since:Int64}")
            params["since"] = to_ns(since)
        if until:
            having.append("start_ns < {until:Int64}")
            params["until"] = to_ns(until)
        if min_cost is not None:
            having.append("cost >= {min_cost:Decimal(38, 18)}")
            params["min_cost"] = str(min_cost)
        for i, (key, value) in enumerate(attrs):
            # Run attributes are stamped on every span of the run (set_run_attributes),
            # so any span carrying the pair puts its run in.
            having.append(
                f"RunId IN (SELECT DISTINCT if(SpanAttributes['flowscope.run.id'] = '', TraceId, "
                f"SpanAttributes['flowscope.run.id']) FROM {self.db}.otel_traces "
                f"WHERE ResourceAttributes['flowscope.project'] = {{project:String}} "
                f"AND SpanAttributes[{{attr_k{i}:String}}] = {{attr_v{i}:String}})"
            )
            params[f"attr_k{i}"] = key
            params[f"attr_v{i}"] = value
        if cursor:
            op = "<" if direction == "DESC" else ">"
            having.append(f"({sort_expr}, RunId) {op} ({{c_val:{sort_type}}}, {{c_run:String}})")
            params["c_val"] = cursor.value
            params["c_run"] = cursor.run_id
        order_by = f"{sort_expr} {direction}, RunId {direction}"
        full = f"""
            SELECT RunId, {_RUN_AGGREGATES}
            FROM {self.db}.flowscope_runs
            WHERE Project = {{project:String}}
            GROUP BY RunId
            HAVING {" AND ".join(having)}
            ORDER BY {order_by}
            LIMIT {{limit:UInt32}}
        """
        rows: Sequence[Sequence[Any]] | None = None
        if exhaustive:
            rows = self.client.query(full, parameters=params).result_rows
        else:
            if sort == "start":
                filtered = len(having) > 1 + bool(since) + bool(until) + bool(cursor)
                rows = self._runs_in_window(having, order_by, direction, params, limit,
                                            window=(limit + 1) * (100 if filtered else 4), since=bool(since),
                                            until=bool(until), cursor=bool(cursor))
            if rows is None:
                rows = self._runs_by_narrow_sort(having, order_by, params)
        more = len(rows) > limit
        rows = rows[:limit]
        runs = []
        for r in rows:
            (run_id, start_ns, end_ns, _dur, flow_, service_, status_, spans, llm, errors, retries, fallbacks,
             hits, unpriced, inp, cached, cwrite, out, reasoning, cost, saved, partial, forked_from, forked_at) = r
            runs.append(
                {
                    "run_id": run_id, "flow": flow_, "service": service_, "status": status_,
                    "start": iso(int(start_ns)), "end": iso(int(end_ns)) if status_ != "running" else None,
                    "duration_ms": ms(int(end_ns) - int(start_ns)), "spans": int(spans), "llm_calls": int(llm),
                    "errors": int(errors), "retries": int(retries), "fallbacks": int(fallbacks),
                    "cache_hits": int(hits), "unpriced_calls": int(unpriced), "input_tokens": int(inp),
                    "cached_input_tokens": int(cached), "cache_write_input_tokens": int(cwrite),
                    "output_tokens": int(out), "reasoning_tokens": int(reasoning),
                    "cost_usd": usd(Decimal(cost)), "cache_saved_usd": usd(Decimal(saved)),
                    "partially_priced_calls": int(partial),
                    **fork_fields(forked_from, forked_at),
                }
            )
        next_cursor = None
        if more and rows:
            last = rows[-1]
            value = {"start": last[1], "duration": last[3], "cost": last[19]}[sort]
            next_cursor = Cursor(str(value), last[0], sort)
        return runs, next_cursor

    def _runs_in_window(self, having: list[str], order_by: str, direction: str, params: dict[str, Any],
                        limit: int, *, window: int, since: bool, until: bool, cursor: bool) -> list[Any] | None:
        """A page by start time from the runs that have a row in a window of the newest (oldest) rows.

        Every row of a run starts no earlier than the run, so the runs that
        started inside the window all have rows in it and are all candidates;
        a candidate that started before the window is dropped. If a full page
        remains, nothing outside the window can belong on it; if the window
        reached the last row, nothing is outside. Otherwise (a selective
        filter, the last pages): None, and the caller groups every run narrowly.
        """
        desc = direction == "DESC"
        bounds = []  # only steer where the window sits; correctness does not depend on them
        if until and desc:
            bounds.append("Start < fromUnixTimestamp64Nano({until:Int64})")
        if since and not desc:
            bounds.append("Start >= fromUnixTimestamp64Nano({since:Int64})")
        if cursor:
            bounds.append(f"Start {'<=' if desc else '>='} fromUnixTimestamp64Nano({{c_val:Int64}})")
        edge = "min" if desc else "max"
        near = ("greatest(wc.1, fromUnixTimestamp64Nano({since:Int64}))" if since and desc
                else "least(wc.1, fromUnixTimestamp64Nano({until:Int64}))" if until and not desc else "wc.1")
        sql = f"""
            WITH (SELECT ({edge}(Start), count()) FROM (
                    SELECT Start FROM {self.db}.flowscope_runs
                    WHERE Project = {{project:String}} {"".join(" AND " + b for b in bounds)}
                    ORDER BY Start {direction} LIMIT {{window:UInt32}})) AS wc,
                 {near} AS w
            SELECT RunId, {_RUN_AGGREGATES}, wc.2 < {{window:UInt32}} AS whole
            FROM {self.db}.flowscope_runs
            WHERE Project = {{project:String}} AND RunId IN (
                SELECT RunId FROM {self.db}.flowscope_runs
                WHERE Project = {{project:String}} AND Start {">=" if desc else "<="} w)
            GROUP BY RunId
            HAVING {" AND ".join(having)} AND start_ns {">=" if desc else "<="} toUnixTimestamp64Nano(w)
            ORDER BY {order_by}
            LIMIT {{limit:UInt32}}
        """
        rows = self.client.query(sql, parameters={**params, "window": window}).result_rows
        if len(rows) > limit or (rows and rows[0][-1]):
            return [r[:-1] for r in rows]
        return None

    def _runs_by_narrow_sort(self, having: list[str], order_by: str, params: dict[str, Any]) -> list[Any]:
        """The page's run ids from only the columns the sort and filters read, then those runs in full."""
        text = " ".join(having) + " " + order_by
        for alias, expr in reversed(_RUN_NARROW):  # an alias named anywhere brings the aliases it is made of
            if re.search(rf"\b{alias}\b", text):
                text += " " + expr
        needed = [f"{expr} AS {alias}" for alias, expr in _RUN_NARROW if re.search(rf"\b{alias}\b", text)]
        sql = f"""
            SELECT RunId, {_RUN_AGGREGATES}
            FROM {self.db}.flowscope_runs
            WHERE Project = {{project:String}} AND RunId IN (
                SELECT RunId FROM (
                    SELECT RunId, {", ".join(needed)} FROM {self.db}.flowscope_runs
                    WHERE Project = {{project:String}}
                    GROUP BY RunId
                    HAVING {" AND ".join(having)}
                    ORDER BY {order_by}
                    LIMIT {{limit:UInt32}}))
            GROUP BY RunId
            ORDER BY {order_by}
            LIMIT {{limit:UInt32}}
        """
        return list(self.client.query(sql, parameters=params).result_rows)

    # --- cost roll-ups ------------------------------------------------------------------

    def costs(
        self,
        project: str,
        group_by: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        from_spans: bool = False,
    ) -> list[dict[str, Any]]:
        """Cost and tokens of LLM calls grouped by one dimension.

        Flow is a property of the run (LLM spans do not carry it), so that
        grouping reads the per-run aggregate and places a run by its start;
        ``attr:KEY`` reads the attribute maps of ``otel_traces`` (slower), one copy of
        each (trace id, span id): that table keeps a resent span as often as it came;
        everything else places a call by its start and reads the hourly
        roll-up (migration 005) for the hours wholly inside [since, until),
        and the typed span table for the part-hours at either edge, so the
        figures are exactly those of the span table (``from_spans=True`` reads
        only the span table: the reference the roll-up is checked against).
        """
        params: dict[str, Any] = {"project": project, "limit": limit}
        if group_by == "flow":
            where = ["Project = {project:String}"]
            if since:
                where.append("Start >= {since:DateTime64(9)}")
                params["since"] = ch_time(since)
            if until:
                where.append("Start < {until:DateTime64(9)}")
                params["until"] = ch_time(until)
            sql = f"""
                SELECT flow, '' AS provider, sum(calls), sum(inp), sum(cached), sum(cwrite), sum(out),
                       sum(reasoning), sum(unpriced), sum(cost), sum(partial)
                FROM (SELECT RunId, max(FlowName) AS flow, sum(LlmCalls) AS calls, sum(InputTokens) AS inp,
                             sum(CachedInputTokens) AS cached, sum(CacheWriteTokens) AS cwrite,
                             sum(OutputTokens) AS out, sum(ReasoningTokens) AS reasoning,
                             sum(UnpricedCalls) AS unpriced, sum(CostUsd) AS cost,
                             sum(PartialCalls) AS partial
                      FROM {self.db}.flowscope_runs WHERE {" AND ".join(where)} GROUP BY RunId)
                GROUP BY flow HAVING sum(calls) > 0
                ORDER BY sum(cost) DESC, flow LIMIT {{limit:UInt32}}
            """
        elif group_by.startswith("attr:"):
            params["key"] = group_by[5:]
            # run attributes by their short name too: attr:tenant -> flowscope.run.attr.tenant
            params["run_key"] = attribute_key(group_by[5:])
            where = ["ResourceAttributes['flowscope.project'] = {project:String}",
                     "SpanAttributes['flowscope.span.kind'] = 'llm'"]
            if since:
                where.append("Timestamp >= {since:DateTime64(9)}")
                params["since"] = ch_time(since)
            if until:
                where.append("Timestamp < {until:DateTime64(9)}")
                params["until"] = ch_time(until)
            a = "SpanAttributes"
            sql = f"""
                SELECT if({a}[{{run_key:String}}] != '', {a}[{{run_key:String}}], {a}[{{key:String}}]) AS k,
                       '' AS provider, count(),
                       sum(toUInt64OrZero({a}['gen_ai.usage.input_tokens'])),
                       sum(toUInt64OrZero({a}['gen_ai.usage.cache_read.input_tokens'])),
                       sum(toUInt64OrZero({a}['gen_ai.usage.cache_creation.input_tokens'])),
                       sum(toUInt64OrZero({a}['gen_ai.usage.output_tokens'])),
                       sum(toUInt64OrZero({a}['gen_ai.usage.reasoning.output_tokens'])),
                       countIf({a}['flowscope.cost.source'] = 'unpriced'),
                       sum(toDecimal128OrZero({a}['flowscope.cost.usd'], 18)) AS cost,
                       countIf({a}['flowscope.cost.source'] = 'partial')
                FROM (SELECT SpanAttributes FROM {self.db}.otel_traces WHERE {" AND ".join(where)}
                      LIMIT 1 BY TraceId, SpanId)
                GROUP BY k ORDER BY cost DESC, k LIMIT {{limit:UInt32}}
            """
        elif not from_spans:
            sql = self._costs_rollup_sql(group_by, since, until, params)
        else:
            key = {
                "model": "Model", "provider": "Provider", "service": "ServiceName", "node": "NodeName",
                "day": "toString(toDate(Timestamp))",
            }[group_by]
            provider = "any(Provider)" if group_by == "model" else "''"
            where = ["Project = {project:String}", "Kind = 'llm'"]
            if since:
                where.append("Timestamp >= {since:DateTime64(9)}")
                params["since"] = ch_time(since)
            if until:
                where.append("Timestamp < {until:DateTime64(9)}")
                params["until"] = ch_time(until)
            order = "k" if group_by == "day" else "cost DESC, k"
            sql = f"""
                SELECT {key} AS k, {provider}, count(), sum(InputTokens), sum(CachedInputTokens),
                       sum(CacheWriteTokens), sum(OutputTokens), sum(ReasoningTokens),
                       countIf(CostSource = 'unpriced'), sum(CostUsd) AS cost, countIf(CostSource = 'partial')
                FROM {self.db}.flowscope_spans WHERE {" AND ".join(where)}
                GROUP BY k ORDER BY {order} LIMIT {{limit:UInt32}}
            """
        rows = self.client.query(sql, parameters=params).result_rows
        return [
            {"key": str(k), "provider": prov or None, "llm_calls": int(n), "input_tokens": int(i),
             "cached_input_tokens": int(c), "cache_write_input_tokens": int(w), "output_tokens": int(o),
             "reasoning_tokens": int(r), "unpriced_calls": int(u), "partially_priced_calls": int(pc),
             "cost_usd": usd(Decimal(cost))}
            for k, prov, n, i, c, w, o, r, u, cost, pc in rows
        ]

    def _costs_rollup_sql(self, group_by: str, since: datetime | None, until: datetime | None,
                          params: dict[str, Any]) -> str:
        key = {
            "model": "Model", "provider": "Provider", "service": "ServiceName", "node": "NodeName",
            "day": "toString(toDate(Timestamp))",
        }[group_by]
        since_p, until_p = "{since:DateTime64(9)}", "{until:DateTime64(9)}"
        # an hour row counts when the whole hour is inside [since, until)
        hours = ["Project = {project:String}"]
        edge = ["Project = {project:String}", "Kind = 'llm'"]
        covered, near = [], []
        if since:
            params["since"] = ch_time(since)
            hours.append(f"Timestamp >= {since_p}")
            edge.append(f"Timestamp >= {since_p}")
            covered.append(f"toStartOfHour(Timestamp) >= {since_p}")
            near.append(f"Timestamp < {since_p} + INTERVAL 1 HOUR")
        if until:
            params["until"] = ch_time(until)
            hours.append(f"Timestamp <= {until_p} - INTERVAL 1 HOUR")
            edge.append(f"Timestamp < {until_p}")
            covered.append(f"toStartOfHour(Timestamp) <= {until_p} - INTERVAL 1 HOUR")
            near.append(f"Timestamp >= {until_p} - INTERVAL 1 HOUR")
        arms = [
            f"SELECT {key} AS k, Provider AS p, LlmCalls AS n, InputTokens AS i, CachedInputTokens AS c, "
            f"CacheWriteTokens AS w, OutputTokens AS o, ReasoningTokens AS r, UnpricedCalls AS u, CostUsd AS cost, "
            f"PartialCalls AS pc "
            f"FROM {self.db}.flowscope_costs_hourly WHERE {' AND '.join(hours)}"
        ]
        if covered:
            # the part-hours: within an hour of an edge (lets ClickHouse skip the other days), not covered above
            edge.append(f"({' OR '.join(near)})")
            edge.append(f"NOT ({' AND '.join(covered)})")
            arms.append(
                f"SELECT {key} AS k, Provider AS p, toUInt64(1) AS n, InputTokens AS i, CachedInputTokens AS c, "
                f"CacheWriteTokens AS w, OutputTokens AS o, ReasoningTokens AS r, "
                f"toUInt64(CostSource = 'unpriced') AS u, CostUsd AS cost, toUInt64(CostSource = 'partial') AS pc "
                f"FROM {self.db}.flowscope_spans WHERE {' AND '.join(edge)}"
            )
        provider = "any(p)" if group_by == "model" else "''"
        order = "k" if group_by == "day" else "cost DESC, k"
        return f"""
            SELECT k, {provider}, sum(n), sum(i), sum(c), sum(w), sum(o), sum(r), sum(u), sum(cost) AS cost, sum(pc)
            FROM ({" UNION ALL ".join(arms)})
            GROUP BY k HAVING sum(n) > 0 ORDER BY {order} LIMIT {{limit:UInt32}}
        """

    # --- health ---------------------------------------------------------------------

    def ping(self) -> str:
        return str(self.client.query("SELECT version()").result_rows[0][0])
