"""Repricing stored LLM spans: a price added or corrected later fixes history, counted once.

Every usage part of a span (tokens by kind, cache writes by lifetime,
modalities, tool requests, the service tier) is kept in its attributes in
``otel_traces``, and every priced span names the catalog version that priced
it (``PricingVersion``), so a span can be priced again under another catalog
with exactly the rule used at ingest (:func:`flowscope.core.normalize.span_cost`),
at the prices in force when the call was made.

Where the old figure lives, and how each is corrected so that every reader sees
the new one exactly once:

* ``flowscope_spans`` (run summary, edge hours of the cost roll-up, dashboards)
  and ``otel_traces`` (span details, ``group_by=attr:``): the span's row is
  rewritten in place by a mutation (``ALTER TABLE ... UPDATE``), so no second
  row ever exists; ``RunRecord`` is MATERIALIZED from the cost columns and is
  rewritten with them. The span-once view of migration 008 is untouched: it
  keys on ids, which do not change.
* ``flowscope_runs`` and ``flowscope_costs_hourly`` are sums
  (``SimpleAggregateFunction(sum)``): a correction row holding the difference
  (new - old cost, and the change of the unpriced and partial counts, negative counts
  written modulo 2^64 so that UInt64 sums come out right) is added, and the
  sums, before or after merges, equal those of the repriced spans. The
  difference is computed by ClickHouse from the stored rows themselves (every
  stored copy of a span, the way the aggregates counted it), and a run's
  correction row carries the run's own start, end and names, so a filter on
  them keeps or drops it with the run.

Order and a rerun: the correction rows go in first, with a deduplication token
derived from the spans and their new figures, then the mutations. Interrupted
in between, the same command run again (same pricing) computes the same rows,
which ClickHouse drops as duplicates, and finishes the mutations; a span whose
rows already say the new figure is left alone, so running it twice changes
nothing the second time. Spans the catalog cannot price are never made
unpriced (a known price is not replaced by an unknown one); provider-reported
costs (``source=provider``) and cache hits are not repriced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from flowscope.core import semconv
from flowscope.core.normalize import span_cost
from flowscope.core.pricing import Cost, PricingCatalog, PricingFileError

from .schema import SchemaOptions

# the attributes a price writes; all of them go before the new ones are set
COST_KEYS: tuple[str, ...] = (
    semconv.COST_USD, semconv.COST_INPUT_USD, semconv.COST_CACHED_INPUT_USD, semconv.COST_CACHE_WRITE_USD,
    semconv.COST_OUTPUT_USD, semconv.COST_TOOL_USD, semconv.COST_SOURCE, semconv.PRICING_VERSION,
    semconv.COST_UNPRICED_PARTS, semconv.PRICING_ERROR,
)
# the flowscope_spans columns a price fills (as migration 002's view reads them)
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("CostUsd", semconv.COST_USD), ("CostInputUsd", semconv.COST_INPUT_USD),
    ("CostCachedInputUsd", semconv.COST_CACHED_INPUT_USD), ("CostCacheWriteUsd", semconv.COST_CACHE_WRITE_USD),
    ("CostOutputUsd", semconv.COST_OUTPUT_USD),
)
_KEY = "concat(TraceId, ':', SpanId)"
_AT = f"indexOf({{keys:Array(String)}}, {_KEY})"


@dataclass
class RepriceReport:
    """What a reprice examined and changed (``flowscope-collector reprice`` prints it)."""

    pricing_version: str
    examined: int = 0  # LLM spans in the window (cache hits and provider-reported costs excluded)
    repriced: int = 0  # spans whose cost changed
    newly_priced: int = 0  # of those, spans that were unpriced
    unchanged: int = 0
    unpriced: int = 0  # spans this catalog cannot price either: left as they were
    invalid_usage: int = 0  # self-contradicting usage: left as they were
    cost_before_usd: Decimal = Decimal(0)  # the repriced spans' total, before and after
    cost_after_usd: Decimal = Decimal(0)
    models: dict[str, int] = field(default_factory=dict)  # repriced spans per model

    def as_dict(self) -> dict[str, Any]:
        return {
            "pricing_version": self.pricing_version, "examined": self.examined, "repriced": self.repriced,
            "newly_priced": self.newly_priced, "unchanged": self.unchanged, "unpriced": self.unpriced,
            "invalid_usage": self.invalid_usage, "cost_before_usd": str(self.cost_before_usd),
            "cost_after_usd": str(self.cost_after_usd), "models": dict(sorted(self.models.items())),
        }


@dataclass(frozen=True)
class _Change:
    key: str  # TraceId:SpanId
    run_id: str
    attrs: dict[str, str]  # the new cost attributes
    spans_too: bool  # flowscope_spans differs (so do the sums); otherwise only otel_traces' attributes
    start_ns: int  # when the span started: bounds what a mutation looks at (tables are partitioned by day)


def reprice(
    client: Client,
    options: SchemaOptions,
    catalog: PricingCatalog,
    *,
    since: datetime,
    until: datetime | None = None,
    model: str | None = None,
    project: str | None = None,
    batch: int = 1000,
    dry_run: bool = False,
) -> RepriceReport:
    """Price the LLM spans that started in [since, until) again under ``catalog`` and store the result once."""
    report = RepriceReport(catalog.version)
    db = options.database
    if project is not None:
        projects = [project]
    else:
        projects = [r[0] for r in client.query(
            f"SELECT DISTINCT Project FROM {db}.flowscope_spans WHERE Kind = 'llm' "
            "AND Timestamp >= fromUnixTimestamp64Nano({since:Int64}) ORDER BY Project",
            parameters={"since": _ns(since)}).result_rows]
    for proj in projects:
        cursor: tuple[int, str, str] | None = None
        while True:
            rows = _page(client, db, proj, since, until, model, cursor, batch)
            if not rows:
                break
            cursor = (int(rows[-1][2]), rows[-1][1], rows[-1][3])
            changes = _changes(client, db, proj, rows, catalog, report)
            if changes and not dry_run:
                _apply(client, options, proj, changes)
            if len(rows) < batch:
                break
    return report


def _ns(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1_000_000) * 1000


def _page(client: Client, db: str, project: str, since: datetime, until: datetime | None, model: str | None,
          cursor: tuple[int, str, str] | None, batch: int) -> Sequence[Sequence[Any]]:
    # priced by a catalog (or found unpriced by one): not provider-reported costs, not spans no one priced
    where = ["Project = {project:String}", "Kind = 'llm'", "NOT CacheHit",
             "CostSource IN ('computed', 'partial', 'unpriced')",
             "Timestamp >= fromUnixTimestamp64Nano({since:Int64})"]
    params: dict[str, Any] = {"project": project, "since": _ns(since)}
    if until is not None:
        where.append("Timestamp < fromUnixTimestamp64Nano({until:Int64})")
        params["until"] = _ns(until)
    if model:
        if "*" in model:  # a glob: gpt-4o* (LIKE's own wildcards escaped)
            like = model.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")
            where.append("Model LIKE {model:String}")
            params["model"] = like
        else:
            where.append("Model = {model:String}")
            params["model"] = model
    return spans_page(client, db, "RunId, TraceId, toUnixTimestamp64Nano(Timestamp), SpanId, CostSource, "
                      + ", ".join(c for c, _ in _COLUMNS), " AND ".join(where), params, cursor, batch)


def spans_page(client: Client, db: str, columns: str, where: str, params: Mapping[str, Any],
               cursor: tuple[int, str, str] | None, limit: int) -> Sequence[Sequence[Any]]:
    """One page of ``flowscope_spans`` rows in (Timestamp, TraceId, SpanId) order, one per span.

    ``cursor`` is the last page's final (start ns, trace id, span id): keyset paging, so a
    page costs the same however deep it is. A span stored twice (before migration 008) is read once.
    """
    page_params = {**params, "page_limit": limit}
    if cursor is not None:
        where += (" AND (Timestamp, TraceId, SpanId) > (fromUnixTimestamp64Nano({c_ts:Int64}), "
                  "{c_trace:String}, {c_span:String})")
        page_params.update(c_ts=cursor[0], c_trace=cursor[1], c_span=cursor[2])
    return client.query(
        f"SELECT {columns} FROM {db}.flowscope_spans WHERE {where} "
        "ORDER BY Timestamp, TraceId, SpanId LIMIT 1 BY TraceId, SpanId LIMIT {page_limit:UInt32}",
        parameters=page_params,
    ).result_rows


def stored_attributes(client: Client, db: str, project: str,
                      spans: Sequence[tuple[str, int]]) -> dict[tuple[str, str], Mapping[str, str]]:
    """The attribute maps of stored spans, by (trace id, span id), for ``spans`` given as (trace id, start ns).

    ``otel_traces`` holds every usage part (``flowscope_spans`` only the totals);
    the read is bounded by the spans' time range and trace ids.
    """
    if not spans:
        return {}
    stamps = [ns for _, ns in spans]
    return {
        (t, s): a for t, s, a in client.query(
            f"SELECT TraceId, SpanId, any(SpanAttributes) FROM {db}.otel_traces "
            "WHERE Timestamp >= fromUnixTimestamp64Nano({lo:Int64}) "
            "AND Timestamp <= fromUnixTimestamp64Nano({hi:Int64}) AND TraceId IN {traces:Array(String)} "
            "AND if(ResourceAttributes['flowscope.project'] = '', 'default', "
            "ResourceAttributes['flowscope.project']) = {project:String} "
            "GROUP BY TraceId, SpanId",
            parameters={"lo": min(stamps), "hi": max(stamps), "project": project,
                        "traces": sorted({t for t, _ in spans})},
        ).result_rows
    }


def repriceable(source: str, cache_hit: bool) -> bool:
    """Whether a stored figure is a catalog's to replace: not a provider-reported cost, not a cache hit."""
    return not cache_hit and source in (semconv.COST_SOURCE_COMPUTED, semconv.COST_SOURCE_PARTIAL,
                                        semconv.COST_SOURCE_UNPRICED)


def price_again(attrs: Mapping[str, str], start_ns: int, catalog: PricingCatalog) -> tuple[str, Cost | None]:
    """A stored span's cost under ``catalog``, at the prices in force when it ran.

    Returns ``("priced", cost)``; ``("unpriced", None)`` when the catalog cannot
    price it either, or ``("invalid", None)`` for self-contradicting usage: in
    both cases the stored figure stands (a known price is never replaced by an
    unknown one).
    """
    at = datetime.fromtimestamp(int(start_ns) / 1e9, tz=timezone.utc)
    try:
        cost = span_cost(attrs, catalog, at=at)
    except PricingFileError:
        raise
    except ValueError:
        return "invalid", None
    if cost is None or not cost.priced:
        return "unpriced", None
    return "priced", cost


def _changes(client: Client, db: str, project: str, rows: Sequence[Sequence[Any]], catalog: PricingCatalog,
             report: RepriceReport) -> list[_Change]:
    """The spans of a page whose stored cost differs from ``catalog``'s, with their new attributes."""
    stored = stored_attributes(client, db, project, [(r[1], int(r[2])) for r in rows])
    out: list[_Change] = []
    for run_id, trace_id, start_ns, span_id, source, *old_costs in rows:
        attrs = stored.get((trace_id, span_id))
        if attrs is None:
            continue  # the raw span is gone (TTL): nothing to price from
        report.examined += 1
        outcome, cost = price_again(attrs, int(start_ns), catalog)
        if outcome == "invalid":
            report.invalid_usage += 1
            continue
        if cost is None:
            report.unpriced += 1
            continue
        new = dict(cost.as_attributes())
        new_costs = [Decimal(new.get(k) or 0) for _, k in _COLUMNS]
        spans_too = source != cost.source or any(
            Decimal(o) != n for o, n in zip(old_costs, new_costs, strict=True))
        # the version alone differing is not a change: the figure stands, priced by the version it names
        same_attrs = all(attrs.get(k) == new.get(k) for k in COST_KEYS if k != semconv.PRICING_VERSION)
        if not spans_too and same_attrs:
            report.unchanged += 1
            continue
        out.append(_Change(f"{trace_id}:{span_id}", run_id, new, spans_too, int(start_ns)))
        if spans_too:
            report.repriced += 1
            report.newly_priced += source == semconv.COST_SOURCE_UNPRICED
            report.cost_before_usd += Decimal(old_costs[0])
            report.cost_after_usd += new_costs[0]
            name = attrs.get(semconv.GEN_AI_RESPONSE_MODEL) or attrs.get(semconv.GEN_AI_REQUEST_MODEL) or ""
            report.models[name] = report.models.get(name, 0) + 1
    return out


def _table(options: SchemaOptions, name: str) -> str:
    """The table a mutation goes to: each shard's local table on a sharded cluster, with ON CLUSTER."""
    local = f"{name}_local" if options.distributed else name
    on_cluster = f" ON CLUSTER {options.cluster}" if options.cluster else ""
    return f"{options.database}.{local}{on_cluster}"


def _apply(client: Client, options: SchemaOptions, project: str, changes: list[_Change]) -> None:
    db = options.database
    mutate = {"mutations_sync": 2}
    summed = [c for c in changes if c.spans_too]
    if summed:
        params = _span_params(project, summed)
        token = hashlib.sha256(json.dumps([project, [(c.key, c.attrs) for c in summed]], sort_keys=True)
                               .encode()).hexdigest()
        once = {"max_threads": 1, "max_insert_threads": 1}
        client.command(_RUN_DELTAS.replace("__DB__", db), parameters=params,
                       settings={**once, "insert_deduplication_token": f"flowscope-reprice-runs-{token}"})
        client.command(_HOURLY_DELTAS.replace("__DB__", db), parameters=params,
                       settings={**once, "insert_deduplication_token": f"flowscope-reprice-hourly-{token}"})
    client.command(
        f"ALTER TABLE {_table(options, 'otel_traces')} UPDATE SpanAttributes = mapUpdate("
        "mapFilter((k, v) -> NOT has({drop:Array(String)}, k), SpanAttributes), "
        "CAST(mapFromArrays({names:Array(Array(String))}[" + _AT + "], {values:Array(Array(String))}[" + _AT
        + "]), 'Map(LowCardinality(String), String)')) "
        "WHERE " + _WHEN + " AND TraceId IN {traces:Array(String)} AND has({keys:Array(String)}, " + _KEY + ") "
        "AND if(ResourceAttributes['flowscope.project'] = '', 'default', ResourceAttributes['flowscope.project']) "
        "= {project:String}",
        parameters={
            "drop": list(COST_KEYS), "keys": [c.key for c in changes], "project": project,
            "names": [list(c.attrs) for c in changes], "values": [list(c.attrs.values()) for c in changes],
            "traces": sorted({c.key.split(":", 1)[0] for c in changes}), **_bounds(changes),
        },
        settings=mutate,
    )
    if summed:
        sets = [f"{col} = toDecimal128OrZero({{{col}:Array(String)}}[{_AT}], 18)" for col, _ in _COLUMNS]
        sets.append(f"CostSource = {{source:Array(String)}}[{_AT}]")
        sets.append(f"PricingVersion = {{version:Array(String)}}[{_AT}]")
        client.command(
            f"ALTER TABLE {_table(options, 'flowscope_spans')} UPDATE {', '.join(sets)} "
            "WHERE " + _WHEN + " AND Project = {project:String} AND RunId IN {runs:Array(String)} "
            f"AND has({{keys:Array(String)}}, {_KEY})",
            parameters={**_span_params(project, summed), **_bounds(summed)},
            settings=mutate,
        )


# a mutation rewrites only the parts (days) that can hold the spans: ClickHouse prunes by this bound
_WHEN = "Timestamp >= fromUnixTimestamp64Nano({lo:Int64}) AND Timestamp <= fromUnixTimestamp64Nano({hi:Int64})"


def _bounds(changes: list[_Change]) -> dict[str, int]:
    return {"lo": min(c.start_ns for c in changes), "hi": max(c.start_ns for c in changes)}


def _span_params(project: str, changes: list[_Change]) -> dict[str, Any]:
    params: dict[str, Any] = {
        "project": project, "keys": [c.key for c in changes], "runs": sorted({c.run_id for c in changes}),
        "source": [c.attrs.get(semconv.COST_SOURCE, "") for c in changes],
        "version": [c.attrs.get(semconv.PRICING_VERSION, "") for c in changes],
    }
    for col, key in _COLUMNS:
        params[col] = [c.attrs.get(key, "") for c in changes]
    return params


# The changed spans' stored rows, old and new figures side by side (every stored copy, as the sums counted it).
_CHANGED = (
    "SELECT Project, RunId, Timestamp, ServiceName, Provider, Model, NodeName, CostSource, CostUsd, "
    "{source:Array(String)}[" + _AT + "] AS NewSource, "
    "toDecimal128OrZero({CostUsd:Array(String)}[" + _AT + "], 18) AS NewCost "
    "FROM __DB__.flowscope_spans WHERE Project = {project:String} AND RunId IN {runs:Array(String)} "
    "AND Kind = 'llm' AND has({keys:Array(String)}, " + _KEY + ")"
)
_DELTAS = ("toUInt64(sum(toInt64(NewSource = 'unpriced') - toInt64(CostSource = 'unpriced'))) AS du, "
           "toUInt64(sum(toInt64(NewSource = 'partial') - toInt64(CostSource = 'partial'))) AS dp, "
           "sum(NewCost - CostUsd) AS dc")

_RUN_DELTAS = (
    "INSERT INTO __DB__.flowscope_runs (Project, RunId, Start, End, FlowName, ServiceName, RootSeen, RootError, "
    "Spans, LlmCalls, Errors, Retries, Fallbacks, CacheHits, UnpricedCalls, PartialCalls, InputTokens, "
    "CachedInputTokens, CacheWriteTokens, OutputTokens, ReasoningTokens, CostUsd, CacheSavedUsd) "
    "SELECT d.Project, d.RunId, r.s, r.e, r.f, r.sv, 0, 0, 0, 0, 0, 0, 0, 0, d.du, d.dp, 0, 0, 0, 0, 0, d.dc, 0 "
    "FROM (SELECT Project, RunId, " + _DELTAS + " FROM (" + _CHANGED + ") GROUP BY Project, RunId) AS d "
    "INNER JOIN (SELECT Project, RunId, min(Start) AS s, max(End) AS e, max(FlowName) AS f, "
    "max(ServiceName) AS sv FROM __DB__.flowscope_runs WHERE Project = {project:String} "
    "AND RunId IN {runs:Array(String)} GROUP BY Project, RunId) AS r "
    "ON d.Project = r.Project AND d.RunId = r.RunId ORDER BY d.RunId"
)
_HOURLY_DELTAS = (
    "INSERT INTO __DB__.flowscope_costs_hourly (Project, Timestamp, ServiceName, Provider, Model, NodeName, "
    "LlmCalls, InputTokens, CachedInputTokens, CacheWriteTokens, OutputTokens, ReasoningTokens, UnpricedCalls, "
    "PartialCalls, CostUsd, CacheHits, CacheSavedUsd) "
    "SELECT Project, toStartOfHour(Timestamp) AS Hour, ServiceName, Provider, Model, NodeName, "
    "0, 0, 0, 0, 0, 0, " + _DELTAS + ", 0, 0 FROM (" + _CHANGED + ") "
    "GROUP BY Project, Hour, ServiceName, Provider, Model, NodeName "
    "ORDER BY Project, Hour, ServiceName, Provider, Model, NodeName"
)
