"""Generate flowscope's Grafana dashboards for the official ClickHouse datasource.

Run ``python dashboards/generate.py`` after editing; it rewrites the JSON under
``dashboards/grafana/`` that Grafana imports (``--check`` only compares). The
dashboards are code so that the filters, the variables and the time macros are
written once and every panel gets them the same way; the JSON is committed so
Grafana (and users without Python) read plain files.

Conventions every panel follows, so the time picker and the variables work:

* Every query filters on the dashboard range with the plugin's macros
  (``$__timeFilter``, ``$__fromTime``/``$__toTime``) and buckets with
  ``$__timeInterval``; nothing uses ``now()``.
* ``$project``, ``$service``, ``$flow`` and ``$model`` are multi-value variables
  with "All"; each filter is wrapped in ``$__conditionalAll`` so "All" costs
  nothing. The flow of a span is its run's flow, looked up in
  ``flowscope_runs`` with ``GLOBAL IN`` (correct on a single node and on a
  sharded cluster alike, where the tables are Distributed).
* Money leaves ClickHouse as ``toFloat64`` at the very end: the columns are
  Decimal(38, 18) and are summed exactly; only the number handed to a panel is
  a float, because panels plot floats.
* ``flowscope_runs`` holds partial rows per run (SimpleAggregateFunction
  columns), so run-level panels aggregate it ``GROUP BY Project, RunId``
  first and filter on the run's start afterwards. The merged values are cast
  to plain types: ``max()`` of a SimpleAggregateFunction column keeps the
  wrapper type, which is not what a panel (or its client) should have to know.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "grafana"

PLUGIN = "grafana-clickhouse-datasource"
PLUGIN_VERSION = "4.10.1"
DATASOURCE_UID = "flowscope-clickhouse"  # the provisioned datasource (provisioning/datasources)
DS = {"type": PLUGIN, "uid": "${datasource}"}

# Query formats of the plugin's backend (sqlds): how a result becomes frames.
FORMAT_TIMESERIES, FORMAT_TABLE, FORMAT_LOGS, FORMAT_TRACE = 0, 1, 2, 3
QUERY_TYPE = {FORMAT_TIMESERIES: "timeseries", FORMAT_TABLE: "table", FORMAT_TRACE: "traces"}

UIDS = {
    "cost": "flowscope-llm-cost",
    "reliability": "flowscope-reliability",
    "cache": "flowscope-cache",
    "runs": "flowscope-run-explorer",
}

# --- filters ------------------------------------------------------------------

F_PROJECT = "$__conditionalAll(Project IN (${project:singlequote}), $project)"
F_SERVICE = "$__conditionalAll(ServiceName IN (${service:singlequote}), $service)"
F_MODEL = "$__conditionalAll(Model IN (${model:singlequote}), $model)"
F_FLOW = (
    "$__conditionalAll(RunId GLOBAL IN (SELECT RunId FROM flowscope_runs "
    "WHERE End >= $__fromTime AND FlowName IN (${flow:singlequote})), $flow)"
)


def span_filters(*, model: bool = False, kind: str | None = None) -> str:
    """WHERE clause for flowscope_spans: time range, variables, optional kind."""
    parts = ["$__timeFilter(Timestamp)"]
    if kind:
        parts.append(f"Kind = '{kind}'")
    parts += [F_PROJECT, F_SERVICE, F_FLOW]
    if model:
        parts.append(F_MODEL)
    return "\n  AND ".join(parts)


def runs_source() -> str:
    """One row per run (merged partial rows), restricted to runs that started in range.

    Every partial row of a run that started at or after the range start has
    ``Start`` at or after it too, so the inner filter drops no part of such a run.
    """
    return (
        "(\n  SELECT Project, RunId,\n"
        "    toDateTime64(min(Start), 9) AS RunStart, toDateTime64(max(End), 9) AS RunEnd,\n"
        "    toString(max(FlowName)) AS Flow, toString(max(ServiceName)) AS Service,\n"
        "    toUInt8(max(RootSeen)) AS RootSeen, toUInt8(max(RootError)) AS RootError,\n"
        "    toUInt64(sum(Spans)) AS SpanCount, toUInt64(sum(LlmCalls)) AS Calls, toUInt64(sum(Errors)) AS ErrorCount,\n"
        "    toUInt64(sum(Retries)) AS RetryCount, toUInt64(sum(Fallbacks)) AS FallbackCount,\n"
        "    toUInt64(sum(CacheHits)) AS CacheHitCount, toUInt64(sum(UnpricedCalls)) AS Unpriced,\n"
        "    toUInt64(sum(PartialCalls)) AS Partial,\n"
        "    toUInt64(sum(InputTokens)) AS InTok, toUInt64(sum(CachedInputTokens)) AS CachedTok,\n"
        "    toUInt64(sum(OutputTokens)) AS OutTok,\n"
        "    toDecimal128(sum(CostUsd), 18) AS Cost, toDecimal128(sum(CacheSavedUsd), 18) AS Saved\n"
        "  FROM flowscope_runs\n"
        "  WHERE Start >= $__fromTime\n"
        "  GROUP BY Project, RunId\n)"
    )


def run_filters() -> str:
    parts = [
        "$__timeFilter(RunStart)",
        F_PROJECT,
        "$__conditionalAll(Service IN (${service:singlequote}), $service)",
        "$__conditionalAll(Flow IN (${flow:singlequote}), $flow)",
        "$__conditionalAll(RunId GLOBAL IN (SELECT RunId FROM flowscope_spans WHERE $__timeFilter(Timestamp) "
        "AND Kind = 'llm' AND Model IN (${model:singlequote})), $model)",
    ]
    return "\n  AND ".join(parts)


# Estimated savings from provider prompt caching: cached tokens priced at the
# span's own uncached input rate, minus what they were billed. A span whose
# input was entirely cached has no uncached rate to compare and counts 0.
PROMPT_CACHE_SAVINGS = (
    "if(InputTokens > CachedInputTokens AND CachedInputTokens > 0, "
    "CostInputUsd / (InputTokens - CachedInputTokens) * CachedInputTokens - CostCachedInputUsd, "
    "toDecimal128(0, 18))"
)
IS_ERROR = "StatusCode IN ('Error', 'STATUS_CODE_ERROR')"


# --- panels -------------------------------------------------------------------


class Layout:
    """Places panels left to right in rows of 24 grid units."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, w: int, h: int) -> dict[str, int]:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def target(sql: str, fmt: int) -> dict[str, Any]:
    return {
        "datasource": DS,
        "editorType": "sql",
        "format": fmt,
        "queryType": QUERY_TYPE[fmt],
        "pluginVersion": PLUGIN_VERSION,
        "rawSql": sql.strip(),
        "refId": "A",
    }


def panel(
    lay: Layout,
    kind: str,
    title: str,
    sql: str,
    *,
    w: int = 12,
    h: int = 8,
    unit: str | None = None,
    description: str = "",
    fmt: int | None = None,
    options: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    custom: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if fmt is None:
        fmt = FORMAT_TIMESERIES if kind == "timeseries" else FORMAT_TRACE if kind == "traces" else FORMAT_TABLE
    defaults: dict[str, Any] = {}
    if unit:
        defaults["unit"] = unit
    if custom:
        defaults["custom"] = custom
    p: dict[str, Any] = {
        "id": lay.new_id(),
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": lay.place(w, h),
        "targets": [target(sql, fmt)],
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    return p


def stat(lay: Layout, title: str, sql: str, *, unit: str | None = None, description: str = "",
         w: int = 4, mappings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    p = panel(lay, "stat", title, sql, w=w, h=4, unit=unit, description=description, options={
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value", "graphMode": "none", "textMode": "auto", "justifyMode": "auto",
    })
    if mappings:
        p["fieldConfig"]["defaults"]["mappings"] = mappings
    return p


def timeseries(lay: Layout, title: str, sql: str, *, unit: str | None = None, description: str = "",
               w: int = 12, stack: bool = False, bars: bool = False) -> dict[str, Any]:
    custom: dict[str, Any] = {"drawStyle": "bars" if bars else "line", "fillOpacity": 60 if bars else 10,
                              "lineWidth": 1, "showPoints": "never", "spanNulls": True}
    if stack:
        custom["stacking"] = {"group": "A", "mode": "normal"}
    return panel(lay, "timeseries", title, sql, w=w, unit=unit, description=description, custom=custom, options={
        "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": ["sum"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    })


def table(lay: Layout, title: str, sql: str, *, description: str = "", w: int = 12, h: int = 8,
          units: dict[str, str] | None = None, links: dict[str, tuple[str, str]] | None = None,
          sort_by: str | None = None) -> dict[str, Any]:
    overrides = []
    for col, unit in (units or {}).items():
        overrides.append({"matcher": {"id": "byName", "options": col}, "properties": [{"id": "unit", "value": unit}]})
    for col, (link_title, url) in (links or {}).items():
        overrides.append({"matcher": {"id": "byName", "options": col},
                          "properties": [{"id": "links", "value": [{"title": link_title, "url": url}]}]})
    options: dict[str, Any] = {"showHeader": True, "cellHeight": "sm",
                               "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": True}]
    return panel(lay, "table", title, sql, w=w, h=h, description=description, overrides=overrides,
                 custom={"align": "auto", "cellOptions": {"type": "auto"}, "inspect": True}, options=options)


def row(lay: Layout, title: str) -> dict[str, Any]:
    if lay.x:
        lay.x, lay.y, lay.row_h = 0, lay.y + lay.row_h, 0
    pos = lay.place(24, 1)
    lay.x, lay.y, lay.row_h = 0, lay.y + 1, 0
    return {"id": lay.new_id(), "type": "row", "title": title, "collapsed": False, "gridPos": pos, "panels": []}


# --- variables ----------------------------------------------------------------


def query_var(name: str, label: str, sql: str, *, multi: bool = True, include_all: bool = True,
              current: dict[str, Any] | None = None) -> dict[str, Any]:
    sql = " ".join(sql.split())
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": sql,
        "query": {"editorType": "sql", "rawSql": sql},
        "refresh": 2,  # on time range change, so the lists follow the picker
        "multi": multi,
        "includeAll": include_all,
        "current": current if current is not None else (
            {"selected": True, "text": ["All"], "value": ["$__all"]} if include_all else {}),
        "options": [],
        "sort": 1,
        "hide": 0,
        "regex": "",
        "skipUrlSync": False,
    }


def common_variables() -> list[dict[str, Any]]:
    return [
        {
            "name": "datasource",
            "label": "ClickHouse",
            "type": "datasource",
            "query": PLUGIN,
            "current": {"selected": True, "text": "flowscope ClickHouse", "value": DATASOURCE_UID},
            "hide": 0,
            "refresh": 1,
            "regex": "",
            "options": [],
            "includeAll": False,
            "multi": False,
            "skipUrlSync": False,
        },
        query_var("project", "Project",
                  "SELECT DISTINCT Project FROM flowscope_spans WHERE $__timeFilter(Timestamp) ORDER BY Project"),
        query_var("service", "Service",
                  f"SELECT DISTINCT ServiceName FROM flowscope_spans WHERE $__timeFilter(Timestamp) "
                  f"AND {F_PROJECT} ORDER BY ServiceName"),
        query_var("flow", "Flow",
                  f"SELECT DISTINCT FlowName FROM flowscope_spans WHERE $__timeFilter(Timestamp) AND Kind = 'run' "
                  f"AND FlowName != '' AND {F_PROJECT} AND {F_SERVICE} ORDER BY FlowName"),
        query_var("model", "Model",
                  f"SELECT DISTINCT Model FROM flowscope_spans WHERE $__timeFilter(Timestamp) AND Kind = 'llm' "
                  f"AND Model != '' AND {F_PROJECT} AND {F_SERVICE} ORDER BY Model"),
    ]


def dashboard(key: str, title: str, description: str, panels: list[dict[str, Any]],
              extra_vars: list[dict[str, Any]] | None = None, time_from: str = "now-24h") -> dict[str, Any]:
    links = [
        {"title": t, "type": "link", "url": f"/d/{uid}/{uid}", "keepTime": True, "includeVars": True,
         "icon": "dashboard", "targetBlank": False, "asDropdown": False, "tags": [], "tooltip": ""}
        for k, uid in UIDS.items() if k != key
        for t in [{"cost": "LLM cost", "reliability": "Reliability", "cache": "Cache",
                   "runs": "Run explorer"}[k]]
    ]
    return {
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.4.0"},
            {"type": "datasource", "id": PLUGIN, "name": "ClickHouse", "version": PLUGIN_VERSION},
        ],
        "uid": UIDS[key],
        "title": title,
        "description": description,
        "tags": ["flowscope", "llm", "clickhouse"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "id": None,
        "refresh": "1m",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": links,
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "templating": {"list": common_variables() + (extra_vars or [])},
        "panels": panels,
    }


RUN_LINK = ("Open run", f"/d/{UIDS['runs']}/{UIDS['runs']}?var-run=${{__value.raw}}&${{__url_time_range}}"
            "&${datasource:queryparam}")


# --- LLM cost overview -----------------------------------------------------------


def cost_dashboard() -> dict[str, Any]:
    lay = Layout()
    llm = span_filters(model=True, kind="llm")
    p = [row(lay, "Spend")]
    p.append(stat(lay, "Total cost", f"SELECT toFloat64(sum(CostUsd)) AS cost_usd\nFROM flowscope_spans\nWHERE {llm}",
                  unit="currencyUSD", description="Sum of priced LLM calls in the range (exact Decimal sum). A lower bound "
                  "when the range has unpriced or partially priced calls (see the panel beside it)."))
    p.append(stat(lay, "Runs", f"SELECT count() AS runs\nFROM {runs_source()}\nWHERE {run_filters()}",
                  description="Runs that started in the range."))
    p.append(stat(lay, "Cost per run (avg)",
                  f"SELECT toFloat64(avg(Cost)) AS avg_cost_usd\nFROM {runs_source()}\nWHERE {run_filters()}",
                  unit="currencyUSD"))
    p.append(stat(lay, "LLM calls", f"SELECT count() AS llm_calls\nFROM flowscope_spans\nWHERE {llm}"))
    p.append(stat(lay, "Tokens", f"SELECT sum(InputTokens + OutputTokens) AS tokens\nFROM flowscope_spans\nWHERE {llm}",
                  unit="short"))
    p.append(stat(lay, "Unpriced calls",
                  "SELECT countIf(CostSource = 'unpriced') AS unpriced_calls,\n"
                  "  countIf(CostSource = 'partial') AS partially_priced_calls\n"
                  f"FROM flowscope_spans\nWHERE {llm}",
                  description="LLM calls with no price in the catalog (their cost is unknown, never counted as 0), "
                              "and calls priced but for a part the catalog has no rate for (a service tier, "
                              "audio tokens, a tool fee): their cost is a lower bound."))

    p.append(row(lay, "Cost over time"))
    for title, col in (("Cost by model", "Model"), ("Cost by provider", "Provider"),
                       ("Cost by service", "ServiceName")):
        p.append(timeseries(lay, title, (
            f"SELECT $__timeInterval(Timestamp) AS time, {col}, toFloat64(sum(CostUsd)) AS cost_usd\n"
            f"FROM flowscope_spans\nWHERE {llm}\nGROUP BY time, {col}\nORDER BY time"
        ), unit="currencyUSD", stack=True, bars=True))
    p.append(timeseries(lay, "Cost by flow", (
        f"SELECT $__timeInterval(RunStart) AS time, Flow, toFloat64(sum(Cost)) AS cost_usd\n"
        f"FROM {runs_source()}\nWHERE {run_filters()}\nGROUP BY time, Flow\nORDER BY time"
    ), unit="currencyUSD", stack=True, bars=True,
        description="Each run's cost at the time the run started."))

    p.append(row(lay, "Tokens and runs"))
    p.append(timeseries(lay, "Tokens by type", (
        "SELECT $__timeInterval(Timestamp) AS time,\n"
        "  sum(toInt64(InputTokens) - toInt64(CachedInputTokens) - toInt64(CacheWriteTokens)) AS input_uncached,\n"
        "  sum(CachedInputTokens) AS input_cache_read,\n"
        "  sum(CacheWriteTokens) AS input_cache_write,\n"
        "  sum(toInt64(OutputTokens) - toInt64(ReasoningTokens)) AS output_visible,\n"
        "  sum(ReasoningTokens) AS output_reasoning\n"
        f"FROM flowscope_spans\nWHERE {llm}\nGROUP BY time\nORDER BY time"
    ), unit="short", stack=True, bars=True,
        description="Input includes cache reads and writes; output includes reasoning. Split so each is counted once."))
    p.append(panel(lay, "histogram", "Cost per run distribution", (
        f"SELECT toFloat64(Cost) AS cost_usd\nFROM {runs_source()}\nWHERE {run_filters()}"
    ), unit="currencyUSD", options={"bucketCount": 30, "combine": False,
                                    "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom"}}))
    p.append(table(lay, "Top 20 most expensive runs", (
        "SELECT RunId, Flow, Service, RunStart AS Start,\n"
        "  dateDiff('millisecond', RunStart, RunEnd) / 1000 AS duration_s,\n"
        "  Calls AS llm_calls, InTok + OutTok AS tokens,\n"
        "  if(RootError > 0, 'error', if(RootSeen > 0, 'ok', 'running')) AS status,\n"
        "  toFloat64(Cost) AS cost_usd, Unpriced AS unpriced_calls, Partial AS partially_priced_calls\n"
        f"FROM {runs_source()}\nWHERE {run_filters()}\nORDER BY Cost DESC\nLIMIT 20"
    ), w=24, units={"cost_usd": "currencyUSD", "duration_s": "s"}, links={"RunId": RUN_LINK}, sort_by="cost_usd",
        description="Click a run id to open it in the run explorer (node sequence and trace waterfall)."))
    p.append(table(lay, "Unpriced calls by model", (
        "SELECT Provider, Model, countIf(CostSource = 'unpriced') AS unpriced_calls,\n"
        "  countIf(CostSource = 'partial') AS partially_priced_calls, sum(InputTokens) AS input_tokens,\n"
        "  sum(OutputTokens) AS output_tokens, max(Timestamp) AS last_seen\n"
        f"FROM flowscope_spans\nWHERE {llm}\n  AND CostSource IN ('unpriced', 'partial')\n"
        "GROUP BY Provider, Model\nORDER BY unpriced_calls + partially_priced_calls DESC, Model"
    ), w=24, h=6, description="Calls with no price, or priced but for a part (a lower bound). Add the models to "
                              "a pricing file (FLOWSCOPE_PRICING_FILE), then `flowscope-collector reprice` prices "
                              "the stored calls."))
    return dashboard("cost", "flowscope · LLM cost", "What LLM calls cost, by model, provider, service and flow.", p)


# --- reliability ---------------------------------------------------------------


def reliability_dashboard() -> dict[str, Any]:
    lay = Layout()
    llm = span_filters(model=True, kind="llm")
    node = span_filters(kind="node")
    p = [row(lay, "At a glance")]
    p.append(stat(lay, "LLM error rate",
                  f"SELECT countIf({IS_ERROR}) / greatest(count(), 1) AS error_rate\nFROM flowscope_spans\nWHERE {llm}",
                  unit="percentunit"))
    p.append(stat(lay, "Failed runs", (
        "SELECT countIf(RootError > 0) AS failed_runs\n"
        f"FROM {runs_source()}\nWHERE {run_filters()}"
    )))
    p.append(stat(lay, "Retries", (
        "SELECT sumIf(RetryCount, Kind IN ('llm', 'node')) AS retries\n"
        f"FROM flowscope_spans\nWHERE {span_filters()}"
    )))
    p.append(stat(lay, "Fallbacks", f"SELECT countIf(FallbackTo != '') AS fallbacks\nFROM flowscope_spans\nWHERE {llm}"))
    p.append(stat(lay, "Budget stops",
                  f"SELECT countIf(BudgetExceeded) AS budget_stops\nFROM flowscope_spans\nWHERE {span_filters(kind='run')}",
                  description="Runs that hit their cost budget (flowscope.budget.exceeded)."))
    p.append(stat(lay, "Time to first chunk (p95)", (
        "SELECT quantile(0.95)(TimeToFirstChunk) AS ttfc_p95\n"
        f"FROM flowscope_spans\nWHERE {llm}\n  AND TimeToFirstChunk > 0"
    ), unit="s"))

    p.append(row(lay, "Errors"))
    p.append(timeseries(lay, "Error rate by node", (
        f"SELECT $__timeInterval(Timestamp) AS time, NodeName,\n  countIf({IS_ERROR}) / count() AS error_rate\n"
        f"FROM flowscope_spans\nWHERE {node}\nGROUP BY time, NodeName\nORDER BY time"
    ), unit="percentunit"))
    p.append(timeseries(lay, "Error rate by model", (
        f"SELECT $__timeInterval(Timestamp) AS time, Model,\n  countIf({IS_ERROR}) / count() AS error_rate\n"
        f"FROM flowscope_spans\nWHERE {llm}\nGROUP BY time, Model\nORDER BY time"
    ), unit="percentunit"))
    p.append(table(lay, "Errors by node", (
        f"SELECT NodeName AS node, count() AS calls, countIf({IS_ERROR}) AS errors,\n"
        "  errors / calls AS error_rate, topKIf(1)(ErrorType, ErrorType != '')[1] AS top_error\n"
        f"FROM flowscope_spans\nWHERE {node}\nGROUP BY node\nORDER BY errors DESC, calls DESC\nLIMIT 50"
    ), units={"error_rate": "percentunit"}, sort_by="errors"))
    p.append(table(lay, "Errors by model", (
        f"SELECT Provider AS provider, Model AS model, count() AS calls, countIf({IS_ERROR}) AS errors,\n"
        "  errors / calls AS error_rate, topKIf(1)(ErrorType, ErrorType != '')[1] AS top_error\n"
        f"FROM flowscope_spans\nWHERE {llm}\nGROUP BY provider, model\nORDER BY errors DESC, calls DESC\nLIMIT 50"
    ), units={"error_rate": "percentunit"}, sort_by="errors"))

    p.append(row(lay, "Retries, fallbacks and budgets"))
    p.append(timeseries(lay, "Retries and fallbacks", (
        "SELECT $__timeInterval(Timestamp) AS time,\n"
        "  sumIf(RetryCount, Kind IN ('llm', 'node')) AS retries,\n"
        "  countIf(Kind = 'llm' AND FallbackTo != '') AS fallbacks\n"
        f"FROM flowscope_spans\nWHERE {span_filters()}\nGROUP BY time\nORDER BY time"
    ), bars=True))
    p.append(timeseries(lay, "Budget stops", (
        "SELECT $__timeInterval(Timestamp) AS time, countIf(BudgetExceeded) AS budget_stops\n"
        f"FROM flowscope_spans\nWHERE {span_filters(kind='run')}\nGROUP BY time\nORDER BY time"
    ), bars=True))

    p.append(row(lay, "Latency"))
    for title, col, where in (("Latency per node", "NodeName", node), ("Latency per model", "Model", llm)):
        p.append(table(lay, title, (
            f"SELECT {col} AS {'node' if col == 'NodeName' else 'model'}, count() AS calls,\n"
            "  quantile(0.5)(Duration) / 1e6 AS p50_ms,\n"
            "  quantile(0.95)(Duration) / 1e6 AS p95_ms,\n"
            "  quantile(0.99)(Duration) / 1e6 AS p99_ms\n"
            f"FROM flowscope_spans\nWHERE {where}\nGROUP BY {col}\nORDER BY p95_ms DESC\nLIMIT 50"
        ), units={"p50_ms": "ms", "p95_ms": "ms", "p99_ms": "ms"}, sort_by="p95_ms"))
    p.append(timeseries(lay, "p95 latency by model", (
        "SELECT $__timeInterval(Timestamp) AS time, Model, quantile(0.95)(Duration) / 1e6 AS p95_ms\n"
        f"FROM flowscope_spans\nWHERE {llm}\nGROUP BY time, Model\nORDER BY time"
    ), unit="ms"))
    p.append(timeseries(lay, "Time to first chunk by model", (
        "SELECT $__timeInterval(Timestamp) AS time, Model,\n"
        "  quantile(0.5)(TimeToFirstChunk) AS ttfc_p50, quantile(0.95)(TimeToFirstChunk) AS ttfc_p95\n"
        f"FROM flowscope_spans\nWHERE {llm}\n  AND TimeToFirstChunk > 0\nGROUP BY time, Model\nORDER BY time"
    ), unit="s", description="Streaming calls only (gen_ai.response.time_to_first_chunk)."))
    return dashboard("reliability", "flowscope · Reliability",
                     "Errors, retries, fallbacks, budget stops and latency of flows and LLM calls.", p)


# --- cache ---------------------------------------------------------------------


def cache_dashboard() -> dict[str, Any]:
    lay = Layout()
    llm = span_filters(model=True, kind="llm")
    p = [row(lay, "Exact-match response cache")]
    p.append(stat(lay, "Cache hit rate",
                  f"SELECT countIf(CacheHit) / greatest(count(), 1) AS hit_rate\nFROM flowscope_spans\nWHERE {llm}",
                  unit="percentunit", w=6))
    p.append(stat(lay, "Saved by cache hits",
                  f"SELECT toFloat64(sum(CacheSavedUsd)) AS saved_usd\nFROM flowscope_spans\nWHERE {llm}",
                  unit="currencyUSD", w=6, description="What the calls served from flowscope's cache would have cost."))
    p.append(stat(lay, "Prompt-cache read tokens",
                  f"SELECT sum(CachedInputTokens) AS cache_read_tokens\nFROM flowscope_spans\nWHERE {llm}",
                  unit="short", w=6))
    p.append(stat(lay, "Saved by provider prompt cache (est.)",
                  f"SELECT toFloat64(sum({PROMPT_CACHE_SAVINGS})) AS prompt_cache_saved_usd\n"
                  f"FROM flowscope_spans\nWHERE {llm}",
                  unit="currencyUSD", w=6,
                  description="Cached input tokens at the call's uncached input rate, minus what they were billed."))
    p.append(timeseries(lay, "Cache hit rate by model", (
        "SELECT $__timeInterval(Timestamp) AS time, Model, countIf(CacheHit) / count() AS hit_rate\n"
        f"FROM flowscope_spans\nWHERE {llm}\nGROUP BY time, Model\nORDER BY time"
    ), unit="percentunit"))
    p.append(timeseries(lay, "Dollars saved", (
        "SELECT $__timeInterval(Timestamp) AS time,\n"
        "  toFloat64(sum(CacheSavedUsd)) AS response_cache_usd,\n"
        f"  toFloat64(sum({PROMPT_CACHE_SAVINGS})) AS prompt_cache_usd\n"
        f"FROM flowscope_spans\nWHERE {llm}\nGROUP BY time\nORDER BY time"
    ), unit="currencyUSD", stack=True, bars=True))
    p.append(row(lay, "Provider prompt caching"))
    p.append(timeseries(lay, "Input tokens: cache reads vs uncached", (
        "SELECT $__timeInterval(Timestamp) AS time,\n"
        "  sum(CachedInputTokens) AS cache_read,\n"
        "  sum(CacheWriteTokens) AS cache_write,\n"
        "  sum(toInt64(InputTokens) - toInt64(CachedInputTokens) - toInt64(CacheWriteTokens)) AS uncached\n"
        f"FROM flowscope_spans\nWHERE {llm}\nGROUP BY time\nORDER BY time"
    ), unit="short", stack=True, bars=True))
    p.append(table(lay, "Caching by model", (
        "SELECT Provider AS provider, Model AS model, count() AS calls,\n"
        "  countIf(CacheHit) / count() AS hit_rate,\n"
        "  toFloat64(sum(CacheSavedUsd)) AS response_cache_saved_usd,\n"
        "  sum(CachedInputTokens) / greatest(sum(InputTokens), 1) AS prompt_cache_read_share,\n"
        f"  toFloat64(sum({PROMPT_CACHE_SAVINGS})) AS prompt_cache_saved_usd\n"
        f"FROM flowscope_spans\nWHERE {llm}\nGROUP BY provider, model\nORDER BY calls DESC"
    ), units={"hit_rate": "percentunit", "prompt_cache_read_share": "percentunit",
              "response_cache_saved_usd": "currencyUSD", "prompt_cache_saved_usd": "currencyUSD"}))
    return dashboard("cache", "flowscope · Cache",
                     "Exact-match response cache hits and provider prompt caching, in tokens and dollars.", p)


# --- run explorer --------------------------------------------------------------

RUN = "RunId = '${run}'"

TRACE_SQL = """
WITH
  (SELECT any(TraceId) FROM flowscope_spans WHERE RunId = '${run}' AND Timestamp >= $__fromTime) AS trace_id,
  (SELECT min(Start) FROM otel_traces_trace_id_ts WHERE TraceId = trace_id) AS trace_start,
  (SELECT max(End) + 1 FROM otel_traces_trace_id_ts WHERE TraceId = trace_id) AS trace_end
SELECT
  TraceId AS traceID,
  SpanId AS spanID,
  ParentSpanId AS parentSpanID,
  ServiceName AS serviceName,
  SpanName AS operationName,
  multiply(toUnixTimestamp64Nano(Timestamp), 0.000001) AS startTime,
  multiply(Duration, 0.000001) AS duration,
  arrayMap(key -> map('key', key, 'value', SpanAttributes[key]), mapKeys(SpanAttributes)) AS tags,
  arrayMap(key -> map('key', key, 'value', ResourceAttributes[key]), mapKeys(ResourceAttributes)) AS serviceTags,
  if(StatusCode IN ('Error', 'STATUS_CODE_ERROR'), 2, 0) AS statusCode,
  arrayMap((name, timestamp, attributes) -> tuple(name, toString(toUnixTimestamp64Milli(timestamp)),
    arrayMap(key -> map('key', key, 'value', attributes[key]), mapKeys(attributes))
  )::Tuple(name String, timestamp String, fields Array(Map(String, String))),
    Events.Name, Events.Timestamp, Events.Attributes) AS logs,
  arrayMap((linkedTraceId, linkedSpanId, attributes) -> tuple(linkedTraceId, linkedSpanId,
    arrayMap(key -> map('key', key, 'value', attributes[key]), mapKeys(attributes))
  )::Tuple(traceID String, spanID String, tags Array(Map(String, String))),
    Links.TraceId, Links.SpanId, Links.Attributes) AS references,
  SpanKind AS kind,
  StatusMessage AS statusMessage,
  TraceState AS traceState
FROM otel_traces
WHERE TraceId = trace_id
  AND Timestamp >= trace_start AND Timestamp <= trace_end
  AND Timestamp >= $__fromTime
ORDER BY Timestamp ASC
LIMIT 10000
"""


def run_explorer_dashboard() -> dict[str, Any]:
    lay = Layout()
    # The run variable lists runs that started in the range, so every row of
    # the chosen run is at or after the range start; no upper bound, so a run
    # still going at the end of the range is shown whole.
    in_run = f"{RUN}\n  AND Timestamp >= $__fromTime"
    p = [row(lay, "Run")]
    summary = (
        "(SELECT toDateTime64(min(Start), 9) AS RunStart, toDateTime64(max(End), 9) AS RunEnd,\n"
        "   toUInt8(max(RootError)) AS RootError, toUInt8(max(RootSeen)) AS RootSeen,\n"
        "   toUInt64(sum(LlmCalls)) AS Calls, toUInt64(sum(Errors)) AS ErrorCount,\n"
        "   toUInt64(sum(Retries)) AS RetryCount, toDecimal128(sum(CostUsd), 18) AS Cost\n"
        f" FROM flowscope_runs\n WHERE {RUN} AND End >= $__fromTime)"
    )
    p.append(stat(lay, "Status", (
        f"SELECT if(RootError > 0, 2, if(RootSeen > 0, 0, 1)) AS status\nFROM {summary}"
    ), mappings=[{"type": "value", "options": {
        "0": {"text": "ok", "color": "green", "index": 0},
        "1": {"text": "running", "color": "blue", "index": 1},
        "2": {"text": "error", "color": "red", "index": 2},
    }}]))
    p.append(stat(lay, "Cost", f"SELECT toFloat64(Cost) AS cost_usd\nFROM {summary}", unit="currencyUSD"))
    p.append(stat(lay, "Duration", f"SELECT dateDiff('millisecond', RunStart, RunEnd) AS duration_ms\nFROM {summary}",
                  unit="ms"))
    p.append(stat(lay, "LLM calls", f"SELECT Calls AS llm_calls\nFROM {summary}"))
    p.append(stat(lay, "Errors", f"SELECT ErrorCount AS errors\nFROM {summary}"))
    p.append(stat(lay, "Retries", f"SELECT RetryCount AS retries\nFROM {summary}"))

    p.append(row(lay, "Nodes"))
    p.append(table(lay, "Node sequence", (
        "SELECT n.NodeStep AS step, n.NodeName AS node, n.NodeType AS type, n.NodeAttempt AS attempt,\n"
        "  n.Timestamp AS start, n.Duration / 1e6 AS duration_ms,\n"
        "  if(n.StatusCode = 'Error', 'error', 'ok') AS status, n.ErrorType AS error, n.Branch AS branch,\n"
        "  c.llm_calls AS llm_calls, c.tokens AS tokens, toFloat64(c.cost) AS cost_usd\n"
        f"FROM (SELECT * FROM flowscope_spans WHERE {RUN} AND Kind = 'node' AND Timestamp >= $__fromTime) AS n\n"
        "LEFT JOIN (\n"
        "  SELECT NodeStep, countIf(Kind = 'llm') AS llm_calls, sumIf(InputTokens + OutputTokens, Kind = 'llm') AS tokens,\n"
        "    sumIf(CostUsd, Kind = 'llm') AS cost\n"
        f"  FROM flowscope_spans WHERE {RUN} AND Kind != 'node' AND Timestamp >= $__fromTime\n"
        "  GROUP BY NodeStep\n) AS c ON c.NodeStep = n.NodeStep\n"
        "ORDER BY step, start"
    ), w=24, h=9, units={"duration_ms": "ms", "cost_usd": "currencyUSD"},
        description="Nodes in the order they ran; LLM calls, tokens and cost of the calls made inside each."))
    p.append(panel(lay, "barchart", "Cost by node", (
        "SELECT concat(toString(NodeStep), ' ', NodeName) AS node, toFloat64(sum(CostUsd)) AS cost_usd\n"
        f"FROM flowscope_spans\nWHERE {in_run}\n  AND Kind = 'llm'\nGROUP BY NodeStep, NodeName\nORDER BY NodeStep"
    ), unit="currencyUSD", w=12, h=9, options={"orientation": "horizontal", "showValue": "auto",
                                               "legend": {"showLegend": False, "displayMode": "list",
                                                          "placement": "bottom"}, "xField": "node"}))
    p.append(table(lay, "LLM calls", (
        "SELECT NodeStep AS step, NodeName AS node, Provider AS provider, Model AS model,\n"
        "  InputTokens AS input_tokens, CachedInputTokens AS cached_tokens, OutputTokens AS output_tokens,\n"
        "  Duration / 1e6 AS duration_ms, CostSource AS cost_source, toFloat64(CostUsd) AS cost_usd,\n"
        "  CacheHit AS cache_hit, RetryCount AS retries, FallbackTo AS fallback_to\n"
        f"FROM flowscope_spans\nWHERE {in_run}\n  AND Kind = 'llm'\nORDER BY Timestamp"
    ), w=12, h=9, units={"duration_ms": "ms", "cost_usd": "currencyUSD"}))
    p.append(row(lay, "Trace"))
    p.append(panel(lay, "traces", "Trace waterfall", TRACE_SQL, w=24, h=16,
                   description="The run's spans from otel_traces in the plugin's trace format."))

    run_var = query_var(
        "run", "Run",
        "SELECT RunId, concat(Flow, ' · ', toString(toDateTime(RunStart)), ' · ', RunId) AS label "
        f"FROM {runs_source()} WHERE {run_filters()} ORDER BY RunStart DESC LIMIT 200",
        multi=False, include_all=False,
    )
    return dashboard("runs", "flowscope · Run explorer",
                     "One run: its node sequence, cost by node, and the trace waterfall.", p,
                     extra_vars=[run_var], time_from="now-24h")


def build_all() -> dict[str, dict[str, Any]]:
    return {
        "llm-cost.json": cost_dashboard(),
        "reliability.json": reliability_dashboard(),
        "cache.json": cache_dashboard(),
        "run-explorer.json": run_explorer_dashboard(),
    }


def render(d: dict[str, Any]) -> str:
    return json.dumps(d, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the committed JSON differs from the generator")
    args = ap.parse_args(argv)
    stale = []
    OUT.mkdir(exist_ok=True)
    for name, d in build_all().items():
        path = OUT / name
        text = render(d)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale dashboards (run python dashboards/generate.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
