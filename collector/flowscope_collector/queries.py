"""Read side: every SQL the API runs, parameterised (``{name:Type}``), never formatted.

Per-run questions read the run's contiguous range of ``flowscope_spans`` and
hand the rows to :mod:`flowscope.views`, the same code the test kit uses;
lists and roll-ups read the aggregate table.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client
from flowscope.views import SpanRecord, StateEvent, iso, ms, usd

_SPAN_COLUMNS = (
    "Project, RunId, TraceId, SpanId, ParentSpanId, SpanName, toUnixTimestamp64Nano(Timestamp), Duration, "
    "ServiceName, Kind, FlowName, NodeName, NodeType, NodeStep, NodeAttempt, Branch, StatusCode, StatusMessage, "
    "ErrorType, Provider, Model, InputTokens, OutputTokens, CachedInputTokens, CacheWriteTokens, ReasoningTokens, "
    "CostUsd, CostInputUsd, CostCachedInputUsd, CostCacheWriteUsd, CostOutputUsd, CostSource, UsageEstimated, "
    "CacheHit, CacheSavedUsd, RetryCount, FallbackFrom, FallbackTo, BudgetExceeded, TimeToFirstChunk"
)


def _record(r: tuple[Any, ...]) -> SpanRecord:
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


@dataclass(frozen=True)
class Cursor:
    start_ns: int
    run_id: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.start_ns}:{self.run_id}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            start, run_id = raw.split(":", 1)
            return cls(int(start), run_id)
        except Exception:
            raise ValueError("cursor is not one this API returned; start again without it") from None


def to_ns(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1_000_000) * 1000


class Store:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.db = database

    # --- per run ------------------------------------------------------------------

    def run_spans(self, project: str, run_id: str) -> list[SpanRecord]:
        rows = self.client.query(
            f"SELECT {_SPAN_COLUMNS} FROM {self.db}.flowscope_spans "
            "WHERE Project = {project:String} AND RunId = {run_id:String} "
            "ORDER BY Timestamp, SpanId LIMIT 1 BY TraceId, SpanId",
            parameters={"project": project, "run_id": run_id},
        ).result_rows
        return [_record(r) for r in rows]

    def state_events(self, project: str, run_id: str) -> list[StateEvent]:
        rows = self.client.query(
            f"SELECT Seq, Op, Path, Value, NodeStep, NodeName, Truncated FROM {self.db}.flowscope_state_events "
            "WHERE Project = {project:String} AND RunId = {run_id:String} "
            "ORDER BY Seq LIMIT 1 BY Seq",
            parameters={"project": project, "run_id": run_id},
        ).result_rows
        out = []
        for seq, op, path, value, step, node, truncated in rows:
            try:
                decoded = json.loads(value) if value != "" else None
            except ValueError:
                decoded = value
            out.append(StateEvent(int(seq), op, path, decoded, int(step), node, bool(truncated)))
        return out

    def span_details(self, project: str, run_id: str) -> list[dict[str, Any]]:
        """Full spans (attributes and events) for the span tree endpoint."""
        rows = self.client.query(
            f"SELECT TraceId, SpanId, ParentSpanId, SpanName, SpanKind, toUnixTimestamp64Nano(Timestamp), "
            f"Duration, StatusCode, StatusMessage, ServiceName, SpanAttributes, "
            f"arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp), Events.Name, Events.Attributes "
            f"FROM {self.db}.otel_traces WHERE ResourceAttributes['flowscope.project'] = {{project:String}} "
            "AND TraceId IN (SELECT DISTINCT TraceId FROM "
            f"{self.db}.flowscope_spans WHERE Project = {{project:String}} AND RunId = {{run_id:String}}) "
            "AND (SpanAttributes['flowscope.run.id'] = {run_id:String} OR "
            "(SpanAttributes['flowscope.run.id'] = '' AND TraceId = {run_id:String})) "
            "ORDER BY Timestamp LIMIT 1 BY TraceId, SpanId",
            parameters={"project": project, "run_id": run_id},
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
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
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
        if cursor:
            having.append("(start_ns, RunId) < ({c_start:Int64}, {c_run:String})")
            params["c_start"] = cursor.start_ns
            params["c_run"] = cursor.run_id
        sql = f"""
            SELECT RunId,
                   toUnixTimestamp64Nano(min(Start)) AS start_ns,
                   toUnixTimestamp64Nano(max(End)) AS end_ns,
                   max(FlowName) AS flow, max(ServiceName) AS service,
                   multiIf(max(RootSeen) = 0, 'running', max(RootError) = 1, 'error', 'ok') AS status,
                   sum(Spans), sum(LlmCalls), sum(Errors), sum(Retries), sum(Fallbacks), sum(CacheHits),
                   sum(UnpricedCalls), sum(InputTokens), sum(CachedInputTokens), sum(CacheWriteTokens),
                   sum(OutputTokens), sum(ReasoningTokens), sum(CostUsd), sum(CacheSavedUsd)
            FROM {self.db}.flowscope_runs
            WHERE Project = {{project:String}}
            GROUP BY RunId
            HAVING {" AND ".join(having)}
            ORDER BY start_ns DESC, RunId DESC
            LIMIT {{limit:UInt32}}
        """
        rows = self.client.query(sql, parameters=params).result_rows
        more = len(rows) > limit
        rows = rows[:limit]
        runs = []
        for r in rows:
            (run_id, start_ns, end_ns, flow_, service_, status_, spans, llm, errors, retries, fallbacks,
             hits, unpriced, inp, cached, cwrite, out, reasoning, cost, saved) = r
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
                }
            )
        next_cursor = Cursor(int(rows[-1][1]), rows[-1][0]) if more and rows else None
        return runs, next_cursor

    # --- health ---------------------------------------------------------------------

    def ping(self) -> str:
        return str(self.client.query("SELECT version()").result_rows[0][0])
