"""Costs under a chosen catalog: what the stored calls cost at other prices, written nowhere.

``GET /api/v1/costs`` sums the figures stored when each call was priced. To
see a price change before committing it with ``flowscope-collector reprice``
(or to compare a negotiated price list with the public one), this computes the
same grouped report under another catalog: every LLM call in the range is
priced again from its stored usage parts with the rule ``reprice`` uses
(:func:`.reprice.price_again`, at the prices in force when the call ran), so
the preview is exactly what ``reprice`` would store. Provider-reported costs
and cache hits keep their figures, and a call the chosen catalog cannot price
keeps its stored one, as ``reprice`` leaves them.

Every call is read and priced in Python, so the work grows with the calls in
the range: above ``max_calls`` (``FLOWSCOPE_MAX_PREVIEW_CALLS``) the request is
refused with the count, rather than holding a worker for minutes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from flowscope.core import semconv
from flowscope.core.pricing import PricingCatalog
from flowscope.core.run_attributes import attribute_key
from flowscope.core.views import usd

from .queries import ch_time
from .reprice import price_again, repriceable, spans_page, stored_attributes

MAX_CALLS = 200_000
_PAGE = 5_000
_COLUMNS = ("toUnixTimestamp64Nano(Timestamp), TraceId, SpanId, ServiceName, Provider, Model, NodeName, RunId, "
            "InputTokens, CachedInputTokens, CacheWriteTokens, OutputTokens, ReasoningTokens, CostSource, CostUsd, "
            "CacheHit")
_DIMENSION = {"model": 5, "provider": 4, "service": 3, "node": 6}  # column of the page row holding the group key


class TooManyCalls(ValueError):
    """More LLM calls in the range than one request prices."""


@dataclass
class _Group:
    key: str
    providers: set[str] = field(default_factory=set)
    calls: int = 0
    tokens: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])  # in, cached, cache write, out, reasoning
    unpriced: int = 0
    partial: int = 0
    cost: Decimal = Decimal(0)

    def as_dict(self, with_provider: bool) -> dict[str, Any]:
        inp, cached, cwrite, out, reasoning = self.tokens
        return {
            "key": self.key, "provider": (sorted(self.providers)[0] if self.providers else None) if with_provider
            else None, "llm_calls": self.calls, "input_tokens": inp, "cached_input_tokens": cached,
            "cache_write_input_tokens": cwrite, "output_tokens": out, "reasoning_tokens": reasoning,
            "unpriced_calls": self.unpriced, "partially_priced_calls": self.partial, "cost_usd": usd(self.cost),
        }


def costs_under(
    client: Client,
    db: str,
    project: str,
    catalog: PricingCatalog,
    group_by: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
    max_calls: int = MAX_CALLS,
) -> list[dict[str, Any]]:
    """The ``/costs`` groups of the calls in [since, until), each call priced under ``catalog``.

    The groups have the shape and order of :meth:`.queries.Store.costs`; flow is
    a property of the run, so by flow a call counts when its run started in the range.
    """
    where, params = _where(db, project, group_by, since, until)
    (count,) = client.query(
        f"SELECT uniqExact(TraceId, SpanId) FROM {db}.flowscope_spans WHERE {where}", parameters=params,
    ).result_rows[0]
    if int(count) > max_calls:
        raise TooManyCalls(f"{count} LLM calls in the range, more than the {max_calls} one request prices "
                           "again (FLOWSCOPE_MAX_PREVIEW_CALLS): narrow since/until")
    groups: dict[str, _Group] = {}
    cursor: tuple[int, str, str] | None = None
    while True:
        rows = spans_page(client, db, _COLUMNS, where, params, cursor, _PAGE)
        if not rows:
            break
        cursor = (int(rows[-1][0]), rows[-1][1], rows[-1][2])
        attrs_of = stored_attributes(client, db, project, [(r[1], int(r[0])) for r in rows])
        flows = _flows(client, db, project, rows) if group_by == "flow" else {}
        for row in rows:
            _add(groups, group_by, row, attrs_of.get((row[1], row[2])), flows, catalog)
        if len(rows) < _PAGE:
            break
    ordered = sorted(groups.values(), key=(lambda g: g.key) if group_by == "day" else (lambda g: (-g.cost, g.key)))
    return [g.as_dict(group_by == "model") for g in ordered[:limit]]


def _where(db: str, project: str, group_by: str, since: datetime | None,
           until: datetime | None) -> tuple[str, dict[str, Any]]:
    where = ["Project = {project:String}", "Kind = 'llm'"]
    params: dict[str, Any] = {"project": project}
    if since:
        params["since"] = ch_time(since)
    if until:
        params["until"] = ch_time(until)
    if group_by == "flow":  # the runs that started in the range, all of their calls
        having = []
        if since:
            having.append("min(Start) >= {since:DateTime64(9)}")
        if until:
            having.append("min(Start) < {until:DateTime64(9)}")
        if having:
            where.append(f"RunId IN (SELECT RunId FROM {db}.flowscope_runs WHERE Project = {{project:String}} "
                         f"GROUP BY RunId HAVING {' AND '.join(having)})")
    else:
        if since:
            where.append("Timestamp >= {since:DateTime64(9)}")
        if until:
            where.append("Timestamp < {until:DateTime64(9)}")
    return " AND ".join(where), params


def _flows(client: Client, db: str, project: str, rows: Sequence[Sequence[Any]]) -> dict[str, str]:
    """The flow names of the runs of a page (flow is the run's, not on its LLM spans)."""
    return {r: f for r, f in client.query(
        f"SELECT RunId, max(FlowName) FROM {db}.flowscope_runs WHERE Project = {{project:String}} "
        "AND RunId IN {runs:Array(String)} GROUP BY RunId",
        parameters={"project": project, "runs": sorted({str(r[7]) for r in rows})}).result_rows}


def _key(group_by: str, row: Sequence[Any], attrs: Mapping[str, str] | None, flows: dict[str, str]) -> str:
    if group_by in _DIMENSION:
        return str(row[_DIMENSION[group_by]])
    if group_by == "day":
        return datetime.fromtimestamp(int(row[0]) / 1e9, tz=timezone.utc).date().isoformat()
    if group_by == "flow":
        return flows.get(row[7], "")
    name = group_by[5:]  # attr:KEY, a run attribute by its short name too (as Store.costs reads it)
    attrs = attrs or {}
    return attrs.get(attribute_key(name)) or attrs.get(name) or ""


def _add(groups: dict[str, _Group], group_by: str, row: Sequence[Any], attrs: Mapping[str, str] | None,
         flows: dict[str, str], catalog: PricingCatalog) -> None:
    start_ns, source, stored, cache_hit = int(row[0]), str(row[13]), Decimal(row[14]), bool(row[15])
    cost, new_source = stored, source
    if attrs is not None and repriceable(source, cache_hit):
        _, priced = price_again(attrs, start_ns, catalog)
        if priced is not None:
            cost, new_source = priced.total_usd or Decimal(0), priced.source
    key = _key(group_by, row, attrs, flows)
    group = groups.setdefault(key, _Group(key))
    if row[4]:
        group.providers.add(str(row[4]))
    group.calls += 1
    for i, value in enumerate(row[8:13]):
        group.tokens[i] += int(value)
    group.unpriced += new_source == semconv.COST_SOURCE_UNPRICED
    group.partial += new_source == semconv.COST_SOURCE_PARTIAL
    group.cost += cost
